"""Every error names its cause (the rule, parameter, option, scheme or argument at fault) and
what to do instead, is raised before anything is written, and leaves the model as it was;
misleading silences (a skip= glob that matches nothing) are warnings that say so."""

import re
import warnings

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

import weightinit as wi


def mlp():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))


def snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


def unchanged(model: nn.Module, before: dict[str, torch.Tensor]) -> bool:
    after = model.state_dict()
    return after.keys() == before.keys() and all(torch.equal(after[k], before[k]) for k in before)


# --- rules -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rule", "error", "cause"),
    [
        (("normal", {"stdd": 1}), TypeError, "normal_() got an unexpected keyword argument 'stdd'"),
        (("normal", {"std": -1}), ValueError, "normal_: `std` must be >= 0, got -1"),
        (("constant", {}), TypeError, "constant_() missing 1 required positional argument: 'val'"),
    ],
)
def test_a_rule_with_bad_arguments_names_the_rule_and_the_parameter(rule, error, cause):
    net = mlp()
    before = snapshot(net)
    with pytest.raises(error) as raised:
        wi.init(net, "he", rules={"0.weight": rule}, seed=0)
    message = str(raised.value)
    assert message.startswith("plan: rule '0.weight' for parameter '0.weight': ")
    assert cause in message
    init = {"normal": "normal_ takes mean=0.0, std=1.0", "constant": "constant_ takes val"}
    assert message.endswith(init[rule[0]])
    assert unchanged(net, before)


def test_a_rule_that_fails_on_one_of_its_parameters_names_that_one():
    """sparse with k=5 fits the first two weights (fan-in 8) and not the last (fan-in 4)."""
    torch.manual_seed(0)
    net = nn.Sequential(*(nn.Linear(n, m, bias=False) for n, m in ((8, 8), (8, 4), (4, 2))))
    before = snapshot(net)
    for key, label in ((nn.Linear, "Linear"), ("*", "*")):
        with pytest.raises(ValueError) as raised:
            wi.init(net, "he", rules={key: ("sparse", {"k": 5})}, seed=0)
        message = str(raised.value)
        assert message.startswith(f"plan: rule {label!r} for parameter '2.weight': sparse_: ")
        assert message.endswith("pass k <= 4; sparse_ takes k=15, std=1.0")
    assert unchanged(net, before)


def test_a_good_rule_still_plans():
    p = wi.plan(mlp(), "he", rules={"0.weight": ("normal", {"std": 0.02})})
    assert p["0.weight"].std == 0.02 and p["0.weight"].reason == "rule '0.weight'"


# --- scheme options --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("option", "value", "wanted"),
    [
        ("bias", float("nan"), "a finite number"),
        ("bias", "0.1", "a finite number"),
        ("bias", None, "a finite number"),
        ("relu_bias", float("inf"), "a finite number"),
        ("forget_bias", float("nan"), "a finite number"),
        ("norm_scale", float("nan"), "a finite number"),
        ("embedding_std", -1.0, ">= 0"),
        ("embedding_std", float("inf"), "a finite number"),
    ],
)
@pytest.mark.parametrize("scheme", ["he", "torch", "gpt2"])
def test_a_bad_option_value_names_the_option_not_the_initializer(scheme, option, value, wanted):
    """Checked where options are taken, so it fails on every model, not only on ones where
    the option reaches an initializer (and never says ``constant_: `val```)."""
    net = nn.LSTM(3, 4)
    before = snapshot(net)
    with pytest.raises(ValueError) as raised:
        wi.init(net, scheme, seed=0, **{option: value})
    assert (
        str(raised.value) == f"scheme {scheme!r}: option `{option}` must be {wanted}, got {value!r}"
    )
    assert unchanged(net, before)


def test_options_that_may_be_none_accept_none_and_numbers():
    net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    p = wi.plan(net, "he", relu_bias=None, forget_bias=None, embedding_std=None, bias=0)
    assert p["0.bias"].args == {}
    p = wi.plan(net, "he", relu_bias=0.01, embedding_std=0.0, norm_scale=2)
    assert p["0.bias"].args == {"val": 0.01}


