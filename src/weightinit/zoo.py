"""Reference architectures for verifying initialization schemes.

Each factory returns ``(model, example_input)``: a freshly built model (under PyTorch's default
initialization) and an input batch drawn from a fixed seed, so the same call always gives the same
input. They are the hard cases a scheme has to get right: very deep plain MLPs with every common
activation and a custom one, a deep plain 1-D CNN, a deep residual MLP and a deep Transformer
encoder without normalization, and a stacked LSTM. Defaults are sized so that even depth 100
runs a forward and backward pass in well under a second on two CPU cores (the 100-block
Transformer, the slowest, takes about 0.4 s).

:data:`ZOO` names the standard set; tests and benchmarks iterate over it.

Example:
    >>> import weightinit
    >>> from weightinit import zoo
    >>> model, x = zoo.mlp(20, "tanh", width=32)
    >>> model(x).shape
    torch.Size([128, 10])
    >>> weightinit.diagnose(model, x).verdict  # PyTorch's default init
    'collapsed'
    >>> _ = weightinit.init(model, "he", example_input=x, seed=0)
    >>> weightinit.diagnose(model, x).verdict
    'healthy'
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable

import torch
from torch import nn

__all__ = [
    "ZOO", "Lambda", "cnn1d", "layer_scales", "lstm", "mlp", "residual_mlp", "transformer_encoder"
]  # fmt: skip

Built = tuple[nn.Module, torch.Tensor]
ActivationSpec = str | type[nn.Module] | Callable[[torch.Tensor], torch.Tensor]

_MODULES: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "selu": nn.SELU,
    "elu": nn.ELU,
    "sigmoid": nn.Sigmoid,
    "leaky_relu": nn.LeakyReLU,
    "mish": nn.Mish,
    "softsign": nn.Softsign,
}


class Lambda(nn.Module):
    """An elementwise function as a module: ``Lambda(torch.sin)(x) == torch.sin(x)``."""

    def __init__(self, fn: Callable[[torch.Tensor], torch.Tensor]):
        super().__init__()
        self.fn = fn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(x)

    def extra_repr(self) -> str:
        return getattr(self.fn, "__name__", repr(self.fn))


def _activation(spec: ActivationSpec) -> Callable[[], nn.Module]:
    """A factory of fresh activation modules from a name, a module class or a callable."""
    if isinstance(spec, str):
        if spec.lower() not in _MODULES:
            raise ValueError(f"unknown activation {spec!r}; known: {', '.join(sorted(_MODULES))}")
        return _MODULES[spec.lower()]
    if isinstance(spec, type) and issubclass(spec, nn.Module):
        return spec
    if callable(spec):
        return functools.partial(Lambda, spec)
    raise TypeError(f"activation: a name, an nn.Module class or a callable, got {spec!r}")


INPUT_STREAM = 1_000_003  # inputs come from seed + this: independent of weights drawn with seed


def _randn(*shape: int, seed: int) -> torch.Tensor:
    # A torch.Generator seeded like the one Plan.apply(seed=...) draws weights from under
    # rng="torch" would give the weights the input's own numbers (W[i, j] a multiple of
    # x[i, j]); hence the offset.
    return torch.randn(*shape, generator=torch.Generator().manual_seed(INPUT_STREAM + seed))


def mlp(
    depth: int,
    activation: ActivationSpec = "relu",
    *,
    width: int = 64,
    in_features: int = 64,
    out_features: int = 10,
    batch: int = 128,
    seed: int = 0,
) -> Built:
    """A plain MLP of ``depth`` Linear layers with ``activation`` after all but the last.

    ``activation`` is a name ("relu", "tanh", "gelu", "silu", "selu", ...), a torch.nn module
    class, or any elementwise callable (wrapped in :class:`Lambda`).

    Example:
        >>> import torch
        >>> model, x = mlp(3, lambda t: t * torch.sigmoid(1.5 * t), width=8, in_features=4, batch=2)
        >>> x.shape, model(x).shape
        (torch.Size([2, 4]), torch.Size([2, 10]))
    """
    if depth < 1:
        raise ValueError(f"mlp: depth must be >= 1, got {depth}")
    act = _activation(activation)
    sizes = [in_features] + [width] * (depth - 1)
    layers: list[nn.Module] = []
    for fan_in, fan_out in itertools.pairwise(sizes):
        layers += [nn.Linear(fan_in, fan_out), act()]
    model = nn.Sequential(*layers, nn.Linear(sizes[-1], out_features))
    return model, _randn(batch, in_features, seed=seed)


def cnn1d(
    depth: int,
    *,
    channels: int = 16,
    length: int = 32,
    in_channels: int = 1,
    out_features: int = 10,
    batch: int = 128,
    seed: int = 0,
) -> Built:
    """A plain 1-D CNN: ``depth - 1`` Conv1d (kernel 3, padding 1) + ReLU, then a Linear head
    on the flattened features.

    Example:
        >>> model, x = cnn1d(4, channels=8, length=10, batch=2)
        >>> x.shape, model(x).shape
        (torch.Size([2, 1, 10]), torch.Size([2, 10]))
    """
    if depth < 2:
        raise ValueError(f"cnn1d: depth must be >= 2 (a conv and the head), got {depth}")
    layers: list[nn.Module] = []
    for i in range(depth - 1):
        layers += [
            nn.Conv1d(in_channels if i == 0 else channels, channels, 3, padding=1),
            nn.ReLU(),
        ]
    model = nn.Sequential(*layers, nn.Flatten(), nn.Linear(channels * length, out_features))
    return model, _randn(batch, in_channels, length, seed=seed)


class ResidualBlock(nn.Module):
    """``x + fc2(relu(fc1(x)))``, without normalization."""

    def __init__(self, width: int):
        super().__init__()
        self.fc1, self.act, self.fc2 = nn.Linear(width, width), nn.ReLU(), nn.Linear(width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.fc2(self.act(self.fc1(x)))


def residual_mlp(
    depth: int,
    *,
    width: int = 64,
    in_features: int = 64,
    out_features: int = 10,
    batch: int = 128,
    seed: int = 0,
) -> Built:
    """An input Linear, ``depth`` unnormalized :class:`ResidualBlock` s, and a Linear head.

    Example:
        >>> model, x = residual_mlp(3, width=8, in_features=4, batch=2)
        >>> model(x).shape
        torch.Size([2, 10])
    """
    blocks = [ResidualBlock(width) for _ in range(depth)]
    model = nn.Sequential(nn.Linear(in_features, width), *blocks, nn.Linear(width, out_features))
    return model, _randn(batch, in_features, seed=seed)


def _encoder_layer_without_norm(d_model: int, nhead: int) -> nn.TransformerEncoderLayer:
    layer = nn.TransformerEncoderLayer(
        d_model, nhead, dim_feedforward=4 * d_model, dropout=0.0, batch_first=True
    )
    layer.norm1, layer.norm2 = nn.Identity(), nn.Identity()
    layer.activation_relu_or_gelu = False  # the fused eval-mode fast path needs its LayerNorms
    return layer


def transformer_encoder(
    depth: int,
    *,
    d_model: int = 64,
    nhead: int = 4,
    seq: int = 16,
    in_features: int = 16,
    out_features: int = 10,
    batch: int = 32,
    seed: int = 0,
) -> Built:
    """An input Linear, ``depth`` post-norm ``nn.TransformerEncoderLayer`` blocks with both
    LayerNorms replaced by ``nn.Identity`` (dropout 0, feed-forward 4 d_model, batch first),
    and a Linear head on every position.

    Example:
        >>> model, x = transformer_encoder(2, d_model=8, nhead=2, seq=5, in_features=3, batch=2)
        >>> x.shape, model(x).shape
        (torch.Size([2, 5, 3]), torch.Size([2, 5, 10]))
    """
    blocks = [_encoder_layer_without_norm(d_model, nhead) for _ in range(depth)]
    model = nn.Sequential(
        nn.Linear(in_features, d_model), *blocks, nn.Linear(d_model, out_features)
    )
    return model, _randn(batch, seq, in_features, seed=seed)


class LSTMNet(nn.Module):
    """Linear -> stacked ``nn.LSTM`` (batch first) -> Linear head on the output sequence."""

    def __init__(self, in_features: int, hidden: int, num_layers: int, out_features: int):
        super().__init__()
        self.inp = nn.Linear(in_features, hidden)
        self.lstm = nn.LSTM(hidden, hidden, num_layers=num_layers, batch_first=True)
        self.head = nn.Linear(hidden, out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.lstm(self.inp(x))
        return self.head(out)


def lstm(
    num_layers: int = 2,
    *,
    hidden: int = 64,
    seq: int = 16,
    in_features: int = 16,
    out_features: int = 10,
    batch: int = 128,
    seed: int = 0,
) -> Built:
    """An :class:`LSTMNet` with a ``num_layers``-layer LSTM.

    Example:
        >>> model, x = lstm(2, hidden=8, seq=5, in_features=3, batch=2)
        >>> model(x).shape
        torch.Size([2, 5, 10])
    """
    return LSTMNet(in_features, hidden, num_layers, out_features), _randn(
        batch, seq, in_features, seed=seed
    )


def swish_1_5(x: torch.Tensor) -> torch.Tensor:
    """A custom activation no table knows: ``x * sigmoid(1.5 x)``."""
    return x * torch.sigmoid(1.5 * x)


ZOO: dict[str, Callable[[], Built]] = {
    **{
        f"mlp100_{name}": functools.partial(mlp, 100, name)
        for name in ("relu", "tanh", "gelu", "silu", "selu")
    },
    "mlp100_swish_1_5": functools.partial(mlp, 100, swish_1_5),
    "cnn1d_100": functools.partial(cnn1d, 100),
    "residual_mlp_100": functools.partial(residual_mlp, 100),
    "transformer_100_no_layernorm": functools.partial(transformer_encoder, 100),
    "lstm_2": functools.partial(lstm, 2),
}
"""Name -> zero-argument factory returning ``(model, example_input)``."""


def layer_scales(report) -> list[float]:
    """The std a scheme sets at each weighted layer of a :func:`weightinit.diagnose` report:
    the output's, and for recurrent layers their gates' pre-activations' (the hidden state is
    bounded by the gates, so no weight scale can set it).

    Example:
        >>> import weightinit
        >>> model, x = lstm(1, hidden=16, batch=8)
        >>> _ = weightinit.init(model, "auto", example_input=x, seed=0)
        >>> [round(s, 1) for s in layer_scales(weightinit.diagnose(model, x))]
        [1.0, 1.0, 1.0]
    """
    return [l.gate_std if l.gate_std is not None else l.std for l in report.layers]
