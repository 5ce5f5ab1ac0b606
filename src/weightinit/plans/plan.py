"""Plans: what will be written to every parameter, and why. Data first, applied atomically.

A :class:`Plan` has one :class:`Row` per parameter: its name, module type, role, fans, the
catalog initializer and its arguments, the resulting std or bound, and the reason. It prints as
a table, round-trips through JSON, and :meth:`Plan.apply` is the only thing in the library that
writes a model's parameters: it computes every new value first and commits only when all
succeeded.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from weightinit._table import format_table
from weightinit.initializers.catalog import get
from weightinit.initializers.fills import Draw, capture
from weightinit.initializers.layout import Layout, geometry
from weightinit.understanding.knowledge import unwrap

__all__ = ["Plan", "Row", "rescale_"]

SKIP = "skip"


@dataclass
class Row:
    """One parameter of the plan. ``init == "skip"`` leaves it untouched (see ``reason``)."""

    name: str
    module: str
    role: str
    init: str
    args: dict[str, Any] = field(default_factory=dict)
    reason: str = ""
    fan_in: int | None = None
    fan_out: int | None = None
    std: float | None = None
    bound: float | None = None
    layout: Layout | None = None
    zero_rows: list[int] = field(default_factory=list)  # rows kept at 0 (Embedding padding_idx)
    # set by calibrating schemes (LSUV): the drawn values are multiplied by ``scale`` and then
    # ``shift`` is added, each a number or a list of one value per output unit (per channel)
    scale: float | list[float] | None = None
    shift: float | list[float] | None = None

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["layout"] = None if self.layout is None else dataclasses.asdict(self.layout)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Row:
        d = dict(d)
        if d.get("layout") is not None:
            d["layout"] = Layout(**d["layout"])
        return cls(**d)


@dataclass
class Plan:
    """The initialization of a whole model, one :class:`Row` per parameter."""

    scheme: str
    rows: list[Row]
    options: dict[str, Any] = field(default_factory=dict)
    graph: str = ""  # how activations were found: "fx", "execution" or "" (not needed)
    calibration: list[dict[str, Any]] = field(default_factory=list)  # data-dependent schemes
    # "auto": the predicted output (mean, std) of every weighted layer, in execution order
    predictions: list[dict[str, Any]] = field(default_factory=list)
    # what an architecture recipe established about the model (residual branches, depth, the
    # critical point, ...), by name
    notes: dict[str, Any] = field(default_factory=dict)
    # a scheme that calibrates on data got none: apply refuses the plan until
    # weightinit.calibrate has run (written to JSON only when True)
    pending_calibration: bool = False
    # values a data-dependent scheme already computed (with the plan's seed) while calibrating;
    # apply commits them instead of drawing them again. Not serialized: from_json redraws.
    computed: dict[str, torch.Tensor] | None = field(default=None, repr=False, compare=False)

    def __iter__(self):
        return iter(self.rows)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, name: str) -> Row:
        for row in self.rows:
            if row.name == name:
                return row
        raise KeyError(f"the plan has no parameter {name!r}")

    def __str__(self) -> str:
        table = format_table(
            ("parameter", "module", "role", "fans", "init", "args", "std", "reason"),
            [
                (
                    r.name,
                    r.module,
                    r.role,
                    "-" if r.fan_in is None else f"{r.fan_in}/{r.fan_out}",
                    r.init,
                    _args_text(r.args),
                    "-" if r.std is None else f"{r.std:.4g}",
                    r.reason,
                )
                for r in self.rows
            ],
            max_widths=(None, None, None, None, None, 28, None, 60),
        )
        written = sum(r.init != SKIP for r in self.rows)
        how = f", activations from the {self.graph} trace" if self.graph else ""
        notes = "".join(f"\n  {key}: {_note_text(value)}" for key, value in self.notes.items())
        pending = (
            "\n  awaiting calibration on data: weightinit.calibrate(plan, model, data=batch)"
            if self.pending_calibration
            else ""
        )
        return (
            f"Plan: scheme {self.scheme!r}{how}; {written} of {len(self.rows)} "
            f"parameters initialized{pending}{notes}\n{table}"
        )

    def to_json(self, **dump_kwargs: Any) -> str:
        """The plan as JSON; :meth:`from_json` reads it back."""
        data = {
            "scheme": self.scheme,
            "options": self.options,
            "graph": self.graph,
            "calibration": self.calibration,
            "predictions": self.predictions,
            "notes": self.notes,
            "rows": [r.to_dict() for r in self.rows],
        }
        if self.pending_calibration:
            data["pending_calibration"] = True
        # options a user gave as objects (module types in a role map) are written as text
        return json.dumps(data, **{"indent": 2, "default": str, **dump_kwargs})

    @classmethod
    def from_json(cls, text: str) -> Plan:
        data = json.loads(text)
        rows = [Row.from_dict(r) for r in data["rows"]]
        return cls(
            data["scheme"],
            rows,
            data.get("options", {}),
            data.get("graph", ""),
            data.get("calibration", []),
            data.get("predictions", []),
            data.get("notes", {}),
            bool(data.get("pending_calibration", False)),
        )

    def _commit_computed(self, model: nn.Module) -> Plan:
        params = dict(_named_parameters(unwrap(model)))
        names = [r.name for r in self.rows if r.init != SKIP]
        for name in names:
            param, value = params.get(name), self.computed.get(name)
            if param is None or value is None or param.shape != value.shape:
                raise ValueError(
                    f"apply: the model does not match this plan at {name!r}; was it made for "
                    "another model?"
                )
        with torch.no_grad():
            targets = [params[n] for n in names]
            values = [self.computed[n].to(params[n].device, params[n].dtype) for n in names]
            torch._foreach_copy_(targets, values)  # every value exists: atomic either way
        return self

    def apply(
        self,
        model: nn.Module,
        seed: int | None = None,
        generator: torch.Generator | None = None,
        *,
        atomic: bool = True,
    ) -> Plan:
        """Write the plan into ``model``.

        ``seed`` draws from a private generator, so the same seed gives the same values and the
        global RNG is left alone; ``generator`` uses yours; with neither, torch's default
        generator is used (as torch.nn.init does).

        Every row is first validated against its parameter (on a meta tensor: no memory). With
        ``atomic=True`` (the default) every new value is then computed into fresh memory and
        committed only when all exist, so any error leaves every parameter as it was. That
        needs as much free memory as the parameters and, on large models, about twice the time
        of the fills themselves (fresh memory costs page faults). ``atomic=False`` writes in
        place instead, at the speed of raw fills: the same values for the same seed, and bad
        rows still fail before anything is written, but an error in the middle of writing (out
        of memory, an interrupt) can leave earlier parameters written.
        """
        if seed is not None and generator is not None:
            raise ValueError("apply: pass `seed` or `generator`, not both")
        if self.pending_calibration:
            raise ValueError(
                f"apply: this {self.scheme!r} plan awaits calibration on data: pass data=batch "
                "to plan/init, or run weightinit.calibrate(plan, model, data=batch) first"
            )
        planned = self.options.get("seed")
        if self.calibration and (generator is not None or seed not in (None, planned)):
            raise ValueError(
                f"apply: this {self.scheme!r} plan was calibrated on values drawn with seed "
                f"{planned}; apply it with that seed (the default) to write what was calibrated"
            )
        if seed is None and generator is None:
            seed = planned
        if self.computed is not None and generator is None and seed == planned:
            return self._commit_computed(model)
        model = unwrap(model)
        params = dict(_named_parameters(model))
        todo = [r for r in self.rows if r.init != SKIP]
        for row in todo:
            param = params.get(row.name)
            if param is None:
                raise ValueError(
                    f"apply: the model has no parameter {row.name!r}; was this plan made for "
                    "another model?"
                )
            if param.is_meta:
                raise ValueError(
                    f"apply: {row.name!r} is on the meta device and has no storage; materialize "
                    "the model first, e.g. model.to_empty(device='cpu'), then apply the plan"
                )
        generators: dict[torch.device, torch.Generator | None] = {}

        def generator_for(device: torch.device) -> torch.Generator | None:
            if device not in generators:
                generators[device] = (
                    generator
                    if generator is not None or seed is None
                    else torch.Generator(device).manual_seed(seed)
                )
            return generators[device]

        draws: dict[tuple, Draw | None] = {}

        def validated(row: Row, param: torch.Tensor) -> Draw | None:
            """Check the row on a meta tensor once per distinct row; its Draw, if it has one."""
            try:
                key = (row.init, tuple(row.args.items()), row.layout, param.shape, param.dtype)
                hash(key)
            except TypeError:  # list-valued arguments
                key = (row.init, repr(row.args), row.layout, param.shape, param.dtype)
            if key not in draws:
                try:
                    draws[key] = capture(
                        get(row.init), param.shape, param.dtype, row.args, row.layout
                    )
                except Exception as err:
                    raise _with_context(err, f"apply: {row.name!r}: {err}") from err
            return draws[key]

        for row in todo:  # per-unit scales and shifts must fit their parameters
            for values in (row.scale, row.shift):
                if isinstance(values, list):
                    try:
                        _unit_shape(values, params[row.name].shape, row.layout)
                    except ValueError as err:
                        raise ValueError(f"apply: {row.name!r}: {err}") from None
        # every row passes before the first value is computed (or, in place, written)
        checked = [(row, params[row.name], validated(row, params[row.name])) for row in todo]
        targets: list[torch.Tensor] = []
        values: list[torch.Tensor] = []
        with torch.no_grad():
            for row, param, draw in checked:
                gen = generator_for(param.device)
                if draw is not None and draw.kind != "structured":
                    value = torch.empty_like(param) if atomic else param
                    if value.numel():
                        draw.write(value, gen)  # elementwise: straight from the Draw
                else:  # structured ones need work space: compute, then write
                    value = get(row.init)(
                        torch.empty_like(param), **row.args, layout=row.layout, generator=gen
                    )
                    if not atomic:
                        value = param.copy_(value)
                rescale_(value, row.scale, row.shift, row.layout)
                for index in row.zero_rows:
                    value[index] = 0
                if atomic:
                    targets.append(param)
                    values.append(value)
            if targets:  # atomic: commit once every value exists
                torch._foreach_copy_(targets, values)
        return self


Units = float | list[float] | None


@torch.no_grad()
def rescale_(
    value: torch.Tensor, scale: Units, shift: Units, layout: Layout | None
) -> torch.Tensor:
    """``value * scale + shift`` in place, each a number, one number per output unit (a list,
    output units as ``layout`` says: per output channel of a conv, per group and channel of a
    grouped one) or None. :meth:`Plan.apply` writes every row through it, and calibration
    computes its values with it, so that a plan reproduces them bit for bit.

    Example:
        >>> import torch
        >>> from weightinit.plans.plan import rescale_
        >>> rescale_(torch.ones(2, 3), [1.0, 2.0], 0.5, None).tolist()  # rows are output units
        [[1.5, 1.5, 1.5], [2.5, 2.5, 2.5]]
    """
    for values, op in ((scale, value.mul_), (shift, value.add_)):
        if isinstance(values, list):
            unit_values = torch.tensor(values, dtype=value.dtype, device=value.device)
            g = geometry(value, _unit_layout(value.ndim, layout))
            units = unit_values.reshape(_unit_shape(values, value.shape, layout))
            op(g.from_blocks(units.expand(g.block_shape)))
        elif values is not None:
            op(values)
    return value


def _unit_layout(ndim: int, layout: Layout | None) -> Layout | None:
    return Layout.elementwise() if layout is None and ndim < 2 else layout


def _unit_shape(values: list, shape: torch.Size, layout: Layout | None) -> tuple[int, ...]:
    """The block-form shape that spreads one value per output unit over a parameter: values
    per output unit of every block (``blocks x n_out``, e.g. conv groups) or shared by all
    blocks (``n_out``, e.g. an embedding's rows)."""
    g = geometry(torch.empty(shape, device="meta"), _unit_layout(len(shape), layout))
    ones = (1,) * (1 + len(g.receptive))
    if len(values) == g.n_out:
        return (1, g.n_out, *ones)
    if len(values) == g.num_blocks * g.n_out:
        return (g.num_blocks, g.n_out, *ones)
    raise ValueError(
        f"{len(values)} per-unit values for a parameter of shape {tuple(shape)} with "
        f"{g.num_blocks * g.n_out} output units"
    )


def _named_parameters(model: nn.Module):
    """(qualified name, parameter) for every parameter, tied ones under each of their names."""
    for prefix, module in model.named_modules(remove_duplicate=False):
        for name, param in module._parameters.items():
            if param is not None:
                yield (f"{prefix}.{name}" if prefix else name), param


def _with_context(err: Exception, message: str) -> Exception:
    """``err`` with ``message``, as the same exception type where it takes a message."""
    try:
        new = type(err)(message)
    except Exception:  # an exception type with its own constructor
        new = RuntimeError(message)
    new.__cause__ = err
    return new


def _note_text(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, dict):
        return ", ".join(f"{k}={_note_text(v)}" for k, v in value.items())
    return str(value)


def _args_text(args: dict[str, Any]) -> str:
    def fmt(v: Any) -> str:
        return f"{v:.4g}" if isinstance(v, float) else str(v)

    return ", ".join(f"{k}={fmt(v)}" for k, v in args.items()) or "-"


def row_fans(param: torch.Tensor, layout: Layout | None) -> tuple[int | None, int | None]:
    """(fan_in, fan_out) under ``layout``, or Nones where fans do not apply."""
    if layout is None and param.ndim < 2:
        return None, None
    g = geometry(param, layout)
    return g.fan_in, g.fan_out