# --- schemes ---------------------------------------------------------------------------------


def test_an_unknown_scheme_gets_close_matches_and_every_registered_scheme():
    for typo, close in (("atuo", "auto"), ("lsvu", "lsuv"), ("gpt", "gpt2")):
        with pytest.raises(ValueError) as raised:
            wi.plan(mlp(), typo)
        message = str(raised.value)
        assert message.startswith(f"unknown scheme {typo!r}. Did you mean {close!r}")
        listed = message.split("The schemes: ", 1)[1].rstrip(".").split(", ")
        assert listed == list(wi.schemes())
        assert "auto" in listed and "lsuv" in listed


def test_a_scheme_that_is_not_a_name_is_a_type_error():
    with pytest.raises(TypeError, match=r"`scheme` must be a scheme's name .* got int"):
        wi.plan(mlp(), 3)


# --- seed ------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", ["0", 1.5, True, torch.tensor(0)])
def test_a_seed_that_is_not_an_int_is_a_type_error(seed):
    net = mlp()
    before = snapshot(net)
    with pytest.raises(TypeError, match=r"^plan: `seed` must be an int \(or None\), got "):
        wi.init(net, "he", seed=seed)
    assert unchanged(net, before)


@pytest.mark.parametrize("seed", [-1, 2**64])
def test_a_seed_out_of_range_is_a_value_error(seed):
    with pytest.raises(
        ValueError, match=re.escape(f"plan: `seed` must be in [0, 2**64), got {seed}")
    ):
        wi.plan(mlp(), "he", seed=seed)


@pytest.mark.parametrize("seed", [np.int64(3), np.uint8(3), 3])
def test_numpy_integer_seeds_are_seeds(seed):
    net = mlp()
    p = wi.init(net, "he", seed=seed)
    assert type(p.options["seed"]) is int and p.options["seed"] == 3
    reference = mlp()
    wi.init(reference, "he", seed=3)
    assert unchanged(net, snapshot(reference))


def test_the_largest_seed_is_a_seed():
    p = wi.init(mlp(), "he", seed=2**64 - 1)
    assert p.options["seed"] == 2**64 - 1


# --- the model -------------------------------------------------------------------------------


@pytest.mark.parametrize("call", [wi.plan, wi.init, wi.apply])
@pytest.mark.parametrize("model", [torch.zeros(3, 3), nn.Linear(2, 2).state_dict(), None])
def test_a_model_that_is_not_a_module_is_a_type_error(call, model):
    where = "plan"  # init and apply plan first
    with pytest.raises(TypeError, match=rf"^{where}: `model` must be a torch\.nn\.Module, got "):
        call(model)


def test_diagnose_names_a_model_that_is_not_a_module():
    with pytest.raises(
        TypeError, match=r"^diagnose: `model` must be a torch\.nn\.Module, got Tensor"
    ):
        wi.diagnose(torch.zeros(3, 3), torch.zeros(2, 3))


# --- skip= -----------------------------------------------------------------------------------


def test_a_skip_glob_that_matches_nothing_warns_with_close_names():
    net = mlp()
    with pytest.warns(UserWarning) as caught:
        p = wi.plan(net, "he", skip=["0.wieght", "2.bias"])
    assert [str(w.message) for w in caught] == [
        (
            "plan: skip glob '0.wieght' matches no parameter, so it skips nothing; did you "
            "mean '0.weight', '2.weight'?"
        )
    ]
    assert p["0.weight"].init != "skip" and p["2.bias"].init == "skip"


def test_a_skip_glob_with_nothing_close_shows_how_names_look():
    with pytest.warns(
        UserWarning,
        match=r"'encoder\.\*' matches no parameter.*named like '0\.weight', '0\.bias', '2\.weight'",
    ):
        wi.plan(mlp(), "he", skip="encoder.*")


def test_skip_globs_that_match_warn_nothing():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        wi.plan(mlp(), "he", skip=["*.bias", "0.*"])


def test_skip_takes_strings():
    with pytest.raises(TypeError, match=r"^plan: `skip` takes parameter name globs \(str\), got 3"):
        wi.plan(mlp(), "he", skip=[3])
    with pytest.raises(TypeError, match=r"`skip` takes parameter name globs \(str\), got 3"):
        wi.plan(mlp(), "he", skip=3)


