"""Front ends: everything that touches the framework a model is written in. The planner asks the
model's front end to settle its parameters and trace it; schemes call its services (propagate
the signal through the trace, build a stand-in batch, calibrate on data) through
:class:`~weightinit.scheme.protocol.Frontend`, so a scheme is written once for every framework.
torch is the first (:class:`~weightinit.frontends.torch.TorchFrontend`). Keras 3 models
(:mod:`weightinit.frontends.keras`) are read directly for the classic schemes and reach every
other scheme through a torch twin of their graph, planned by the torch front end.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from weightinit._checks import refuse_keras
from weightinit.frontends.torch import TorchFrontend

__all__ = ["TorchFrontend", "frontend_for"]


def frontend_for(model: Any, where: str) -> TorchFrontend:
    """The front end of ``model``'s framework; ``where`` (the public function) words the error.
    A Keras 3 model is refused with what to use instead (:func:`refuse_keras`)."""
    refuse_keras(model, where)
    if isinstance(model, nn.Module):
        return TorchFrontend()
    raise TypeError(
        f"{where}: `model` must be a torch.nn.Module, got {type(model).__name__}; weightinit's "
        "whole-model functions support torch models (the tensor initializers take any tensor)"
    )
