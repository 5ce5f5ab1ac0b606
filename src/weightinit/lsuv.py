"""LSUV: layer-sequential unit-variance initialization (Mishkin & Matas 2016), calibrated inside
the forward pass.

After an orthonormal pre-initialization, every weighted layer's output is brought to a target
std on a batch of real data. The classic implementation runs one forward pass per layer and
iteration. Here each layer is rescaled *in the forward hook that sees its output*, and the hook
returns the rescaled output, so the layers after it see calibrated inputs in the same pass: one
sweep over all layers costs one forward pass, and the whole calibration a handful.

Calibration runs on a copy of the model; the result is a :class:`~weightinit.Plan` whose weight
rows carry the measured gains and which records the seed that makes its pre-initialization
reproducible. Applying it writes the calibrated values, atomically like every plan.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from weightinit.plan import SKIP, Plan, unwrap

__all__ = ["Calibration", "lsuv_plan"]

# layers LSUV calibrates: their output is linear in their weight (and bias)
_CALIBRATED = (nn.Linear, nn.modules.conv._ConvNd, nn.Bilinear, nn.Embedding, nn.EmbeddingBag)


@dataclass
class Calibration:
    """One layer's record: sweeps until within tolerance, total gain, and final output std."""

    layer: str
    iterations: int
    gain: float
    std: float


def lsuv_plan(
    model: nn.Module,
    base: Plan,
    data: Any,
    *,
    seed: int,
    target_std: float = 1.0,
    tol: float = 0.05,
    max_iter: int = 10,
) -> tuple[Plan, list[Calibration]]:
    """Calibrate ``base`` (an orthonormal or variance-scaling plan) on ``data``."""
    if not target_std > 0 or not 0 < tol < 1 or max_iter < 1:
        raise ValueError(
            "lsuv: need target_std > 0, 0 < tol < 1 and max_iter >= 1, got "
            f"{target_std}, {tol}, {max_iter}"
        )
    model = unwrap(model)
    base = _unit_gains(base)
    work = copy.deepcopy(model)
    names = {m: n for n, m in work.named_modules()}
    skipped = {r.name for r in base.rows if r.init == SKIP}
    layers = [
        m
        for m in work.modules()
        if isinstance(m, _CALIBRATED) and _prefix(names[m]) + "weight" not in skipped
    ]
    gains = {m: 1.0 for m in layers}
    iterations = {m: 0 for m in layers}
    final_std: dict[nn.Module, float] = {}
    args = data if isinstance(data, tuple) else (data,)
    sweep_scale: dict[nn.Module, float] = {}

    def hook(module, inputs, output):
        if module in sweep_scale:  # used twice: the first use set the scale for this sweep
            return output * sweep_scale[module]
        std = output.detach().float().std().item()
        if not math.isfinite(std):
            raise ValueError(f"lsuv: layer {names[module]!r} gives non-finite outputs on `data`")
        if std == 0:
            if module.weight.detach().abs().max() == 0:
                final_std[module] = 0.0  # deliberately zero (Fixup, zero heads): left at zero
                sweep_scale[module] = 1.0
                return None
            raise ValueError(
                f"lsuv: layer {names[module]!r} outputs all zeros on `data`, so no scale can "
                "reach the target std; check the data or the layers before it"
            )
        if abs(std - target_std) <= tol * target_std:
            sweep_scale[module] = 1.0
            final_std[module] = std
            return None
        scale = target_std / std
        sweep_scale[module] = scale
        final_std[module] = target_std
        converged_all[0] = False
        iterations[module] += 1
        gains[module] *= scale
        return output * scale  # the layers after this one see calibrated inputs in this pass

    # The pre-initialization is drawn once; each sweep calibrates every layer in one forward
    # pass, then sets each weight to (pre-init x total gain) with the single multiplication the
    # plan's initializer performs. A sweep that finds every layer within tolerance changes
    # nothing and ends the loop, so the values it verified are exactly what the plan writes.
    base.apply(work, seed=seed)
    originals = {
        m: {k: v.detach().clone() for k, v in m._parameters.items() if v is not None}
        for m in layers
    }
    converged_all = [False]
    handles = [m.register_forward_hook(hook) for m in layers]
    try:
        with torch.random.fork_rng(devices=[]), torch.no_grad():
            for _ in range(max_iter):
                sweep_scale.clear()
                converged_all[0] = True
                work(*args)
                for m in layers:
                    for k, v in originals[m].items():
                        m._parameters[k].copy_(v * gains[m] if gains[m] != 1.0 else v)
                if converged_all[0]:
                    break
    finally:
        for h in handles:
            h.remove()
    plan = _with_gains(base, gains, names)
    plan.options.update(seed=seed, target_std=target_std, tol=tol, max_iter=max_iter)
    written = {r.name for r in plan.rows if r.init != SKIP}
    plan.computed = {  # exactly what apply(seed=seed) would draw: no need to draw it again
        name: p.detach()
        for name, p in work.named_parameters(remove_duplicate=False)
        if name in written
    }
    records = [
        Calibration(names[m], iterations[m], gains[m], final_std.get(m, 0.0)) for m in layers
    ]
    return plan, records


def _unit_gains(base: Plan) -> Plan:
    """The pre-initialization with gain 1: LSUV sets every scale itself, and a single gain
    multiplication in the final plan keeps its values bit-identical to the calibrated ones."""
    rows = []
    for row in base.rows:
        row = copy.copy(row)
        if row.init == "orthogonal" and "gain" in row.args:
            row.args = {k: v for k, v in row.args.items() if k != "gain"}
            row.std = None if row.std is None or row.fan_in is None else row.std
            row.reason = "orthonormal pre-initialization (LSUV)"
        rows.append(row)
    return Plan(base.scheme, rows, dict(base.options), base.graph)


def _prefix(name: str) -> str:
    return f"{name}." if name else ""


def _with_gains(base: Plan, gains: dict[nn.Module, float], names: dict) -> Plan:
    """``base`` with the weight and bias rows of each calibrated layer scaled by its gain."""
    plan = Plan("lsuv", [copy.copy(r) for r in base.rows], dict(base.options), base.graph)
    by_name = {r.name: r for r in plan.rows}
    for module, g in gains.items():
        for leaf in ("weight", "bias"):
            row = by_name.get(_prefix(names[module]) + leaf)
            if row is None or row.init == SKIP or g == 1.0:
                continue
            row.args = _scaled_args(row.init, dict(row.args), g)
            row.std = None if row.std is None else row.std * g
            row.reason = f"{row.reason}; LSUV gain {g:.4g}"
    return plan


def _scaled_args(init: str, args: dict, g: float) -> dict:
    """Arguments that draw the same values times ``g`` (same random draws)."""
    if init in ("orthogonal", "delta_orthogonal", "identity", "looks_linear", "unitary"):
        args["gain"] = args.get("gain", 1.0) * g
    elif init == "variance_scaling":
        args["scale"] = args.get("scale", 1.0) * g * g
    elif init in ("normal", "trunc_normal"):
        args["std"] = args.get("std", 1.0) * g
    elif init == "uniform":
        args["a"], args["b"] = args.get("a", 0.0) * g, args.get("b", 1.0) * g
    elif init == "constant":
        args["val"] = args["val"] * g
    elif init != "zeros":
        raise ValueError(f"lsuv: cannot rescale rows initialized with {init!r}")
    return args
