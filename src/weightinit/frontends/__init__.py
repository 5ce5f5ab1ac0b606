"""Front ends: everything that touches the framework a model is written in. The planner asks the
model's front end to settle its parameters and trace it; schemes call its services (propagate
the signal through the trace, build a stand-in batch, calibrate on data) through
:class:`~weightinit.scheme.protocol.Frontend`, so a scheme is written once for every framework.
torch is the first (:class:`~weightinit.frontends.torch.TorchFrontend`).
"""

from __future__ import annotations

from typing import Any

from torch import nn

from weightinit.frontends.torch import TorchFrontend

__all__ = ["TorchFrontend", "frontend_for"]


def frontend_for(model: Any, where: str) -> TorchFrontend:
    """The front end of ``model``'s framework; ``where`` (the public function) words the error.
    A Keras 3 model is refused with what to use instead: under Keras's torch backend it is an
    ``nn.Module`` too, but its variables are Keras's, in layers torch knows nothing of."""
    if _is_keras(model):
        raise TypeError(
            f"{where}: `model` is a Keras model ({type(model).__name__}); these functions take "
            "torch models. For Keras use weightinit.keras: plan(model, 'he') and init(...) "
            "(the classic schemes), or its initializers per layer; see docs/keras.md"
        )
    if isinstance(model, nn.Module):
        return TorchFrontend()
    raise TypeError(
        f"{where}: `model` must be a torch.nn.Module, got {type(model).__name__}; weightinit's "
        "whole-model functions support torch models (the tensor initializers take any tensor)"
    )


def _is_keras(model: Any) -> bool:
    """Is ``model`` a Keras layer or model (asked without importing Keras)?"""
    return any(cls.__module__.split(".")[0] == "keras" for cls in type(model).__mro__)
