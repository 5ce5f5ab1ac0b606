"""The contract every scheme keeps, checked over wi.schemes() (as test_common does over the
catalog): planning writes nothing, every row has a reason, the plan survives JSON, the same seed
writes the same values, a meta-device model plans without memory; and a scheme registered from
outside the package reaches plan, schemes(), the command line and the errors exactly as the
built-in ones do."""

from __future__ import annotations

import copy
import functools
import io
import json
from contextlib import redirect_stdout
from dataclasses import dataclass

import pytest
import torch
from torch import nn

import weightinit as wi
from weightinit import zoo
from weightinit.commands.cli import main
from weightinit.scheme.protocol import DATA, EXAMPLE_INPUT, GRAPH
from weightinit.scheme.registry import get_scheme

TRANSFORMER = functools.partial(zoo.transformer_encoder, 2, d_model=16, seq=6, batch=8)
RESIDUAL = functools.partial(zoo.residual_mlp, 3, width=12, in_features=10, batch=32)
# the model each scheme is checked on: a Transformer without normalization (residual adds,
# attention, ReLU MLPs), except where a scheme's paper is about residual MLPs
MODEL_FOR = {"fixup": RESIDUAL}
BUILT_IN = sorted(wi.schemes())
# the presets' and SELU's advice about this model (no ModuleList of blocks, plain Dropout)
pytestmark = pytest.mark.filterwarnings(
    "ignore:.*residual output projection", "ignore:.*breaks self-normalization"
)


def _built(scheme: str) -> tuple[nn.Module, torch.Tensor]:
    torch.manual_seed(0)
    model, x = MODEL_FOR.get(scheme, TRANSFORMER)()
    prepare = get_scheme(scheme).prepare
    if prepare is not None:
        prepare(model, example_input=x)
    return model, x


def _needs(scheme: str):
    s = get_scheme(scheme)
    return s.needs_for(*s.take({})[:2])


def _inputs(scheme: str, x: torch.Tensor) -> dict:
    """What the scheme declares it needs, from its declaration."""
    needs = _needs(scheme)
    given = {}
    if EXAMPLE_INPUT in needs or GRAPH in needs:
        given["example_input"] = x
    if DATA in needs:
        given["data"] = x
    return given


def _state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_every_scheme_has_a_declared_model():
    """A new scheme is checked here by default; a scheme that needs another model says so."""
    assert set(MODEL_FOR) <= set(BUILT_IN)


@pytest.mark.parametrize("scheme", BUILT_IN)
def test_the_scheme_contract(scheme):
    model, x = _built(scheme)
    before = _state(model)
    plan = wi.plan(model, scheme, seed=0, **_inputs(scheme, x))
    after = _state(model)
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before), "plan wrote to the model"
    assert plan.scheme == get_scheme(scheme).name
    assert all(row.reason for row in plan.rows), [r.name for r in plan.rows if not r.reason]
    names = [name for name, _ in model.named_parameters(remove_duplicate=False)]
    assert [row.name for row in plan.rows] == names

    again = wi.Plan.from_json(plan.to_json())
    assert again.rows == plan.rows and again.options == plan.options
    assert again.to_json() == plan.to_json()

    first, second = _built(scheme)[0], _built(scheme)[0]
    plan.apply(first, seed=0)
    again.apply(second, seed=0)  # read back from JSON: the same values
    one, two = _state(first), _state(second)
    assert all(torch.equal(one[k], two[k]) for k in one)
    written = [r.name for r in plan.rows if r.init != "skip"]
    assert any(not torch.equal(one[n], before[n]) for n in written if n in one)


@pytest.mark.parametrize("scheme", [s for s in BUILT_IN if EXAMPLE_INPUT not in _needs(s)])
def test_a_meta_model_plans_without_memory(scheme):
    """Every scheme that needs no forward pass plans a model on the meta device; one that
    calibrates on data gives its analytic plan, awaiting calibration."""
    model, x = _built(scheme)
    model = model.to("meta")
    given = {"example_input": x.to("meta")} if GRAPH in _needs(scheme) else {}
    plan = wi.plan(model, scheme, seed=0, **given)  # a forward pass on meta tensors
    assert all(p.is_meta for p in model.parameters())
    assert plan.pending_calibration == (DATA in _needs(scheme))
    assert all(row.reason for row in plan.rows)


# --- a scheme from outside the package ----------------------------------------------------


@dataclass(frozen=True)
class _ToyOptions:
    """The toy scheme's own option."""

    head_std: float = 0.5

    def __post_init__(self):
        if not self.head_std > 0:
            raise ValueError(f"option `head_std` must be > 0, got {self.head_std!r}")


def _toy_survey(s: wi.Survey) -> dict[str, wi.Choice]:
    weights = [p for p in s.params if p.role == "weight"]
    s.notes["layers"] = len(weights)
    head = weights[-1]
    return {head.name: wi.Choice("normal", {"std": s.extra.head_std}, "toy: the head")}


def _toy_choose(p: wi.Param, options: wi.Options) -> wi.Choice:
    if p.role == "weight":
        return wi.Choice("orthogonal", {}, f"toy: orthogonal {p.kind} weight, fans {p.fans}")
    return wi.Choice("zeros", {}, f"toy: {p.role} 0")


def _toy_calibrate(plan: wi.Plan, s: wi.Survey) -> wi.Plan:
    """Scale the head so that the model's output has unit std on the data."""
    if s.data is None:
        return plan
    model = copy.deepcopy(s.model)
    plan.apply(model, seed=0 if s.seed is None else s.seed)
    std = model(s.data).std().item()
    head = next(r for r in plan.rows if r.reason == "toy: the head")
    head.scale = 1.0 / std
    head.reason += f"; toy calibration 1/{std:.3g}"
    return plan


