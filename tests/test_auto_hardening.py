"""The "auto" scheme (and the traced ones) on ordinary forward code (issue 12): statistics
computed for Python control flow are not activations; additive attention masks (-inf, the
dtype's minimum, -1e9, -1e4) are structure, not signal, and nothing non-finite is passed on; a
model on the meta device plans analytically, with a CPU or a meta input, and calibration on it
names both routes; a NaN in the input and an input that does not fit the model are errors that
name them."""

from __future__ import annotations

import functools
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import weightinit as wi
from weightinit import zoo
from weightinit.scheme.protocol import DATA, EXAMPLE_INPUT, GRAPH
from weightinit.scheme.registry import get_scheme

# the residual recipes' and SELU's advice about these models
pytestmark = pytest.mark.filterwarnings(
    "ignore:.*residual output projection", "ignore:.*breaks self-normalization"
)


def _state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _unchanged(model: nn.Module, before: dict[str, torch.Tensor]) -> bool:
    after = _state(model)
    return after.keys() == before.keys() and all(torch.equal(after[k], before[k]) for k in after)


# --- control flow ---------------------------------------------------------------------------


class Block(nn.Module):
    """docs/models.md's example; ``checks`` adds the statistics a forward pass computes for
    Python control flow: a comparison, ``.item()``, argmax/argsort, isnan().any()."""

    def __init__(self, checks: bool):
        super().__init__()
        self.checks = checks
        self.conv = nn.Conv1d(8, 8, 3, padding=1)
        self.norm = nn.BatchNorm1d(8)
        self.out = nn.Linear(8, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm(self.conv(x))
        if not self.checks or (
            h.mean() > -1e9
            and h.abs().max().item() < 1e9
            and h.argmax(-1).ge(0).all()
            and h.argsort(-1).sum() >= 0
            and not torch.isnan(h).any()
        ):
            h = torch.sin(h)
        return self.out(h.mean(-1))


X_BLOCK = torch.randn(16, 8, 5, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("scheme", ["auto", "he"])
def test_control_flow_statistics_change_nothing_in_the_plan(scheme):
    """The plan of the Block with its checks is the plan of the Block without them."""
    with_checks = wi.plan(Block(checks=True), scheme, example_input=X_BLOCK, seed=0)
    without = wi.plan(Block(checks=False), scheme, example_input=X_BLOCK, seed=0)
    assert with_checks.rows == without.rows
    assert with_checks.predictions == without.predictions
    if scheme == "he":
        assert with_checks["conv.weight"].reason.startswith("followed by sin (through BatchNorm1d)")


def test_a_comparison_is_not_an_activation_for_he():
    """A comparison's output is bool, not an activation's: a layer whose output only gates
    another signal is followed by the comparison, gain 1 (it was "'gt' is not
    differentiable")."""

    class Gate(nn.Module):
        def __init__(self):
            super().__init__()
            self.gate, self.fc, self.head = nn.Linear(4, 4), nn.Linear(4, 4), nn.Linear(4, 1)

        def forward(self, x):
            return self.head(self.fc(x) * (self.gate(x) > 0))

    plan = wi.plan(Gate(), "he", example_input=torch.randn(8, 4))
    assert plan["gate.weight"].reason == "followed by gt: gain 1; He: Var = gain^2 / fan"


# --- additive attention masks -----------------------------------------------------------------


FINFO_MIN = torch.finfo(torch.float32).min


class MaskedAttention(nn.Module):
    """Causal self-attention through F.scaled_dot_product_attention. ``mask``: "bool" (sdpa's
    True = attend) or an additive fill for the masked logits (-inf, the dtype's minimum, -1e9,
    -1e4). ``bias``: T5's mechanism, a learned position bias (an Embedding over relative
    positions) where the mask allows, ``torch.where(causal, bias, fill)``."""

    def __init__(self, mask, bias: bool, d: int = 32, heads: int = 4):
        super().__init__()
        self.mask, self.heads = mask, heads
        self.norm = nn.LayerNorm(d)
        self.q, self.k, self.v, self.o = (nn.Linear(d, d, bias=False) for _ in range(4))
        self.position = nn.Embedding(31, heads) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        h = self.norm(x)
        q, k, v = (
            f(h).view(b, n, self.heads, -1).transpose(1, 2) for f in (self.q, self.k, self.v)
        )
        causal = torch.ones(n, n, dtype=torch.bool).tril()
        if self.position is not None:
            pos = torch.arange(n)
            bias = self.position((pos[None, :] - pos[:, None]).clamp(-15, 15) + 15)
            bias = bias.permute(2, 0, 1).unsqueeze(0)  # (1, heads, n, n)
            mask = torch.where(causal, bias, self.mask)
        elif self.mask == "bool":
            mask = causal
        else:
            mask = torch.zeros(n, n).masked_fill(~causal, self.mask)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return x + self.o(y.transpose(1, 2).reshape(b, n, d))


def _attention_model(mask, bias: bool, depth: int = 3) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(*[MaskedAttention(mask, bias) for _ in range(depth)], nn.Linear(32, 4))


X_SEQ = torch.randn(16, 24, 32, generator=torch.Generator().manual_seed(1))
FILLS = [-math.inf, FINFO_MIN, -1e9, -1e4]


@pytest.mark.parametrize("fill", FILLS)
def test_an_additive_mask_predicts_what_the_bool_mask_predicts(fill):
    """Masked logits weigh exactly 0 after the softmax however they are written, so the plan
    under an additive mask is the plan under sdpa's bool mask."""
    reference = wi.plan(_attention_model("bool", bias=False), "auto", example_input=X_SEQ,
                        seed=0, stabilize=False)  # fmt: skip
    plan = wi.plan(_attention_model(fill, bias=False), "auto", example_input=X_SEQ, seed=0,
                   stabilize=False)  # fmt: skip
    assert [p["layer"] for p in plan.predictions] == [p["layer"] for p in reference.predictions]
    for got, want in zip(plan.predictions, reference.predictions):
        assert got["std"] == pytest.approx(want["std"], rel=1e-5), got["layer"]
        assert got["input_std"] == pytest.approx(want["input_std"], rel=1e-5), got["layer"]


def _measured_std(model: nn.Module, plan: wi.Plan, layer: str, seeds: range) -> float:
    """The root mean square over weight draws of ``layer``'s output std on X_SEQ."""
    out = []
    handle = model.get_submodule(layer).register_forward_hook(lambda m, i, o: out.append(o))
    try:
        for seed in seeds:
            plan.apply(model, seed=seed)
            with torch.no_grad():
                model(X_SEQ)
    finally:
        handle.remove()
    return math.sqrt(sum(o.double().var().item() for o in out) / len(out))


@pytest.mark.parametrize("fill", FILLS)
def test_a_masked_position_bias_gives_finite_predictions_whatever_the_fill(fill):
    """T5's decoder: the position bias where the causal mask allows, ``fill`` elsewhere, as an
    additive mask that is itself a traced signal (it was measured as N(-1e38, 1e38) noise, and
    the attention after it as NaN). Every prediction is finite and does not depend on how the
    mask is written."""
    plan = wi.plan(_attention_model(fill, bias=True), "auto", example_input=X_SEQ, seed=0,
                   stabilize=False)  # fmt: skip
    assert all(math.isfinite(p["mean"]) and math.isfinite(p["std"]) for p in plan.predictions)
    reference = wi.plan(_attention_model(-math.inf, bias=True), "auto", example_input=X_SEQ,
                        seed=0, stabilize=False)  # fmt: skip
    assert [p["std"] for p in plan.predictions] == pytest.approx(
        [p["std"] for p in reference.predictions], rel=1e-5
    )


def test_a_masked_position_bias_is_predicted_as_the_model_does():
    """The first attention's output under T5's mask (the dtype's minimum) has the predicted
    std: over 8 weight draws of 1024 output weights each (a draw's variance deviates by ~
    sqrt(2 / 1024) = 4%), measured on 384 tokens, within 10%. (Deeper attentions are measured
    lower than they are: after the first, the tokens share part of their signal, which a
    functional attention measured on i.i.d. Gaussian tokens does not see; the stabilizing
    sweep corrects it.)"""
    model = _attention_model(FINFO_MIN, bias=True)
    plan = wi.plan(model, "auto", example_input=X_SEQ, seed=0, stabilize=False)
    predicted = next(p["std"] for p in plan.predictions if p["layer"] == "0.o")
    assert _measured_std(model, plan, "0.o", range(8)) == pytest.approx(predicted, rel=0.1)
    wi.init(model, "auto", example_input=X_SEQ, seed=0)  # and the stabilizing sweep runs


def test_fully_masked_rows_are_left_out_not_passed_on():
    """A softmax over a row whose every key is masked with -inf is NaN (sdpa gives 0 there,
    an attention written out does not); the measurement leaves those entries out and passes
    a finite signal on."""

    class PaddedQueries(nn.Module):
        def __init__(self):
            super().__init__()
            self.v, self.o = nn.Linear(32, 32), nn.Linear(32, 32)

        def forward(self, x):
            n = x.shape[1]
            mask = torch.zeros(n, n)
            mask[-4:] = -math.inf  # the last 4 queries see nothing
            weights = torch.softmax(x @ x.transpose(1, 2) / math.sqrt(32) + mask, dim=-1)
            return self.o(weights @ self.v(x))

    plan = wi.plan(PaddedQueries(), "auto", example_input=X_SEQ, seed=0, stabilize=False)
    o = next(p for p in plan.predictions if p["layer"] == "o")
    assert math.isfinite(o["input_std"]) and o["input_std"] > 0
    assert math.isfinite(plan["o.weight"].args["scale"])


def test_an_op_with_no_finite_output_is_named():
    class Broken(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc, self.head = nn.Linear(4, 4), nn.Linear(4, 1)

        def forward(self, x):
            return self.head(torch.sqrt(-self.fc(x).abs() - 1))  # NaN everywhere

    model = Broken()
    before = _state(model)
    with pytest.raises(ValueError, match=r"auto: sqrt gives no finite value on Gaussian input"):
        wi.init(model, "auto", example_input=torch.randn(8, 4), seed=0)
    assert _unchanged(model, before)


# --- the meta device --------------------------------------------------------------------------


class EvalNorm(nn.Module):
    """Conv1d, eval-mode BatchNorm (running statistics: torch's reset values), ReLU, head."""

    def __init__(self):
        super().__init__()
        self.conv, self.norm = nn.Conv1d(2, 8, 3, padding=1), nn.BatchNorm1d(8)
        self.head = nn.Linear(8 * 10, 3)
        self.norm.eval()

    def forward(self, x):
        return self.head(torch.relu(self.norm(self.conv(x))).flatten(1))


class Recurrent(nn.Module):
    """Linear, a 2-layer tanh RNN (its rule in closed form; an LSTM's is solved numerically,
    seconds per plan), head."""

    def __init__(self):
        super().__init__()
        self.inp, self.rnn = nn.Linear(3, 8), nn.RNN(8, 8, num_layers=2, batch_first=True)
        self.head = nn.Linear(8, 2)

    def forward(self, x):
        return self.head(self.rnn(self.inp(x))[0])


SMALL = {
    "mlp": functools.partial(zoo.mlp, 3, "gelu", width=16, in_features=8, batch=32),
    "cnn1d": functools.partial(zoo.cnn1d, 3, channels=4, length=10, batch=16),
    "transformer": functools.partial(zoo.transformer_encoder, 2, d_model=16, seq=6, batch=8),
    "rnn": lambda: (Recurrent(), torch.randn(16, 5, 3)),
    "eval_norm": lambda: (EvalNorm(), torch.randn(16, 2, 10)),
}


def _on_meta(make) -> nn.Module:
    torch.manual_seed(0)
    with torch.device("meta"):
        return make()[0]


@pytest.mark.parametrize("name", list(SMALL))
@pytest.mark.parametrize("meta_input", [False, True], ids=["cpu_input", "meta_input"])
def test_auto_plans_a_meta_model_as_it_plans_the_model(name, meta_input):
    """Without storage "auto" makes the analytic plan it makes with it (its maps need
    shapes and the input's statistics, from a CPU input or given as options); the
    stabilizing sweep awaits the weights."""
    torch.manual_seed(0)
    model, x = SMALL[name]()
    options = {"input_mean": 0.0, "input_std": 1.0} if meta_input else {}
    reference = wi.plan(model, "auto", example_input=x, seed=0, stabilize=False, **options)
    meta = _on_meta(SMALL[name])
    given = x.to("meta") if meta_input else x
    analytic = wi.plan(meta, "auto", example_input=given, seed=0, stabilize=False, **options)
    assert analytic.rows == reference.rows and analytic.predictions == reference.predictions
    pending = wi.plan(meta, "auto", example_input=given, seed=0, **options)
    assert pending.pending_calibration and not pending.calibration
    assert pending.rows == reference.rows
    assert all(p.is_meta for p in meta.parameters())


def test_auto_planned_on_meta_then_calibrated_writes_what_one_call_writes():
    """As "lsuv": the analytic plan now, the stabilizing sweep once the model has storage."""
    make = SMALL["mlp"]
    torch.manual_seed(0)
    reference, x = make()
    wi.init(reference, "auto", example_input=x, seed=3)
    meta = _on_meta(make)
    pending = wi.plan(meta, "auto", example_input=x, seed=3)
    model = meta.to_empty(device="cpu")
    with pytest.raises(ValueError, match="awaits calibration"):
        pending.apply(model)
    with pytest.raises(ValueError, match=r"pass example_input=batch \(or data=batch\)"):
        wi.calibrate(pending, model)
    calibrated = wi.calibrate(pending, model, example_input=x)
    calibrated.apply(model)
    assert _unchanged(model, _state(reference))


def test_a_meta_input_without_statistics_says_what_to_pass():
    meta = _on_meta(SMALL["mlp"])
    with pytest.raises(ValueError, match=r"`example_input` is on the meta device.*input_mean="):
        wi.plan(meta, "auto", example_input=torch.randn(4, 8, device="meta"))


@pytest.mark.parametrize("scheme", ["lsuv", "auto"])
def test_calibrating_a_meta_model_names_both_routes(scheme):
    meta = _on_meta(SMALL["mlp"])
    x = SMALL["mlp"]()[1]
    given = {"example_input": x} if scheme == "auto" else {}
    with pytest.raises(ValueError, match=r"meta device") as err:
        wi.plan(meta, scheme, data=x, seed=0, **given)
    message = str(err.value)
    assert "plan without data=" in message  # the analytic plan now
    assert "to_empty" in message and "weightinit.calibrate(plan, model, data=batch)" in message
    assert all(p.is_meta for p in meta.parameters())


# every scheme on its model, as tests/test_scheme_contract.py builds them
TRANSFORMER = functools.partial(zoo.transformer_encoder, 2, d_model=16, seq=6, batch=8)
RESIDUAL = functools.partial(zoo.residual_mlp, 3, width=12, in_features=10, batch=32)
MODEL_FOR = {"fixup": RESIDUAL}


def _built(scheme: str, meta: bool) -> tuple[nn.Module, torch.Tensor]:
    torch.manual_seed(0)
    model, x = MODEL_FOR.get(scheme, TRANSFORMER)()
    prepare = get_scheme(scheme).prepare
    if prepare is not None:
        prepare(model, example_input=x)
    return model.to("meta") if meta else model, x


@pytest.mark.parametrize("scheme", sorted(wi.schemes()))
def test_every_scheme_plans_a_meta_model_as_it_plans_the_model(scheme):
    """A dry run: the plan of the model without storage is the plan of the model, for every
    scheme, traced on a CPU input where it reads the graph; calibration awaits the weights."""
    s = get_scheme(scheme)
    needs = s.needs_for(*s.take({})[:2])
    given = {}
    x = _built(scheme, meta=False)[1]
    if GRAPH in needs or EXAMPLE_INPUT in needs:
        given["example_input"] = x
    options = {"stabilize": False} if scheme == "auto" else {}
    reference = wi.plan(_built(scheme, meta=False)[0], scheme, seed=0, **given, **options)
    meta = _built(scheme, meta=True)[0]
    plan = wi.plan(meta, scheme, seed=0, **given, **options)
    assert plan.rows == reference.rows
    assert plan.pending_calibration == reference.pending_calibration == (DATA in needs)
    assert all(p.is_meta for p in meta.parameters())


# --- the input ------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_a_non_finite_example_input_is_named(bad):
    model, x = SMALL["mlp"]()
    x = x.clone()
    x[3, 5] = bad
    before = _state(model)
    with pytest.raises(ValueError, match=r"`example_input` contains 1 NaN or \+inf value\(s\) "
                                         r"\(first at index \(3, 5\)\)"):  # fmt: skip
        wi.apply(model, example_input=x, seed=0)
    assert _unchanged(model, before)


def test_a_non_finite_tensor_among_several_inputs_is_named():
    class Two(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(4, 4), nn.Linear(4, 4)

        def forward(self, x, y):
            return self.a(x) + self.b(y)

    y = torch.randn(8, 4)
    y[0, 0] = math.nan
    with pytest.raises(ValueError, match=r"tensor 1 of `example_input` contains 1 NaN"):
        wi.plan(Two(), "auto", example_input=(torch.randn(8, 4), y))


class Nested(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(12, 4))

    def forward(self, x):
        return self.body(x)


@pytest.mark.parametrize("scheme", ["he", "auto", "orthogonal"])
def test_an_input_that_does_not_fit_names_the_layer_and_the_shapes(scheme):
    model = Nested()
    before = _state(model)
    with pytest.raises(ValueError) as err:
        wi.init(model, scheme, example_input=torch.randn(5, 8), seed=0)
    assert str(err.value).startswith(
        "plan: the model failed on `example_input` of shape (5, 8): layer 'body.2' (Linear) "
        "failed on its input of shape (5, 16): mat1 and mat2 shapes cannot be multiplied"
    )
    assert str(err.value).endswith("; pass example_input= a batch the model accepts")
    assert _unchanged(model, before)


def test_a_meta_model_whose_forward_reads_values_says_so():
    class ReadsValues(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 4)

        def forward(self, x):
            return self.fc(x) if x.sum().item() > -1e9 else x

    with torch.device("meta"):
        model = ReadsValues()
    with pytest.raises(ValueError, match=r"the model \(ReadsValues\) failed .*to_empty"):
        wi.plan(model, "he", example_input=torch.randn(2, 4))


@pytest.mark.parametrize("wrap", ["spectral_norm", "weight_norm"])
def test_auto_plans_the_tensors_behind_a_parametrization(wrap):
    from torch.nn.utils import parametrizations

    torch.manual_seed(0)
    first = getattr(parametrizations, wrap)(nn.Linear(16, 16))
    model = nn.Sequential(first, nn.ReLU(), nn.Linear(16, 2))
    x = torch.randn(256, 16, generator=torch.Generator().manual_seed(1))
    p = wi.init(model, "auto", example_input=x, seed=0)
    behind = [r for r in p.rows if ".parametrizations.weight.original" in r.name]
    assert behind and all(r.init != "skip" for r in behind)
    if wrap == "weight_norm":  # the effective weight is what auto chose: unit output variance
        assert 0.8 < model[0](x).std().item() < 1.25
