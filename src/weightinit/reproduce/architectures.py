"""The architectures the benchmark grid and the AutoInit reproduction train on MNIST-1D: plain
MLPs and 1-D CNNs with each activation, a residual MLP, a Transformer without normalization and a
stacked LSTM, each at any depth, with the schemes that apply to it and the optimizer and
learning rates it is trained with.

Depth counts weighted layers for the MLP and the CNN (the head included), residual blocks for the
residual MLP, encoder blocks for the Transformer and stacked layers for the LSTM.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

import weightinit as wi
from weightinit import zoo
from weightinit.recipes import add_fixup_scalars, add_residual_gains

__all__ = ["ACTIVATION_AWARE", "ARCHITECTURES", "Architecture", "SequenceModel", "initialize"]

LENGTH, CLASSES = 40, 10  # MNIST-1D: 40 features, 10 classes
WIDTH, CHANNELS, D_MODEL, HIDDEN = 64, 16, 32, 32
BASE = ("torch", "lecun", "glorot", "he", "orthogonal", "critical", "lsuv", "auto")
#: the schemes whose scale follows the activation (the depth target is about these)
ACTIVATION_AWARE = ("he", "orthogonal", "critical", "lsuv", "auto", "selu")
PEER = "lsuv package"  # the `lsuv` package (0.3.0), measured where it installs


class SequenceModel(nn.Module):
    """Reads an MNIST-1D signal ``(N, 40)`` as a sequence of 10 steps of 4 values (patches, as
    a ViT reads an image), each with 8 fixed sinusoidal position features (no parameters to
    initialize), the ``body`` (a Transformer or an LSTM, ``(N, 10, 12) -> (N, 10, 10)``), and
    the class scores of the last step (``pool="last"``) or of the mean over steps
    (``pool="mean"``).

    Example:
        >>> model = SequenceModel(nn.Linear(SequenceModel.FEATURES, 10), pool="mean")
        >>> model(torch.randn(2, 40)).shape
        torch.Size([2, 10])
    """

    PATCH = 4
    STEPS = LENGTH // PATCH
    FEATURES = PATCH + 8

    def __init__(self, body: nn.Module, pool: str):
        super().__init__()
        self.body, self.pool = body, pool
        steps = torch.arange(self.STEPS, dtype=torch.float32)[:, None]
        freq = torch.exp(-math.log(30.0) * torch.arange(4) / 4)
        self.register_buffer(
            "position", torch.cat([torch.sin(steps * freq), torch.cos(steps * freq)], 1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        patches = x.reshape(len(x), self.STEPS, self.PATCH)
        steps = torch.cat([patches, self.position.expand(len(x), -1, -1)], dim=-1)
        out = self.body(steps)
        return out[:, -1] if self.pool == "last" else out.mean(1)


def _mlp(activation: str) -> Callable[[int], nn.Module]:
    return lambda depth: zoo.mlp(depth, activation, width=WIDTH, in_features=LENGTH)[0]


def _cnn(activation: str) -> Callable[[int], nn.Module]:
    def build(depth: int) -> nn.Module:
        act = type(zoo.mlp(2, activation, width=1, in_features=1)[0][1])
        layers: list[nn.Module] = []
        for i in range(depth - 1):
            layers += [nn.Conv1d(1 if i == 0 else CHANNELS, CHANNELS, 3, padding=1), act()]
        return nn.Sequential(*layers, nn.Flatten(), nn.Linear(CHANNELS * LENGTH, CLASSES))

    return build


def _residual(depth: int) -> nn.Module:
    return zoo.residual_mlp(depth, width=WIDTH, in_features=LENGTH)[0]


def _transformer(depth: int) -> nn.Module:
    flat = zoo.transformer_encoder(depth, d_model=D_MODEL, nhead=4, seq=SequenceModel.STEPS,
                                   in_features=SequenceModel.FEATURES)[0]  # fmt: skip
    # the blocks in a Sequential of their own: the stack the Transformer recipes count
    body = nn.Sequential(flat[0], nn.Sequential(*flat[1:-1]), flat[-1])
    return SequenceModel(body, pool="mean")


def _lstm(depth: int) -> nn.Module:
    return SequenceModel(zoo.LSTMNet(SequenceModel.FEATURES, HIDDEN, depth, CLASSES), pool="last")


@dataclass(frozen=True)
class Architecture:
    """A family of models by depth, the input layout it reads, how it is trained, and the
    schemes that apply to it (a scheme that refuses a model is recorded as such, not hidden)."""

    name: str
    build: Callable[[int], nn.Module]
    schemes: tuple[str, ...]
    optimizer: str = "sgd"
    lrs: tuple[float, ...] = (0.003, 0.01, 0.03)
    channels: bool = False  # inputs (N, 1, 40) for the CNN
    epochs: int = 10  # in the full grid; the sequence models, 10-100x dearer per step, get 5


ARCHITECTURES: dict[str, Architecture] = {
    **{f"mlp-{a}": Architecture(f"mlp-{a}", _mlp(a), BASE + (("selu",) if a == "selu" else ()))
       for a in ("relu", "tanh", "gelu", "selu")},
    **{f"cnn-{a}": Architecture(f"cnn-{a}", _cnn(a), BASE + (("selu",) if a == "selu" else ()),
                                channels=True)
       for a in ("relu", "tanh", "gelu", "selu")},
    "residual-mlp": Architecture("residual-mlp", _residual, BASE + ("fixup", "skipinit")),
    "transformer": Architecture("transformer", _transformer, BASE + ("t-fixup",),
                                optimizer="adam", lrs=(3e-4, 1e-3), epochs=5),
    "lstm": Architecture("lstm", _lstm, BASE + ("keras",), optimizer="adam", lrs=(1e-3, 3e-3),
                         epochs=5),
}  # fmt: skip


def initialize(model: nn.Module, scheme: str, batch: torch.Tensor, seed: int) -> None:
    """Initialize ``model`` by ``scheme`` with what the scheme needs ("fixup" and "skipinit"
    add their scalars to the model first; they train with the other parameters); ``batch`` is the calibration batch (LSUV's
    ``data=``) or the traced input (``example_input=``). ``"lsuv package"`` runs the ``lsuv``
    package (0.3.0) as the peer.

    Example:
        >>> net = ARCHITECTURES["residual-mlp"].build(3)
        >>> initialize(net, "fixup", torch.randn(8, 40), seed=0)
        >>> [p.count_nonzero().item() for n, p in net.named_parameters() if n.endswith("fc2.layer.weight")]
        [0, 0, 0]
    """
    if scheme == PEER:
        from lsuv import lsuv_with_singlebatch

        torch.manual_seed(seed)
        lsuv_with_singlebatch(model, batch, verbose=False)
        return
    if scheme == "fixup":
        add_fixup_scalars(model, example_input=batch)
    elif scheme == "skipinit":
        add_residual_gains(model, example_input=batch)
    key = "data" if scheme == "lsuv" else "example_input"
    wi.init(model, scheme, seed=seed, **{key: batch})