TOY = wi.Scheme(
    "toy_scheme",
    "a toy scheme with every stage: orthogonal weights, the head calibrated on data",
    _toy_choose,
    needs={EXAMPLE_INPUT: "reads the shape of a forward pass", DATA: "calibrates the head"},
    survey=_toy_survey,
    calibrate=_toy_calibrate,
    extra=_ToyOptions,
    aliases=("toy",),
)


@pytest.fixture
def toy(isolated_schemes):
    return wi.register_scheme(TOY)


def _net():
    return nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 3))


def test_a_registered_scheme_plans_like_a_built_in_one(toy):
    net, x = _net(), torch.randn(64, 6, generator=torch.Generator().manual_seed(0))
    assert "toy_scheme" in wi.schemes()
    plan = wi.plan(net, "Toy-Scheme", example_input=x, data=x, seed=0, head_std=0.25)
    assert plan.scheme == "toy_scheme" and plan.notes == {"layers": 2}
    assert plan["0.weight"].reason == "toy: orthogonal linear weight, fans (6, 16)"
    assert plan["2.weight"].args == {"std": 0.25} and plan["2.weight"].scale is not None
    assert plan.options == {"head_std": 0.25, "seed": 0}
    plan.apply(net)
    assert abs(net(x).std().item() - 1.0) < 1e-5  # the calibration stage ran
    assert wi.plan(_net(), "toy", example_input=x).scheme == "toy_scheme"  # the alias


def test_a_registered_scheme_gets_the_same_errors(toy):
    net = _net()
    with pytest.raises(ValueError, match="unknown scheme 'toy_schem'. Did you mean 'toy_scheme'"):
        wi.plan(net, "toy_schem")
    with pytest.raises(
        ValueError,
        match=r"scheme 'toy_scheme' reads the shape of a forward pass: pass example_input=batch",
    ):
        wi.plan(net, "toy_scheme")
    with pytest.raises(ValueError, match=r"scheme 'toy_scheme': option `head_std` must be > 0"):
        wi.plan(net, "toy_scheme", example_input=torch.randn(4, 6), head_std=-1)
    with pytest.raises(TypeError, match="head_std"):  # listed among the options it takes
        wi.plan(net, "toy_scheme", example_input=torch.randn(4, 6), head_sd=1)


def test_a_registered_scheme_is_on_the_command_line(toy, tmp_path):
    out = io.StringIO()
    with redirect_stdout(out):
        assert main(["schemes", "--json"]) == 0
    listed = json.loads(out.getvalue())
    assert listed["toy_scheme"] == TOY.description
    assert list(listed) == list(wi.schemes())
    factory = tmp_path / "net.py"
    factory.write_text(
        "import torch\n\ndef make():\n"
        "    return torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.Tanh(), "
        "torch.nn.Linear(16, 3))\n"
    )
    torch.save(torch.randn(32, 6), tmp_path / "batch.pt")  # the data its calibrate stage needs
    out = io.StringIO()
    with redirect_stdout(out):
        code = main(
            ["plan", f"{factory}:make", "--input-shape", "8,6", "--scheme", "TOY", "--json"]
            + ["--data", str(tmp_path / "batch.pt")]
        )
    assert code == 0
    planned = json.loads(out.getvalue())
    assert planned["scheme"] == "toy_scheme" and "pending_calibration" not in planned
    with pytest.raises(SystemExit):
        main(["plan", f"{factory}:make", "--input-shape", "8,6", "--scheme", "toy_schem"])


def test_schemes_declare_their_needs_and_the_planner_words_the_error():
    net = nn.Sequential(nn.Linear(4, 4))
    with pytest.raises(ValueError, match=r"^plan: scheme 'auto' propagates .*: pass example_input"):
        wi.plan(net, "auto")
    assert EXAMPLE_INPUT in get_scheme("auto").needs_for(*get_scheme("auto").take({})[:2])
    lsuv = get_scheme("lsuv")
    assert set(lsuv.needs_for(*lsuv.take({})[:2])) == {DATA}
    assert GRAPH in lsuv.needs_for(*lsuv.take({"orthonormal": False})[:2])


def test_scheme_names_are_looked_up_like_initializer_names():
    assert get_scheme("KAIMING").name == "he" and get_scheme("Xavier").name == "glorot"
    assert get_scheme("T_Fixup").name == "t-fixup" and get_scheme(" lsuv".strip()).name == "lsuv"
    with pytest.raises(ValueError, match=r"unknown scheme 'lsu'. Did you mean 'lsuv', "):
        get_scheme("lsu")
    with pytest.raises(ValueError, match="`weightinit schemes` shows every scheme"):
        get_scheme("nothing-like-it")
    with pytest.raises(TypeError, match="pass a weightinit.Scheme"):
        wi.register_scheme("he")
    with pytest.raises(ValueError, match="give it a choose or a survey"):
        wi.Scheme("empty", "", None)


def test_a_model_of_no_known_framework_is_a_clear_error():
    with pytest.raises(TypeError, match=r"^plan: `model` must be a torch.nn.Module, got dict"):
        wi.plan({"weight": torch.ones(2, 2)}, "he")
    plan = wi.plan(nn.Linear(2, 2), "lsuv")
    with pytest.raises(TypeError, match=r"^calibrate: `model` must be a torch.nn.Module"):
        wi.calibrate(plan, [torch.ones(2)], data=torch.ones(4, 2))