def transformer():
    torch.manual_seed(0)
    return nn.TransformerEncoderLayer(8, 2, 16)


@pytest.mark.parametrize("scheme", ["gpt2", "t-fixup", "torch"])
def test_skip_covering_every_parameter_says_so(scheme):
    """Not "no parameter has a Transformer role" (they have; skip= left them out), and
    t-fixup does not refuse a model it has nothing to do on."""
    net = transformer()
    before = snapshot(net)
    with pytest.warns(UserWarning) as caught:
        p = wi.init(net, scheme, skip=["*"], seed=0)
    assert [str(w.message) for w in caught] == [
        (
            f"plan: skip=['*'] covers every parameter scheme {scheme!r} would initialize "
            "(12 skipped), so the scheme initializes none; narrow the globs if that is not "
            "what you meant"
        )
    ]
    assert all(r.init == "skip" for r in p.rows)
    assert unchanged(net, before)


def test_skip_covering_every_parameter_with_a_role_says_that_skip_left_them_out():
    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.layer = nn.TransformerEncoderLayer(8, 2, 16)
            self.zz = nn.Linear(8, 8)  # no Transformer role

        def forward(self, x):
            return self.zz(self.layer(x))

    with pytest.warns(
        UserWarning,
        match="gpt2: skip=, rules= or requires_grad=False leave out every parameter of Model that has a Transformer role",
    ) as caught:
        wi.plan(Model(), "gpt2", skip=["layer.*"])
    assert not any("no parameter of" in str(w.message) for w in caught)
    with pytest.raises(
        ValueError, match=r"^t-fixup: skip=, rules= or requires_grad=False leave out"
    ):
        wi.plan(Model(), "t-fixup", skip=["layer.*"])


def test_a_model_without_roles_still_gets_the_roles_warning():
    with pytest.warns(UserWarning, match="gpt2: no parameter of Sequential has a Transformer role"):
        wi.plan(nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 4)), "gpt2")


# --- spectral_norm: reading the weight runs its power iteration ------------------------------


def spectral_mlp():
    torch.manual_seed(0)
    net = nn.Sequential(spectral_norm(nn.Linear(6, 8)), nn.ReLU(), spectral_norm(nn.Linear(8, 2)))
    return net.train()  # in train mode every computation of .weight updates _u and _v


@pytest.mark.parametrize(
    ("scheme", "given"),
    [
        ("he", {}),
        ("orthogonal", {}),
        ("torch", {}),
        ("gpt2", {}),
        ("he", {"example_input": "x"}),
        ("lsuv", {"data": "x"}),
    ],
)
def test_planning_a_spectral_norm_model_changes_nothing(scheme, given):
    net = spectral_mlp()
    x = torch.randn(32, 6, generator=torch.Generator().manual_seed(0))
    before, rng = snapshot(net), torch.random.get_rng_state()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # gpt2: no Transformer roles here
        wi.plan(net, scheme, seed=0, **{k: x for k in given})
    assert unchanged(net, before)
    assert torch.equal(torch.random.get_rng_state(), rng)
    assert net.training


def test_diagnosing_a_spectral_norm_model_changes_nothing():
    net = spectral_mlp()
    x = torch.randn(32, 6, generator=torch.Generator().manual_seed(0))
    before, rng = snapshot(net), torch.random.get_rng_state()
    wi.diagnose(net, x)
    assert unchanged(net, before)
    assert torch.equal(torch.random.get_rng_state(), rng)
    assert net.training


def test_a_spectral_norm_weight_is_planned_and_written_through_its_original():
    net = spectral_mlp()
    original = net[0].parametrizations.weight.original
    old = original.detach().clone()
    p = wi.init(net, "he", seed=0)
    row = p["0.parametrizations.weight.original"]
    assert (row.fan_in, row.fan_out) == (6, 8) and row.std == pytest.approx((2 / 6) ** 0.5)
    assert net[0].parametrizations.weight.original is original  # written in place
    assert not torch.equal(original.detach(), old)
