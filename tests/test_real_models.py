"""Patterns of real model code bases (Hugging Face's above all), reproduced in small modules so
that they run without those libraries: a forward pass torch.fx cannot trace but a model that
carries its own ``dummy_inputs``; a tied parameter whose first name belongs to a module
weightinit does not know (BERT's ``cls.predictions.bias``)."""

import math
import re
import warnings

import pytest
import torch
from torch import nn

import weightinit as wi
from weightinit.plans.plan import SKIP


def snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


def unchanged(model: nn.Module, before: dict[str, torch.Tensor]) -> bool:
    after = model.state_dict()
    return after.keys() == before.keys() and all(torch.equal(after[k], before[k]) for k in before)


# --- dummy_inputs: models fx cannot trace, with inputs of their own ---------------------------


class Tagger(nn.Module):
    """Data-dependent control flow (fx cannot trace it) and keyword-only inputs, as Hugging
    Face models take them; ``dummy_inputs`` as a Hugging Face model carries it. The branch
    the dummy input takes has tanh after ``proj``; the other would have relu."""

    def __init__(self, dummy=None):
        super().__init__()
        self.embed = nn.Embedding(10, 8)
        self.proj = nn.Linear(8, 8)
        self.out = nn.Linear(8, 3)
        self._dummy = (
            dummy if dummy is not None else {"input_ids": torch.arange(15).view(3, 5) % 10}
        )

    @property
    def dummy_inputs(self):
        return self._dummy

    def forward(self, *, input_ids):
        h = self.proj(self.embed(input_ids % 10))
        h = torch.tanh(h) if (input_ids < 10).all() else torch.relu(h)
        return self.out(h)


class NoDummy(Tagger):
    @property
    def dummy_inputs(self):
        raise AttributeError("dummy_inputs")


class Positional(nn.Module):
    """``dummy_inputs`` as a tuple: positional arguments."""

    dummy_inputs = (torch.ones(2, 4), torch.zeros(2, 4))

    def __init__(self):
        super().__init__()
        self.a = nn.Linear(4, 4)
        self.b = nn.Linear(4, 2)

    def forward(self, x, y):
        h = self.a(x + y)
        if h.sum() > -1e9:  # data-dependent: fx cannot trace it
            h = torch.sigmoid(h)
        return self.b(h)


@pytest.mark.parametrize("scheme", ["he", "orthogonal"])
def test_dummy_inputs_trace_the_model_when_fx_cannot(scheme):
    model = Tagger()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        plan = wi.init(model, scheme, seed=0)
    assert plan.graph == "execution"
    assert plan.notes == {"example_input": "the model's dummy_inputs (input_ids: shape (3, 5))"}
    assert plan["proj.weight"].reason.startswith("followed by tanh: gain 1.593")
    assert plan["out.weight"].reason.startswith("followed by the output: gain 1")
    assert [r.name for r in plan if r.init == SKIP] == []
    if scheme == "he":  # Var = gain^2 / fan_in, tanh's gain the fixed point 1.5925
        assert plan["proj.weight"].std == pytest.approx(1.5925 / math.sqrt(8), rel=1e-3)
    assert "example_input: the model's dummy_inputs (input_ids: shape (3, 5))" in str(plan)
    assert wi.Plan.from_json(plan.to_json()).notes == plan.notes
    assert model.training  # the trace restored the mode


def test_dummy_inputs_follow_the_branch_they_take():
    """The activation comes from running the dummy input: ids >= 10 take the relu branch."""
    plan = wi.plan(Tagger({"input_ids": torch.full((2, 3), 12)}), "he")
    assert plan["proj.weight"].reason.startswith("followed by relu: gain 1.414")
    assert plan.notes["example_input"] == "the model's dummy_inputs (input_ids: shape (2, 3))"


def test_tuple_dummy_inputs_are_positional():
    plan = wi.plan(Positional(), "he")
    assert plan["a.weight"].reason.startswith("followed by sigmoid")
    assert plan.notes["example_input"] == "the model's dummy_inputs (shapes (2, 4), (2, 4))"


class EitherWay(Tagger):
    """Takes ``input_ids`` by position too."""

    def forward(self, input_ids):
        return super().forward(input_ids=input_ids)


def test_an_example_input_wins_over_dummy_inputs():
    model = EitherWay()
    assert "relu" not in wi.plan(model, "he")["proj.weight"].reason  # the dummy one: tanh
    given = wi.plan(model, "he", example_input=torch.full((2, 3), 12))
    assert given.notes == {}
    assert given["proj.weight"].reason.startswith("followed by relu")
    on_data = wi.plan(model, "he", data=torch.full((2, 3), 12))
    assert on_data.notes == {}
    assert on_data["proj.weight"].reason.startswith("followed by relu")


