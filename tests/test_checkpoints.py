"""Initializing only what a checkpoint did not provide (missing_keys= / loaded=)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import weightinit as wi


class Classifier(nn.Module):
    """A pretrained body and a new head (the usual fine-tuning setup)."""

    def __init__(self, classes: int = 3):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.BatchNorm1d(16))
        self.head = nn.Linear(16, classes)

    def forward(self, x):
        return self.head(self.body(x))


def pretrained() -> dict[str, torch.Tensor]:
    torch.manual_seed(1)
    trained = Classifier(classes=10)  # another head: its keys do not fit the new model
    return {k: v for k, v in trained.state_dict().items() if k.startswith("body.")}


def fresh() -> Classifier:
    torch.manual_seed(0)
    return Classifier()


@pytest.mark.parametrize("how", ["result", "list", "hf_info", "loaded"])
def test_only_what_the_checkpoint_lacks_is_initialized(how):
    state = pretrained()
    model = fresh()
    result = model.load_state_dict(state, strict=False)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    kwargs = {
        "result": {"missing_keys": result},
        "list": {"missing_keys": list(result.missing_keys)},
        "hf_info": {
            "missing_keys": {"missing_keys": list(result.missing_keys), "unexpected_keys": []}
        },
        "loaded": {"loaded": state},
    }[how]
    p = wi.init(model, "he", seed=0, **kwargs)
    for name in ("body.0.weight", "body.0.bias", "body.2.weight", "body.2.bias"):
        assert p[name].init == "skip" and p[name].reason.startswith("loaded: kept")
        assert torch.equal(model.state_dict()[name], state[name])
    for name in ("head.weight", "head.bias"):
        assert p[name].init != "skip"
    assert not torch.equal(model.head.weight, before["head.weight"])
    assert torch.equal(model.head.bias, torch.zeros(3))


def test_a_tied_tensor_is_kept_when_any_of_its_names_was_loaded():
    class Tied(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Embedding(10, 4)
            self.out = nn.Linear(4, 10, bias=False)
            self.out.weight = self.embed.weight

        def forward(self, ids):
            return self.out(self.embed(ids))

    model = Tied()
    embed = model.embed.weight.detach().clone()
    p = wi.init(model, "he", seed=0, missing_keys=["out.weight"])  # HF reports the tied head
    assert p["embed.weight"].reason.startswith("loaded: kept")
    assert torch.equal(model.embed.weight, embed) and model.out.weight is model.embed.weight


def test_buffers_in_missing_keys_are_fine_and_strange_keys_are_named():
    model = fresh()
    p = wi.plan(model, "he", missing_keys=["head.weight", "head.bias", "body.2.running_mean"])
    assert p["body.2.weight"].init == "skip" and p["head.weight"].init != "skip"
    with pytest.raises(
        ValueError, match=r"`missing_keys` names 'model.head.weight'.*'head.weight'"
    ):
        wi.plan(model, "he", missing_keys=["model.head.weight"])


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"missing_keys": ["head.bias"], "loaded": {}}, ValueError, "not both"),
        ({"missing_keys": "head.bias"}, TypeError, "a list of str"),
        ({"missing_keys": {"unexpected_keys": []}}, TypeError, "'missing_keys' entry"),
        ({"loaded": ["body.0.weight"]}, TypeError, "the state dict that was loaded"),
        ({"loaded": {"model.body.0.weight": torch.zeros(1)}}, ValueError, "same prefixes"),
    ],
)
def test_bad_checkpoint_arguments_are_named_and_change_nothing(kwargs, error, message):
    model = fresh()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(error, match=message):
        wi.init(model, "he", seed=0, **kwargs)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
