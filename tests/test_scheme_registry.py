"""How recipes plug into plan(): the scheme registry, a scheme's own options, the survey that
sees the whole model, and the notes it leaves in the plan."""

from dataclasses import dataclass

import pytest
import torch
from torch import nn

import weightinit as wi
from weightinit.plans.plan import Plan
from weightinit.scheme.classic import classic
from weightinit.scheme.protocol import Choice, Scheme, Survey
from weightinit.scheme.registry import register_scheme


@dataclass(frozen=True)
class _HeadOptions:
    head_std: float = 0.5

    def __post_init__(self):
        if not self.head_std > 0:
            raise ValueError(f"option `head_std` must be > 0, got {self.head_std!r}")


def _head_survey(s: Survey) -> dict[str, Choice]:
    """The last Linear's weight gets N(0, head_std^2); the rest falls back to choose."""
    last = [p for p in s.params if p.info.role == "weight"][-1]
    s.notes["head"] = last.name
    s.notes["n_params"] = len(s.params)
    return {last.name: Choice("normal", {"std": s.extra.head_std}, "head: chosen std")}


_TEST_SCHEME = Scheme(
    "_test_head",
    "a test recipe: zero weights, the head at N(0, head_std^2)",
    classic(lambda p, o, g2, why: Choice("zeros", {}, "test: zeros")),
    survey=_head_survey,
    extra=_HeadOptions,
)


@pytest.fixture(autouse=True)
def _registered(isolated_schemes):
    """The test scheme is registered for these tests only."""
    register_scheme(_TEST_SCHEME)


def _net():
    return nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3))


def test_survey_choices_override_choose_and_notes_reach_the_plan():
    net = _net()
    plan = wi.plan(net, "_test_head", head_std=0.25)
    assert plan["2.weight"].init == "normal" and plan["2.weight"].args == {"std": 0.25}
    assert plan["0.weight"].init == "zeros"  # not chosen by the survey: the fallback
    assert plan.notes == {"head": "2.weight", "n_params": 4}
    assert "head: 2.weight" in str(plan)
    assert plan.options == {"head_std": 0.25}
    again = Plan.from_json(plan.to_json())
    assert again.notes == plan.notes and again.rows == plan.rows


def test_survey_sees_only_what_the_scheme_chooses_and_rules_win():
    net = _net()
    plan = wi.plan(net, "_test_head", skip=["0.bias"], rules={"2.weight": "ones"})
    # the rule covers the head, so the survey's last weight is the first layer's
    assert plan.notes == {"head": "0.weight", "n_params": 2}
    assert plan["2.weight"].init == "ones" and plan["0.weight"].init == "normal"


def test_scheme_options_are_validated_and_listed_in_errors():
    with pytest.raises(ValueError, match="head_std"):
        wi.plan(_net(), "_test_head", head_std=-1.0)
    with pytest.raises(TypeError, match="head_std") as err:
        wi.plan(_net(), "_test_head", head_sd=1.0)
    assert "head_sd" in str(err.value)
    with pytest.raises(TypeError, match="head_std"):  # another scheme does not take it
        wi.plan(_net(), "he", head_std=1.0)


@pytest.mark.parametrize(
    ("scheme", "bad", "error"),
    [
        ("_test_head", {"head_std": -1.0}, ValueError),
        ("critical", {"q_star": "x"}, TypeError),
        ("critical", {"q_star": -1.0}, ValueError),
        ("megatron", {"std": -1.0}, ValueError),
        ("torchtitan", {"depth_init": 1}, TypeError),
        ("t5", {"head_dim": 2.5}, ValueError),
        ("sparse", {"k": 0}, ValueError),
        ("irnn", {"input_std": 0.0}, ValueError),
        ("gpt2", {"roles": {"*.proj": "projection"}}, ValueError),
        ("fixup", {"branches": 3}, ValueError),
    ],
)
def test_a_schemes_option_error_names_the_scheme_once_and_the_option(scheme, bad, error):
    with pytest.raises(error) as err:
        wi.plan(_net(), scheme, **bad)
    message = str(err.value)
    assert message.startswith(f"scheme {scheme!r}: option `{next(iter(bad))}`"), message
    assert message.count("scheme '") == 1, message


def test_registering_a_taken_name_is_an_error():
    for name in ("he", "auto", "_test_head", "Kaiming", "LSUV"):  # aliases and any case too
        with pytest.raises(ValueError, match="already registered"):
            register_scheme(Scheme(name, "", _TEST_SCHEME.choose))
    with pytest.raises(ValueError, match="already registered"):
        register_scheme(Scheme("_fresh", "", _TEST_SCHEME.choose, aliases=("t-fixup",)))
    assert "_fresh" not in wi.schemes()  # nothing half-registered


def test_options_that_are_not_json_are_written_as_text():
    plan = wi.plan(_net(), "_test_head", head_std=0.5)
    plan.options["roles"] = {"*.proj": nn.Linear}  # e.g. a user's role map with a type
    assert "Linear" in Plan.from_json(plan.to_json()).options["roles"]["*.proj"]


class _Scaled(nn.Module):
    activation_name = "tanh"

    def forward(self, x):
        return torch.tanh(x)


def test_modules_name_their_activation():
    from weightinit.modules import LeCunTanh

    assert wi.activation(LeCunTanh()).name == "lecun_tanh"
    assert wi.activation(_Scaled()).name == "tanh"
    net = nn.Sequential(nn.Linear(4, 4), LeCunTanh(), nn.Linear(4, 1))
    assert wi.plan(net, "he")["0.weight"].reason.startswith("followed by lecun_tanh")
    x = torch.linspace(-3, 3, 101)
    assert torch.allclose(LeCunTanh()(x), 1.7159 * torch.tanh(2 * x / 3))
