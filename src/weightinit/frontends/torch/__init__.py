"""The torch front end: reading a ``torch.nn`` model (module knowledge, traces, from
:mod:`weightinit.understanding`), settling its parameters, and the services schemes call:
the signal carried through an execution trace, a Gaussian stand-in for its input, LSUV
calibration on data."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch
from torch import nn

from weightinit.frontends.torch.calibration import lsuv_plan
from weightinit.frontends.torch.propagation import (
    STABILIZING_SAMPLES,
    batch_first,
    gaussian_like,
    propagate,
)
from weightinit.frontends.torch.settle import (
    Loaded,
    RuleKey,
    RuleValue,
    Settled,
    check_rules,
    norm_scale,
    row,
    settle,
)
from weightinit.plans.plan import SKIP, Plan, Row, is_sharded
from weightinit.scheme.auto import Analysis
from weightinit.scheme.protocol import Choice, Param, Survey
from weightinit.understanding.graph import (
    Graph,
    ModelError,
    followers,
    map_tensors,
    shapes,
    trace,
)
from weightinit.understanding.knowledge import unwrap

__all__ = ["TorchFrontend"]


class TorchFrontend:
    """The :class:`~weightinit.scheme.protocol.Frontend` of ``torch.nn`` models."""

    name = "torch"

    # --- what the planner asks -------------------------------------------------------------

    def unwrap(self, model: nn.Module) -> nn.Module:
        """The user's module inside DataParallel, DDP and torch.compile wrappers."""
        return unwrap(model)

    def check_rules(self, rules: Mapping[RuleKey, RuleValue] | None) -> dict:
        return check_rules(rules)

    def trace(self, model: nn.Module, example_input: Any, data: Any) -> Graph:
        """The model's graph: on ``example_input``; else torch.fx, falling back to a forward
        pass when fx cannot trace the model (Python control flow): on ``data``, or, with
        neither, on the model's own ``dummy_inputs`` (Hugging Face models carry them; a dict
        is keyword arguments), which ``Graph.traced_on`` then records for the plan's notes. A
        batch the model fails on is a ValueError naming the layer that failed and its input's
        shape."""
        given, batch = "example_input", example_input
        try:
            if example_input is not None:
                return trace(model, example_input)
            try:
                return trace(model)
            except ValueError as err:  # fx cannot trace it
                if data is not None:
                    given, batch = "data", data
                    return trace(model, data)
                given, batch = "dummy_inputs", _dummy_inputs(model, err)
                if batch is None:
                    raise
                graph = trace(model, batch)
                graph.traced_on = f"the model's dummy_inputs ({_described(batch)})"
                return graph
        except ModelError as err:
            meta = any(p.is_meta for p in model.parameters())
            fix = (
                "pass example_input= a batch the model accepts"
                if given == "dummy_inputs"
                else f"pass {given}= a batch the model accepts"
            )
            raise ValueError(
                f"plan: the model failed on `{given}` of {shapes(batch)}: {err}; {fix}"
                + (
                    " (on the meta device tensors have shapes but no values: a forward pass "
                    "that reads them, e.g. `if mask.all():`, needs the model materialized "
                    "first, model.to_empty(device='cpu'))"
                    if meta
                    else ""
                )
            ) from err

    def settle(
        self,
        model: nn.Module,
        graph: Graph | None,
        *,
        rules: Mapping[RuleKey, RuleValue],
        skip: Iterable[str],
        include_frozen: bool,
        own_fans: bool,
        loaded: Loaded | None = None,
    ) -> Settled:
        """The shared settle stage over the model's parameters (see :func:`settle`)."""
        table = followers(graph) if graph is not None else {}
        return settle(
            model, rules=rules, skip=skip, include_frozen=include_frozen, followers=table,
            own_fans=own_fans, loaded=loaded,
        )  # fmt: skip

    def rows(self, settled: Settled, choose: Callable[[Param], Choice]) -> list[Row]:
        """Every row: the settled ones, and a row of ``choose(param)`` for the rest."""
        rows = list(settled.rows)
        for pending in settled.pending:
            p, layout = pending.param, pending.layout
            choice = choose(p)
            if p.info.direction_dim is not None:
                choice = _direction(choice, p.info.direction_dim)
            if p.info.norm_of is not None:
                choice, layout = norm_scale(choice, p.info, pending.tensor, layout)
            made = row(p.name, pending.module, p.role, choice, pending.tensor, layout, p.info)
            rows[pending.index] = made
        return rows

    def on_meta_device(self, plan: Plan, model: nn.Module) -> list[str]:
        """The parameters the plan writes that have no storage yet."""
        params = dict(model.named_parameters(remove_duplicate=False))
        return [
            r.name
            for r in plan.rows
            if r.init != SKIP and r.name in params and params[r.name].is_meta
        ]

    def meta_buffers(self, model: nn.Module) -> list[str]:
        """The buffers on the meta device: ``to_empty`` will leave them uninitialized."""
        return [n for n, b in model.named_buffers(remove_duplicate=False) if b.is_meta]

    def sharded(self, model: nn.Module) -> list[str]:
        """The parameters held as DTensors (FSDP2, tensor parallel): their shards are on other
        ranks."""
        return [n for n, p in model.named_parameters() if is_sharded(p)]

    # --- what schemes ask ------------------------------------------------------------------

    def propagate(self, s: Survey) -> Analysis:
        """The signal's (mean, variance) through the execution trace, and auto's choices."""
        return propagate(s.model, s.graph, s.example_input, s.extra, s.options, s.settled.get)

    def stand_in(self, s: Survey) -> Any:
        """A Gaussian batch with the example input's shape and statistics, tiled to
        ``STABILIZING_SAMPLES`` samples when the leading axis is surely the batch."""
        samples = STABILIZING_SAMPLES if batch_first(s.model) else None
        return gaussian_like(s.example_input, s.extra, samples)

    def calibrate(self, model: nn.Module, plan: Plan, data: Any, *, seed: int, **settings) -> Plan:
        """LSUV sweeps on ``data``; see :func:`.calibration.lsuv_plan`. They run the model,
        so a model on the meta device is an error that says what to do instead."""
        meta = self.on_meta_device(plan, model)
        if meta:
            raise ValueError(
                f"{plan.scheme}: calibrating runs the model, but {meta[0]!r} is on the meta "
                "device and has no storage. Either plan without data= now (the analytic plan, "
                "awaiting calibration) and, once the model is materialized "
                "(model.to_empty(device='cpu'), buffers restored), complete it with "
                "weightinit.calibrate(plan, model, data=batch) before plan.apply(model); or "
                "materialize the model first and plan with data="
            )
        return lsuv_plan(model, plan, data, seed=seed, **settings)[0]