def test_without_dummy_inputs_the_fx_error_remains():
    model = NoDummy()
    before = snapshot(model)
    with pytest.raises(ValueError, match=r"torch.fx cannot trace NoDummy .*pass example_input="):
        wi.init(model, "he", seed=0)
    assert unchanged(model, before)


@pytest.mark.parametrize(
    ("dummy", "error", "cause"),
    [
        (
            [torch.zeros(3, 5, dtype=torch.long)],
            TypeError,
            "`dummy_inputs` is a list, not a tensor",
        ),
        ({}, TypeError, "`dummy_inputs` is an empty mapping"),
        (
            {0: torch.zeros(3, 5)},
            TypeError,
            "a mapping keyed by 0, not one of keyword argument names",
        ),
        ({"ids": torch.zeros(3, 5, dtype=torch.long)}, ValueError, "failed on `dummy_inputs`"),
        ({"input_ids": torch.zeros(3, 5)}, ValueError, "failed on `dummy_inputs` of shape (3, 5)"),
    ],
)
def test_dummy_inputs_that_cannot_stand_in(dummy, error, cause):
    model = Tagger(dummy)
    model.eval()
    before = snapshot(model)
    with pytest.raises(error, match=re.escape(cause)) as raised:
        wi.init(model, "he", seed=0)
    assert "pass example_input=" in str(raised.value)  # what to do instead
    assert unchanged(model, before)
    assert not model.training


# --- tied parameters: every name is looked at ----------------------------------------------------


class PredictionHead(nn.Module):
    """BERT's LM prediction head: its own ``bias`` is the decoder Linear's bias (one tensor,
    two names, the first of which belongs to this module, which weightinit does not know)."""

    def __init__(self):
        super().__init__()
        self.transform = nn.Linear(8, 8)
        self.decoder = nn.Linear(8, 10)
        self.bias = nn.Parameter(torch.full((10,), 7.0))
        self.decoder.bias = self.bias

    def forward(self, x):
        return self.decoder(torch.tanh(self.transform(x)))


class Masked(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Linear(8, 8)
        self.cls = PredictionHead()

    def forward(self, x):
        return self.cls(self.body(x))


@pytest.mark.parametrize(("scheme", "options"), [("he", {"bias": 0.5}), ("bert", {})])
def test_a_tied_parameter_is_described_from_a_name_whose_module_is_known(scheme, options):
    model = Masked()
    assert [n for n, _ in model.named_parameters(remove_duplicate=False)][2] == "cls.bias"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "bert": no Transformer roles in this toy model
        plan = wi.init(model, scheme, seed=0, strict=True, **options)  # strict: nothing unknown
    first = plan["cls.bias"]
    assert (first.module, first.role, first.init) == (
        "Linear",
        "bias",
        "constant" if options else "zeros",
    )
    tied = plan["cls.decoder.bias"]
    assert (tied.role, tied.init, tied.reason) == ("tied", SKIP, "tied to cls.bias: skipped")
    names = {"cls.bias", "cls.decoder.bias"}
    assert sum(r.name in names and r.init != SKIP for r in plan) == 1  # written once
    assert model.cls.bias is model.cls.decoder.bias  # still tied
    assert torch.equal(model.cls.bias.detach(), torch.full((10,), 0.5 if options else 0.0))


def test_a_tied_parameter_with_no_known_name_is_still_unknown():
    class Holder(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.ones(3))
            self.inner = nn.Module()
            self.inner.w = self.w

        def forward(self, x):
            return x * self.w

    model = Holder()
    with pytest.raises(ValueError, match=r"does not know the module of 1 parameter\(s\).*: w\."):
        wi.plan(model, "he", strict=True)
    plan = wi.plan(model, "he", rules={"w": "zeros"})
    assert [(r.name, r.init) for r in plan] == [("w", "zeros"), ("inner.w", SKIP)]


def test_a_model_that_raises_anything_on_its_dummy_inputs_gets_a_clear_error():
    """HF's ViTModel offers `input_ids` as dummy inputs and then reads `pixel_values.dtype`: an
    AttributeError inside the forward pass is reported as the model failing on that input."""

    class Vision(nn.Module):
        def __init__(self):
            super().__init__()
            self.patch = nn.Linear(4, 4)

        @property
        def dummy_inputs(self):
            return {"input_ids": torch.zeros(3, 5, dtype=torch.long)}

        def forward(self, pixel_values=None, input_ids=None):
            if input_ids is not None and bool(input_ids.sum() >= 0):  # data-dependent: no fx
                return self.patch(pixel_values.dtype)  # AttributeError, as in ViTModel
            return self.patch(pixel_values)

    model = Vision()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ValueError, match=r"failed on `dummy_inputs` .*'NoneType' object has no"):
        wi.plan(model, "he")
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
