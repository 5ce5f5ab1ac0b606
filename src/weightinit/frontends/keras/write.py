"""Writing a plan into a Keras 3 model: every value drawn first, on the CPU, by
:meth:`~weightinit.Plan.apply` (the same checks and generator as for torch models), on a torch
mirror of the weights (plans of the Keras layers) or on the model's torch twin (plans made on
the twin), and returned in Keras's layout for the caller to assign once all exist."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import torch
from torch import nn

from weightinit.frontends.keras.settle import weight_name
from weightinit.frontends.keras.twin import FROZEN, KerasTwin
from weightinit.plans.plan import SKIP, Plan, Row

__all__ = ["TWIN_NOTE", "values"]

#: the note a plan made on the torch twin carries (``plan.notes["keras"]``)
TWIN_NOTE = "planned on the torch twin of the Keras graph: shapes in torch's layout, written back in Keras's"


def values(plan: Plan, model: Any, seed: int | None) -> list[tuple[Any, np.ndarray]]:
    """(Keras variable, its new value in Keras's layout) for every weight ``plan`` writes;
    nothing is assigned, and a bad plan raises before any value exists."""
    if plan.notes.get("keras") == TWIN_NOTE:
        return _twin_values(plan, model, seed)
    return _mirror_values(plan, model, seed)


def _twin_values(plan: Plan, model: Any, seed: int | None) -> list[tuple[Any, Any]]:
    twin = KerasTwin(model, "write")
    by_keras = {weight_name(model, w.variable): t for t, w in twin.weights.items()}
    missing = [r.name for r in plan.rows if r.init != SKIP and r.name not in by_keras]
    if missing:
        raise ValueError(
            f"write: the Keras model has no weight {missing[0]!r}; was this plan made for "
            "another model?"
        )
    rows = [dataclasses.replace(r, name=by_keras.get(r.name, r.name)) for r in plan.rows]
    own = [n for n, _ in twin.named_parameters() if n.rsplit(".", 1)[-1] in FROZEN]
    rows += [Row(n, "", "", SKIP, reason="the twin's own: no Keras variable") for n in own]
    buffers = {by_keras.get(k, k): v for k, v in plan.buffers.items()}
    renamed = dataclasses.replace(plan, rows=rows, buffers=buffers)
    renamed.apply(twin, seed=seed)
    tensors = {**dict(twin.named_parameters()), **dict(twin.named_buffers())}
    written = [by_keras[r.name] for r in plan.rows if r.init != SKIP]
    written += [t for t in renamed.buffers if t in twin.weights]
    values = []
    for t in written:
        weight = twin.weights[t]
        values.append((weight.variable, weight.to_keras(tensors[t].detach().numpy())))
    return values


def _mirror_values(plan: Plan, model: Any, seed: int | None) -> list[tuple[Any, Any]]:
    variables = {weight_name(model, v): v for v in model.weights}
    missing = [r.name for r in plan.rows if r.init != SKIP and r.name not in variables]
    if missing:
        raise ValueError(
            f"write: the Keras model has no weight {missing[0]!r}; was this plan made for "
            "another model?"
        )
    mirror = _Mirror({r.name: tuple(variables[r.name].shape) for r in plan.rows if r.init != SKIP})
    plan.apply(mirror, seed=seed)
    return [(variables[name], value.numpy()) for name, value in mirror.values()]


class _Mirror(nn.Module):
    """torch parameters named as the Keras weights (``layer.kernel``), for Plan.apply."""

    def __init__(self, shapes: dict[str, tuple[int, ...]]):
        super().__init__()
        self._names = list(shapes)
        for name, shape in shapes.items():
            owner = self
            *path, leaf = name.split(".")
            for part in path:
                if part not in owner._modules:
                    owner.add_module(part, nn.Module())
                owner = owner._modules[part]
            owner.register_parameter(leaf, nn.Parameter(torch.zeros(shape)))

    def values(self) -> list[tuple[str, torch.Tensor]]:
        params = dict(self.named_parameters())
        return [(name, params[name].detach()) for name in self._names]