#: structured initializers that leave whole kernel taps zero (all but the centre)
_ZERO_SLICES = {"delta_orthogonal", "identity", "zer0"}


def _direction(choice: Choice, dim: int) -> Choice:
    """The choice for weight_norm's v, normalized per slice along ``dim`` (w = g v / |v|):
    v is a direction, and a zero slice of v divides 0 by 0. A zero weight is g = 0 (its row
    follows the same choice) with v orthogonal; a structured choice that leaves taps zero
    (delta-orthogonal) under a per-tap norm becomes orthogonal of the same gain, which has the
    same norm per output and no zero slice."""
    if choice.init == "zeros":
        why = f"{choice.reason}: through weight_norm's g = 0; v, the direction, orthogonal"
        return Choice("orthogonal", {}, why)
    if choice.init in _ZERO_SLICES and dim not in (0, -1):
        gain = choice.args.get("gain", 1.0)
        why = (
            f"{choice.reason}; weight_norm normalizes each slice along dim {dim} and "
            f"{choice.init} leaves slices zero (0 / 0): orthogonal, gain {gain:.4g}, instead"
        )
        return Choice("orthogonal", {"gain": gain}, why)
    return choice


def _dummy_inputs(model: nn.Module, err: ValueError) -> Any:
    """The model's own ``dummy_inputs`` (a tensor, a tuple of positional arguments or a dict
    of keyword arguments), on the device of its parameters; None when it has none."""
    dummy = getattr(model, "dummy_inputs", None)
    if dummy is None:
        return None
    if isinstance(dummy, Mapping):
        bad = next((k for k in dummy if not isinstance(k, str)), None)
        if not dummy or bad is not None:
            what = "an empty mapping" if not dummy else f"a mapping keyed by {bad!r}"
            raise TypeError(
                f"plan: {err}; the model's `dummy_inputs` is {what}, not one of keyword "
                "argument names, so it cannot stand in"
            ) from err
        dummy = dict(dummy)
    elif not isinstance(dummy, (torch.Tensor, tuple)):
        raise TypeError(
            f"plan: {err}; the model's `dummy_inputs` is a {type(dummy).__name__}, not a "
            "tensor, a tuple of positional arguments or a dict of keyword arguments, so it "
            "cannot stand in"
        ) from err
    device = next((p.device for p in model.parameters() if not p.is_meta), None)
    if device is not None:
        dummy = map_tensors(dummy, lambda t: t.to(device))
    return dummy


def _described(dummy: Any) -> str:
    """``input_ids: shape (3, 5)``, or the shapes of positional inputs."""
    if isinstance(dummy, dict):
        return ", ".join(f"{k}: {shapes(v)}" for k, v in dummy.items())
    return shapes(dummy)
