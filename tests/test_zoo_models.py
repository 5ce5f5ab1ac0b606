"""The reference architectures of weightinit.zoo: shapes, determinism, structure, traceability."""

import warnings

import pytest
import torch
from torch import nn

import weightinit
from weightinit import zoo


@pytest.mark.parametrize("name", sorted(zoo.ZOO))
def test_every_zoo_model_runs_is_deterministic_and_plans_without_unknown_modules(name):
    model, x = zoo.ZOO[name]()
    _, again = zoo.ZOO[name]()
    assert torch.equal(x, again)  # the example input comes from a fixed seed
    y = model(x)
    assert y.shape[0] == x.shape[0] and y.shape[-1] == 10
    y.square().mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an unknown module would warn
        plan = weightinit.plan(model, "he", example_input=x)
    assert "unknown" not in {row.role for row in plan.rows}
    assert len(plan.rows) == len(list(model.parameters()))


def test_zoo_covers_the_depth_100_cases():
    for act in ("relu", "tanh", "gelu", "silu", "selu", "swish_1_5"):
        model, _ = zoo.ZOO[f"mlp100_{act}"]()
        assert sum(isinstance(m, nn.Linear) for m in model) == 100
    cnn, _ = zoo.ZOO["cnn1d_100"]()
    assert sum(isinstance(m, (nn.Conv1d, nn.Linear)) for m in cnn) == 100
    res, _ = zoo.ZOO["residual_mlp_100"]()
    assert sum(isinstance(m, zoo.ResidualBlock) for m in res) == 100
    enc, _ = zoo.ZOO["transformer_100_no_layernorm"]()
    layers = [m for m in enc.modules() if isinstance(m, nn.TransformerEncoderLayer)]
    assert len(layers) == 100 and not any(isinstance(m, nn.LayerNorm) for m in enc.modules())
    net, _ = zoo.ZOO["lstm_2"]()
    assert net.lstm.num_layers == 2 and net.lstm.batch_first


@pytest.mark.parametrize(
    "activation, expected",
    [("relu", nn.ReLU), ("GELU", nn.GELU), (nn.SELU, nn.SELU), (torch.sin, zoo.Lambda)],
)
def test_mlp_activation_by_name_class_or_callable(activation, expected):
    model, x = zoo.mlp(3, activation, width=8, in_features=5, batch=4, seed=1)
    acts = [m for m in model if not isinstance(m, nn.Linear)]
    assert len(acts) == 2 and all(type(m) is expected for m in acts)
    assert [m.weight.shape for m in model if isinstance(m, nn.Linear)] == [(8, 5), (8, 8), (10, 8)]
    assert x.shape == (4, 5) and not torch.equal(x, zoo.mlp(3, batch=4, in_features=5)[1])


def test_custom_activation_is_applied_elementwise_and_gets_its_own_gain():
    model, x = zoo.mlp(2, zoo.swish_1_5, width=6, in_features=6)
    torch.testing.assert_close(model[1](x), x * torch.sigmoid(1.5 * x))
    reason = weightinit.plan(model, "he", example_input=x)["0.weight"].reason
    assert reason.startswith(f"followed by Lambda: gain {weightinit.gain(zoo.swish_1_5):.4g}")


def test_unknown_activation_name_is_an_error():
    with pytest.raises(ValueError, match="unknown activation 'relu7'"):
        zoo.mlp(3, "relu7")


def test_transformer_without_layernorm_runs_in_eval_mode():
    model, x = zoo.transformer_encoder(2, d_model=8, nhead=2, seq=5, in_features=3, batch=2)
    model.eval()
    with torch.no_grad():
        assert torch.isfinite(model(x)).all()
