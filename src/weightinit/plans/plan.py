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
import math
import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn
from torch._utils import _flatten_dense_tensors, _unflatten_dense_tensors

from weightinit._checks import check_seed, is_integer, is_number, refuse_keras
from weightinit._table import format_table
from weightinit.initializers import counter
from weightinit.initializers.catalog import get
from weightinit.initializers.counter import RNG_VERSION, philox_key
from weightinit.initializers.fills import Draw, capture
from weightinit.initializers.layout import Layout, geometry
from weightinit.understanding.knowledge import (
    canonical_name,
    owner_of,
    refresh_after_write,
    unwrap,
)

__all__ = ["Plan", "Row", "rescale_"]

SKIP = "skip"
# the generators a seed can draw from: torch's, and the keyed counter-based one (versioned)
RNGS = ("torch", RNG_VERSION)


def _optional(ok: Callable[[Any], bool]) -> Callable[[Any], bool]:
    return lambda v: v is None or ok(v)


def _sizes(v: Any) -> bool:
    return isinstance(v, (list, tuple)) and all(is_integer(i) and i >= 0 for i in v)


def _units(v: Any) -> bool:
    """A finite number, or a non-empty list of them (one per output unit)."""
    if isinstance(v, list):
        return bool(v) and all(is_number(x) and math.isfinite(x) for x in v)
    return is_number(v) and math.isfinite(v)


def _is_str(v: Any) -> bool:
    return isinstance(v, str)


def _is_count(v: Any) -> bool:
    return is_integer(v) and v >= 0


def _is_size(v: Any) -> bool:
    return is_number(v) and math.isfinite(v) and v >= 0


# every field of a Row: how to check it, and what it must be (for the error)
_ROW_FIELDS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "name": (_is_str, "a string"),
    "module": (_is_str, "a string"),
    "role": (_is_str, "a string"),
    "init": (_is_str, "an initializer's name"),
    "args": (
        lambda v: isinstance(v, dict) and all(isinstance(k, str) for k in v),
        "an object of keyword arguments (use {} for none)",
    ),
    "reason": (_is_str, "a string"),
    "fan_in": (_optional(_is_count), "an integer >= 0 or null"),
    "fan_out": (_optional(_is_count), "an integer >= 0 or null"),
    "std": (_optional(_is_size), "a finite number >= 0 or null"),
    "bound": (_optional(_is_size), "a finite number >= 0 or null"),
    "layout": (_optional(lambda v: isinstance(v, Layout)), "a Layout or null"),
    "zero_rows": (
        lambda v: isinstance(v, list) and all(is_integer(i) for i in v),
        "a list of row indices",
    ),
    "scale": (_optional(_units), "a finite number, a list of them (one per output unit) or null"),
    "shift": (_optional(_units), "a finite number, a list of them (one per output unit) or null"),
    "shape": (_optional(_sizes), "a list of sizes or null"),
    "dtype": (_optional(_is_str), "a dtype's name such as 'float32', or null"),
}
_REQUIRED = ("name", "module", "role", "init")

# the keys of a plan's JSON, and what each must be
_PLAN_KEYS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "scheme": (_is_str, "a scheme's name"),
    "options": (lambda v: isinstance(v, dict), "an object"),
    "graph": (_is_str, "a string"),
    "calibration": (lambda v: isinstance(v, list), "a list"),
    "predictions": (lambda v: isinstance(v, list), "a list"),
    "notes": (lambda v: isinstance(v, dict), "an object"),
    "pending_calibration": (lambda v: isinstance(v, bool), "true or false"),
    "buffers": (
        lambda v: isinstance(v, dict) and all(map(_units, v.values())),
        "an object of buffer names, each to a finite number or a list of them",
    ),
    "rng": (lambda v: v in RNGS, f"one of {', '.join(map(repr, RNGS))}"),
    "rows": (lambda v: isinstance(v, list), "a list of rows"),
}


def _json_value(value: Any) -> Any:
    """What JSON cannot write: numpy and 0-d torch scalars (``std=np.float32(0.1)`` in a rule)
    as the numbers they are; other objects a user gave as options (module types in a role
    map) as text."""
    if isinstance(value, np.generic) or (isinstance(value, torch.Tensor) and value.ndim == 0):
        return value.item()
    return str(value)


def _kind(value: Any) -> str:
    """What a value is, in JSON's words."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if is_number(value):
        return "a number"
    return {str: "a string", dict: "an object", list: "a list"}.get(
        type(value), type(value).__name__
    )


def _shown(value: Any) -> str:
    text = repr(value)
    return _kind(value) + ("" if value is None else f" ({text[:60]}{'...' * (len(text) > 60)})")


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
    # the parameter the row was planned for: apply refuses a parameter of another shape or
    # dtype (None on skip rows and in plans written before they were recorded)
    shape: list[int] | None = None
    dtype: str | None = None

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["layout"] = None if self.layout is None else dataclasses.asdict(self.layout)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Row:
        """The row ``d`` describes (as :meth:`to_dict` writes it); ValueError naming the field
        that is missing, unknown or of the wrong type."""
        if not isinstance(d, dict):
            raise ValueError(f"a row must be an object, got {_kind(d)}")  # noqa: TRY004 (a schema error)
        unknown = sorted(set(d) - _ROW_FIELDS.keys())
        if unknown:
            raise ValueError(f"unknown field {unknown[0]!r} (fields: {', '.join(_ROW_FIELDS)})")
        missing = [f for f in _REQUIRED if f not in d]
        if missing:
            raise ValueError(f"missing field {missing[0]!r}")
        d = dict(d)
        if d.get("layout") is not None:
            if not isinstance(d["layout"], dict):
                raise ValueError(
                    f"field 'layout' must be an object or null, got {_kind(d['layout'])}"
                )
            try:
                d["layout"] = Layout(**d["layout"])
            except (TypeError, ValueError) as err:
                raise ValueError(f"field 'layout': {err}") from None
        row = cls(**d)
        row.check()
        return row

    def check(self) -> None:
        """Raise ValueError naming the first field whose value has the wrong type or is not
        finite; :meth:`Plan.apply` checks every row this way before it writes anything."""
        for name, (ok, wanted) in _ROW_FIELDS.items():
            value = getattr(self, name)
            if not ok(value):
                raise ValueError(f"field {name!r} must be {wanted}, got {_shown(value)}")
        if self.dtype is not None and not isinstance(getattr(torch, self.dtype, None), torch.dtype):
            raise ValueError(f"field 'dtype' must name a torch dtype, got {self.dtype!r}")


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
    # buffers a calibrating scheme measured, by qualified name, each a number or the list of
    # its values: the running statistics of norm layers, re-estimated on the calibration data
    # (see weightinit.frontends.torch.calibration); apply writes them with the parameters
    # (written to JSON only when there are some)
    buffers: dict[str, float | int | list[float]] = field(default_factory=dict)
    # the generator apply draws from with a seed (see Plan.apply): "philox-v1", the keyed
    # counter-based one; "torch" for the "torch" scheme and for plans written before this was
    # recorded (their JSON has no "rng": they drew from torch's generators)
    rng: str = RNG_VERSION
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
        if self.buffers:
            notes += (
                f"\n  buffers: {len(self.buffers)} written with the parameters (norm layers' "
                "running statistics, measured on the calibration data)"
            )
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
            "rng": self.rng,
            "rows": [r.to_dict() for r in self.rows],
        }
        if self.pending_calibration:
            data["pending_calibration"] = True
        if self.buffers:
            data["buffers"] = self.buffers
        return json.dumps(data, **{"indent": 2, "default": _json_value, **dump_kwargs})

    @classmethod
    def from_json(cls, text: str | bytes) -> Plan:
        """The plan :meth:`to_json` wrote. The text is checked against the plan's schema
        first: a ValueError names the key, or the row and field, that is missing, unknown or
        of the wrong type.

        Example:
            >>> import torch, weightinit as wi
            >>> p = wi.plan(torch.nn.Linear(4, 2), "he")
            >>> wi.Plan.from_json(p.to_json()) == p
            True
            >>> wi.Plan.from_json('{"scheme": "he", "rows": [{"name": "weight"}]}')
            Traceback (most recent call last):
            ...
            ValueError: Plan.from_json: row 0 ('weight'): missing field 'module'
        """
        try:
            data = json.loads(text)
        except (TypeError, ValueError) as err:
            raise ValueError(f"Plan.from_json: not a plan's JSON text: {err}") from None
        if not isinstance(data, dict):
            raise ValueError(  # noqa: TRY004 (a schema error, as for every other key)
                f"Plan.from_json: the plan must be a JSON object, got {_kind(data)}"
            )
        for key, (ok, wanted) in _PLAN_KEYS.items():
            if key in data and not ok(data[key]):
                raise ValueError(
                    f"Plan.from_json: key {key!r} must be {wanted}, got {_shown(data[key])}"
                )
        missing = [k for k in ("scheme", "rows") if k not in data]
        unknown = sorted(set(data) - _PLAN_KEYS.keys())
        if missing or unknown:
            what = f"missing key {missing[0]!r}" if missing else f"unknown key {unknown[0]!r}"
            raise ValueError(f"Plan.from_json: {what} (keys: {', '.join(_PLAN_KEYS)})")
        rows = []
        for i, r in enumerate(data["rows"]):
            try:
                rows.append(Row.from_dict(r))
            except ValueError as err:
                name = f" ({r['name']!r})" if isinstance(r, dict) and "name" in r else ""
                raise ValueError(f"Plan.from_json: row {i}{name}: {err}") from None
        return cls(
            data["scheme"],
            rows,
            data.get("options", {}),
            data.get("graph", ""),
            data.get("calibration", []),
            data.get("predictions", []),
            data.get("notes", {}),
            data.get("pending_calibration", False),
            data.get("buffers", {}),
            data.get("rng", "torch"),  # written before rng was recorded: torch's generators
        )

    def apply(
        self,
        model: nn.Module,
        seed: int | None = None,
        generator: torch.Generator | None = None,
        *,
        atomic: bool = True,
    ) -> Plan:
        """Write the plan into ``model``.

        Where the values come from, one rule everywhere:

        - ``seed`` (or the seed the plan was made with) draws from the keyed counter-based
          generator ``"philox-v1"`` (:mod:`weightinit.initializers.counter`; Philox4x32-10,
          Salmon et al. 2011): each value is a pure function of (seed, the parameter's
          canonical name, the element's index in the full tensor). The weights therefore do
          not depend on the order the modules were registered in, nor on how the model is
          sharded: a rank holding a shard (FSDP2, tensor parallel) generates only its own
          elements, with no communication, and gets the values one process would. Structured
          initializers (orthogonal, sparse, identity, ...) draw the whole tensor from a torch
          generator seeded by the same key. The global RNG is left alone.
        - ``generator`` uses yours, and with neither seed nor generator torch's default
          generator is used (as torch.nn.init does), row after row.
        - The plan's :attr:`rng` names the keyed generator: ``"philox-v1"`` for plans made
          now, unless ``wi.plan(..., rng="torch")`` asked for torch's generator seeded once
          and drawn row after row (what ``seed=`` meant before "philox-v1"). The "torch"
          scheme always records "torch" (it reproduces ``reset_parameters`` draw for draw),
          and so do plans read from JSON written before the plan recorded its generator.

        Before anything is written, every row is checked: each field's type and finiteness
        (a NaN scale, a zero row out of range, a per-unit list of the wrong length), that the
        model has the parameter with the shape and dtype the row was planned for, that it can
        be written (not on the meta device, not an inference tensor), and the initializer's
        arguments on a meta tensor (no memory). A ValueError names the parameter.

        With ``atomic=True`` (the default) every new value is then computed into fresh memory
        and committed only when all exist, all or nothing: each parameter's old contents are
        saved before it is written (small ones together in one flat tensor, a large one in
        the memory of the value written before it, or in one scratch buffer), so that if
        writing any parameter fails, every parameter written before it is restored. The model is exactly as it was after any error. That
        needs as much free memory as the parameters and, on large models, about twice the time
        of the fills themselves. ``atomic=False`` writes in place instead, at the speed of raw
        fills: the same values for the same seed, and bad rows still fail before anything is
        written, but an error in the middle of writing (out of memory, an interrupt) can leave
        earlier parameters written.

        A calibrated plan commits the values it computed while calibrating (once: they are
        the same values its seed draws, which later applies draw again). The plan's
        ``buffers`` (norm layers' running statistics measured while calibrating) are checked
        with the rows (the model has each buffer, of that size) and written with the
        parameters, in the same commit.
        """
        refuse_keras(model, "apply")
        if seed is not None and generator is not None:
            raise ValueError("apply: pass `seed` or `generator`, not both")
        seed = check_seed(seed, "apply")
        if generator is not None and not isinstance(generator, torch.Generator):
            raise TypeError(
                f"apply: `generator` must be a torch.Generator, got {type(generator).__name__}; "
                "pass seed= for a private one"
            )
        check_rng(self.rng, self.scheme, None, "apply")
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
        model = unwrap(model)
        resharded(model)
        params = dict(_named_parameters(model))
        todo = [r for r in self.rows if r.init != SKIP]
        for row in todo:
            _check_target(row, params.get(row.name))
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

        # every row passes before the first value is computed (or, in place, written)
        checked = [(row, params[row.name], validated(row, params[row.name])) for row in todo]
        names, targets = [row.name for row in todo], [param for _, param, _ in checked]
        buffers = _buffer_values(self.buffers, model)  # (names, targets, values), checked
        computed, self.computed = self.computed, None  # used once, and exchanged below
        if (
            computed is not None
            and generator is None
            and seed == planned
            and all(n in computed and computed[n].shape == t.shape for n, t in zip(names, targets))
        ):
            values = [computed[n].to(t.device, t.dtype) for n, t in zip(names, targets)]
            _commit(names + buffers[0], targets + buffers[1], values + buffers[2])
            self._written(model, names)
            return self
        generators: dict[torch.device, torch.Generator | None] = {}

        def generator_for(device: torch.device) -> torch.Generator | None:
            if device not in generators:
                generators[device] = (
                    generator
                    if generator is not None or seed is None
                    else torch.Generator(device).manual_seed(seed)
                )
            return generators[device]

        values: list[torch.Tensor] = []
        keyed = _keys(self.rows, seed) if self.rng != "torch" and seed is not None else {}
        with torch.no_grad():
            for row, param, draw in checked:
                gen = generator_for(param.device)
                if keyed:
                    value = _keyed(row, draw, param, keyed[row.name])
                    if not atomic:
                        _local(param).copy_(value)
                elif is_sharded(param):  # the whole tensor, drawn as in one process; the shard kept
                    whole = torch.empty(param.shape, dtype=param.dtype, device=_local(param).device)
                    value = _drawn(row, draw, whole, gen)
                    value = _shard(value, param)
                    if not atomic:
                        _local(param).copy_(value)
                else:
                    elementwise = draw is not None and draw.kind != "structured"
                    into = param if elementwise and not atomic else torch.empty_like(param)
                    value = _drawn(row, draw, into, gen)
                    if not atomic and value is not param:
                        param.copy_(value)
                if atomic:
                    values.append(value)
        if atomic:  # commit once every value exists
            _commit(names + buffers[0], targets + buffers[1], values + buffers[2])
        else:
            _commit(*buffers)
        self._written(model, names)
        return self

    def restore(self, model: nn.Module, *, fn: str = "restore", stacklevel: int = 2) -> None:
        """Set again what ``to_empty`` undid on a model planned on the meta device, as the plan
        saw it: the ties (:func:`_retie`: each name its own tensor again otherwise) and the
        buffers (:func:`_rebuilt_buffers`: norm layers' running statistics reset, a Hugging
        Face model's rotary frequencies and position ids rebuilt), with a warning naming what
        was tied again and any buffer weightinit cannot compute. :meth:`apply` does it after
        writing, and :func:`weightinit.calibrate` before running the model (a tied output head
        is calibrated where the model uses it). Nothing happens to a model planned with
        storage."""
        left = _rebuilt_buffers(model, self.notes.get("meta_buffers", []), self.buffers)
        if left:
            warnings.warn(
                f"{fn}: the model was planned on the meta device and to_empty left these "
                f"buffers uninitialized, which weightinit cannot compute: {', '.join(left[:5])}"
                f"{', ...' if len(left) > 5 else ''}; set them before use",
                stacklevel=stacklevel,
            )
        retied = _retie(model, self.rows, dict(_named_parameters(model)))
        if retied:
            warnings.warn(
                f"{fn}: {', '.join(retied)} tied again to what the plan saw them tied to (they "
                "had their own tensors, as to_empty leaves them)",
                stacklevel=stacklevel,
            )

    def _written(self, model: nn.Module, names: list[str]) -> None:
        """After the commit: spectral_norm's power iterations on what was written, what
        ``to_empty`` undid restored (:meth:`restore`), and a warning naming any parameter no
        row covers (it keeps what it holds: after ``to_empty``, whatever memory held)."""
        refresh_after_write(model, names)
        self.restore(model, fn="apply", stacklevel=4)
        covered = {r.name for r in self.rows}
        uncovered = [n for n, _ in _named_parameters(model) if n not in covered]
        if uncovered:
            warnings.warn(
                f"apply: {len(uncovered)} parameter(s) of the model have no row in this plan and "
                f"keep what they hold (after to_empty: whatever memory held): "
                f"{', '.join(uncovered[:5])}{', ...' if len(uncovered) > 5 else ''}; plan the "
                "model as it is now",
                stacklevel=3,
            )


def _drawn(
    row: Row, draw: Draw | None, into: torch.Tensor, generator: torch.Generator | None
) -> torch.Tensor:
    """The row's values, drawn into ``into``, then rescaled and the zero rows zeroed.
    Elementwise rows fill straight from their Draw; structured ones (orthogonal, sparse,
    identity, ...) compute into it as work space."""
    if draw is not None and draw.kind != "structured":
        if into.numel():
            draw.write(into, generator)
        value = into
    else:
        value = get(row.init)(into, **row.args, layout=row.layout, generator=generator)
    return _finished(row, value)


def check_rng(rng: object, scheme: str, pinned: str | None, fn: str) -> None:
    """``rng`` checked: one of :data:`RNGS`, and ``pinned`` when the scheme pins its
    generator (``Scheme.rng``: the "torch" scheme reproduces torch's own draws)."""
    if rng not in RNGS:
        raise ValueError(f"{fn}: `rng` must be one of {', '.join(map(repr, RNGS))}, got {rng!r}")
    if pinned is not None and rng != pinned:
        raise ValueError(
            f"{fn}: scheme {scheme!r} draws from the {pinned!r} generator only (the 'torch' "
            f"scheme reproduces torch's reset_parameters draw for draw): drop rng={rng!r}"
        )


def _keys(rows: list[Row], seed: int) -> dict[str, tuple[int, int]]:
    """The counter-based generator's key of each written row: (seed, the parameter's
    canonical name: wrappers' segments removed, and the first of a tied tensor's names in sorted
    order), so that neither the registration order, nor which name came first, nor a wrapper
    (a compiled or checkpointed block) decides the values."""
    names: dict[str, list[str]] = {r.name: [r.name] for r in rows if r.init != SKIP}
    for row in rows:
        first = _tied_to(row)
        if first in names:
            names[first].append(row.name)
    return {
        name: philox_key(seed, min(map(canonical_name, group))) for name, group in names.items()
    }


def _keyed(row: Row, draw: Draw | None, param: torch.Tensor, key: tuple[int, int]) -> torch.Tensor:
    """The row's values for ``param`` (its local shard, if sharded) from the counter-based
    generator keyed by ``key``: elementwise draws generate exactly the elements held here, by
    their index in the full tensor, and zero the padding rows they hold; structured ones draw
    the whole tensor from a torch generator seeded by the key (as does a row with per-unit
    scales on a shard, or zero rows on a strided shard)."""
    sharded = is_sharded(param)
    shape = tuple(param.shape)
    device = _local(param).device
    elementwise = draw is not None and draw.kind != "structured"
    per_unit = isinstance(row.scale, list) or isinstance(row.shift, list)
    where = _local_index(param) if sharded and elementwise and not per_unit else None
    if elementwise and not sharded:
        value = _counted(draw, key, range(math.prod(shape)), param.dtype, device).view(shape)
        return _finished(row, value)
    if where is not None and (where[2] is not None or not row.zero_rows):
        local, index, offset = where
        value = _counted(draw, key, index, param.dtype, device).view(local)
        if row.scale is not None or row.shift is not None:  # numbers: the same on every shard
            rescale_(value, row.scale, row.shift, None)
        for r in row.zero_rows:  # those of the full tensor's rows this shard holds
            r %= shape[0]
            if offset[0] <= r < offset[0] + local[0]:
                value[r - offset[0]] = 0
        return value
    if elementwise:
        whole = _counted(draw, key, range(math.prod(shape)), param.dtype, device).view(shape)
        whole = _finished(row, whole)
    else:
        generator = torch.Generator(device).manual_seed(key[0] | key[1] << 32)
        whole = _drawn(row, draw, torch.empty(shape, dtype=param.dtype, device=device), generator)
    return _shard(whole, param) if sharded else whole


def _counted(
    draw: Draw, key: tuple[int, int], index: Any, dtype: torch.dtype, device: torch.device
) -> torch.Tensor:
    """The Draw's values at ``index`` (flat) from the counter-based generator."""
    if draw.kind == "constant":
        n = index.numel() if isinstance(index, torch.Tensor) else sum(map(len, _as_ranges(index)))
        return torch.full((n,), draw.mean, dtype=dtype, device=device)
    kw = {"dtype": dtype, "device": device}
    if draw.kind == "uniform":
        return counter.uniform(key, index, draw.low, draw.high, **kw)
    if draw.kind == "normal":
        return counter.normal(key, index, draw.mean, draw.sigma, **kw)
    return counter.truncated_normal(key, index, draw.mean, draw.sigma, draw.low, draw.high, **kw)


def _as_ranges(index: range | list[range]) -> list[range]:
    return [index] if isinstance(index, range) else index


def _finished(row: Row, value: torch.Tensor) -> torch.Tensor:
    """``value`` rescaled by the row and its zero rows zeroed, as :func:`_drawn` ends."""
    if row.scale is not None or row.shift is not None:
        rescale_(value, row.scale, row.shift, row.layout)
    for index in row.zero_rows:
        value[index] = 0
    return value


def _local_index(param: torch.Tensor) -> tuple[tuple[int, ...], Any, tuple[int, ...] | None]:
    """(local shape, the flat indices in the full tensor of the elements this rank holds, the
    block's offset in the full tensor) of a DTensor: for plain shards, the runs of consecutive
    indices of its block (one range for dim-0 shards, one per row for column shards), which the
    generator draws fast; for strided shards, an index tensor (by sharding an arange) and no
    offset (the elements are no block)."""
    from torch.distributed.tensor import distribute_tensor
    from torch.distributed.tensor._utils import compute_local_shape_and_global_offset
    from torch.distributed.tensor.placement_types import Replicate, Shard

    shape, mesh, placements = tuple(param.shape), param.device_mesh, param.placements
    if all(type(p) in (Shard, Replicate) for p in placements):
        local, offset = compute_local_shape_and_global_offset(shape, mesh, placements)
        local, offset = tuple(local), tuple(offset)
        return local, _runs(shape, local, offset), offset
    whole = torch.arange(math.prod(shape), dtype=torch.int64).view(shape)
    placed = distribute_tensor(whole, mesh, placements, src_data_rank=None).to_local()
    return tuple(placed.shape), placed.reshape(-1), None


def _runs(shape: tuple[int, ...], local: tuple[int, ...], offset: tuple[int, ...]) -> list[range]:
    """The block ``offset`` + ``local`` of a row-major ``shape`` as runs of consecutive flat
    indices, in the block's own order. The trailing dims the block covers whole, and the one
    before them, make each run; every index of the dims before those starts one."""
    k = len(shape)
    while k and local[k - 1] == shape[k - 1] and offset[k - 1] == 0:
        k -= 1
    inner = math.prod(shape[k:])
    if k == 0 or 0 in local:
        return [range(inner if 0 not in local else 0)]
    strides = [math.prod(shape[d + 1 :]) for d in range(len(shape))]
    run = local[k - 1] * inner
    starts = [offset[k - 1] * strides[k - 1]]
    for d in range(k - 2, -1, -1):  # the outer dims, innermost first
        starts = [
            i * strides[d] + s for i in range(offset[d], offset[d] + local[d]) for s in starts
        ]
    return [range(s, s + run) for s in sorted(starts)]


def resharded(model: nn.Module) -> None:
    """Put FSDP2's gathered parameters back to their shards. After a forward pass FSDP2 may
    keep a module's parameters gathered (the root module's, until the next backward), as plain
    tensors in the module: a write into the shards would then be missed by the next forward,
    which reuses the gathered copy. Resharding first makes ``named_parameters()`` give the
    shards (DTensors), and what is written into them what the next forward gathers. Nothing to
    do, and nothing imported, where FSDP2 was never loaded."""
    if "torch.distributed.fsdp" not in sys.modules:
        return
    from torch.distributed.fsdp import FSDPModule

    for module in model.modules():
        if isinstance(module, FSDPModule):
            module.reshard()


def is_sharded(param: torch.Tensor) -> bool:
    """Is ``param`` a DTensor (FSDP2, tensor parallel; its shards on other ranks too)? Asked
    without importing torch.distributed."""
    return hasattr(param, "device_mesh") and hasattr(param, "placements")


def _shard(full: torch.Tensor, param: torch.Tensor) -> torch.Tensor:
    """This rank's shard of ``full``, laid out as the DTensor ``param`` (no communication:
    every rank drew the same whole tensor from the same seed)."""
    from torch.distributed.tensor import distribute_tensor

    placed = distribute_tensor(
        full.to(param.device), param.device_mesh, param.placements, src_data_rank=None
    )
    return placed.to_local()


def _buffer_values(
    buffers: dict[str, Any], model: nn.Module
) -> tuple[list[str], list[torch.Tensor], list[torch.Tensor]]:
    """The plan's buffer values as tensors for ``model``'s buffers: (names, the model's
    buffers, values); a ValueError naming the buffer that is missing, of another size, on the
    meta device, or given a fraction for an integer buffer (nothing is written yet)."""
    if not buffers:
        return [], [], []
    found = dict(model.named_buffers(remove_duplicate=False))
    names, targets, values = [], [], []
    for name, value in buffers.items():
        where = f"apply: buffer {name!r}"
        if not _units(value):
            raise ValueError(f"{where}: a finite number or a list of them, got {_shown(value)}")
        buffer = found.get(name)
        if buffer is None:
            raise ValueError(
                f"apply: the model has no buffer {name!r}; was this plan made for another model?"
            )
        if buffer.is_meta:
            raise ValueError(
                f"{where} is on the meta device and has no storage; materialize the model first, "
                "e.g. model.to_empty(device='cpu'), then apply the plan"
            )
        flat = value if isinstance(value, list) else [value]
        if len(flat) != buffer.numel():
            raise ValueError(
                f"{where}: the plan holds {len(flat)} value(s) for a buffer of shape "
                f"{tuple(buffer.shape)}; make the plan again for this model"
            )
        if not buffer.is_floating_point() and not all(is_integer(v) for v in flat):
            raise ValueError(f"{where} holds integers ({buffer.dtype}), got {_shown(value)}")
        names.append(name)
        targets.append(buffer)
        value = torch.tensor(flat, dtype=buffer.dtype, device=buffer.device)
        values.append(value.view(buffer.shape))
    return names, targets, values


def _check_target(row: Row, param: torch.Tensor | None) -> None:
    """Raise ValueError, naming the parameter, unless ``row`` can be written into ``param``."""
    where = f"apply: {row.name!r}"
    if not _plain(row, param):
        try:
            row.check()
        except ValueError as err:
            raise ValueError(f"{where}: {err}") from None
    if param is None:
        raise ValueError(
            f"apply: the model has no parameter {row.name!r}; was this plan made for another model?"
        )
    if param.is_meta:
        raise ValueError(
            f"{where} is on the meta device and has no storage; materialize the model first, "
            "e.g. model.to_empty(device='cpu'), then apply the plan"
        )
    if param.is_inference() and not torch.is_inference_mode_enabled():
        raise ValueError(
            f"{where} was created under torch.inference_mode() and cannot be written outside "
            "it; make it an ordinary parameter first (outside inference mode: "
            "module.name = nn.Parameter(module.name.clone()))"
        )
    if row.shape is not None and tuple(row.shape) != tuple(param.shape):
        raise ValueError(
            f"{where}: the plan was made for shape {tuple(row.shape)} but the model's parameter "
            f"has shape {tuple(param.shape)}; make the plan again for this model"
        )
    if row.dtype is not None and row.dtype != dtype_name(param.dtype):
        raise ValueError(
            f"{where}: the plan was made for dtype {row.dtype} but the model's parameter is "
            f"{dtype_name(param.dtype)}; make the plan again for this model"
        )
    rows = param.shape[0] if param.ndim else 0
    for index in row.zero_rows:
        if not -rows <= index < rows:
            raise ValueError(
                f"{where}: zero row {index} is out of range for a parameter of shape "
                f"{tuple(param.shape)}"
            )
    for name in ("scale", "shift"):
        values = getattr(row, name)
        if isinstance(values, list):
            try:
                _unit_shape(values, param.shape, row.layout)
            except ValueError as err:
                raise ValueError(f"{where}: `{name}`: {err}") from None


def _plain(row: Row, param: torch.Tensor | None) -> bool:
    """True for a row whose written fields have the plain types the planner gives them, with
    the parameter's shape: a fast accept, so that only other rows pay for :meth:`Row.check`,
    which names the field at fault."""
    return (
        param is not None
        and (row.shape is None or (type(row.shape) is list and row.shape == list(param.shape)))
        and type(row.name) is str
        and type(row.init) is str
        and type(row.args) is dict
        and (row.layout is None or type(row.layout) is Layout)
        and type(row.zero_rows) is list
        and all(type(i) is int for i in row.zero_rows)
        and _plain_units(row.scale)
        and _plain_units(row.shift)
        and (row.dtype is None or type(row.dtype) is str)
    )


def _plain_units(values: Any) -> bool:
    if values is None:
        return True
    if type(values) is float:
        return math.isfinite(values)
    return type(values) is list and all(type(v) is float and math.isfinite(v) for v in values)


_DTYPE_NAMES: dict[torch.dtype, str] = {}


def dtype_name(dtype: torch.dtype) -> str:
    """``torch.float32`` -> ``"float32"``, as rows record it."""
    if dtype not in _DTYPE_NAMES:
        _DTYPE_NAMES[dtype] = str(dtype).removeprefix("torch.")
    return _DTYPE_NAMES[dtype]


_BATCH = 1 << 20  # elements: small parameters are exchanged this many at a time


@torch.no_grad()
def _commit(names: list[str], targets: list[torch.Tensor], values: list[torch.Tensor]) -> None:
    """Copy ``values[i]`` into ``targets[i]`` for every i, all or nothing.

    Targets are written in batches, each batch's old contents saved first: small parameters
    (up to 2^20 elements a batch) into one flat tensor, in one call; larger ones one at a
    time, largest first, into spare memory: a scratch buffer the size of the largest at
    first, then the memory of the value written before it, spare once written and at least as
    large (two passes over each large parameter: save, write). What was saved takes the written values' place
    in ``values`` (which this consumes), so their memory is released. If a write fails, the
    batch is restored from what was saved, and so is every batch written before it; the error
    names the target that refuses to be written. Memory: the values (one copy of the
    parameters, computed anyway) plus one scratch buffer and one batch.
    """
    # sharded parameters (DTensor: FSDP2, tensor parallel) are exchanged shard by shard: each
    # rank saves and writes its own local tensor, which aliases the parameter's storage
    targets, values = [_local(t) for t in targets], [_local(v) for v in values]
    groups: dict[tuple[torch.device, torch.dtype], list[int]] = {}
    for i, t in enumerate(targets):
        groups.setdefault((t.device, t.dtype), []).append(i)
    done: list[tuple[list[int], torch.Tensor | None]] = []  # (batch, its saved contents)
    for (device, dtype), members in groups.items():
        sizes = [targets[i].numel() for i in members]
        spare: torch.Tensor | None = None  # flat memory nothing needs any more
        for batch in _batches(members, sizes, _BATCH):  # the large ones first, largest first
            writing = [targets[i] for i in batch]
            flat = old = None
            try:
                target = writing[0]
                if target.numel() <= _BATCH:
                    flat = _flatten_dense_tensors(writing)
                else:
                    if spare is None or spare.numel() < target.numel():  # the largest: the first
                        spare = torch.empty(target.numel(), dtype=dtype, device=device)
                    buffer = spare[: target.numel()].view(target.shape)
                    buffer.copy_(target)
                    old = buffer  # saved: from here on the target may be written
                torch._foreach_copy_(writing, [values[i] for i in batch])
            except BaseException as err:
                if flat is not None or old is not None:  # the batch may be written: restore it
                    saved = _unflatten_dense_tensors(flat, writing) if old is None else [old]
                    for target, before in zip(writing, saved):
                        _restore(target, before)
                _roll_back(done, targets, values)
                if not isinstance(err, Exception):
                    raise  # an interrupt: every parameter is restored; let it through as it is
                culprit = _refusing(writing, [names[i] for i in batch])
                what = f"writing {culprit!r}" if culprit else "writing the parameters"
                raise _with_context(
                    err,
                    f"apply: {what} failed ({err}); every parameter was restored to what it was "
                    "before apply",
                ) from err
            if flat is not None:
                for i in batch:
                    values[i] = flat  # the value's memory is released; its old contents: flat
            else:
                written = values[batch[0]]
                values[batch[0]] = old
                spare = written.view(-1) if written.is_contiguous() else None
            done.append((batch, flat))


def _local(tensor: torch.Tensor) -> torch.Tensor:
    """The local shard of a DTensor (a view of its storage, so writing it writes the
    parameter); any other tensor as it is."""
    to_local = getattr(tensor, "to_local", None)  # DTensor's, without importing distributed
    return to_local() if to_local is not None else tensor


def _roll_back(
    done: list[tuple[list[int], torch.Tensor | None]],
    targets: list[torch.Tensor],
    values: list[torch.Tensor],
) -> None:
    """Restore every written batch: from its flat save, or from its value's memory."""
    for batch, flat in reversed(done):
        writing = [targets[i] for i in batch]
        olds = _unflatten_dense_tensors(flat, writing) if flat is not None else [values[batch[0]]]
        for target, old in zip(writing, olds):
            _restore(target, old)


def _batches(members: list[int], sizes: list[int], room: int):
    """Members larger than ``room`` one by one, largest first, then runs of the others, in
    order, whose sizes add up to at most ``room``."""
    for n, i in sorted(((n, i) for i, n in zip(members, sizes) if n > room), reverse=True):
        yield [i]
    batch: list[int] = []
    total = 0
    for i, n in zip(members, sizes):
        if n > room:
            continue
        if batch and total + n > room:
            yield batch
            batch, total = [], 0
        batch.append(i)
        total += n
    if batch:
        yield batch


def _refusing(targets: list[torch.Tensor], names: list[str]) -> str | None:
    """The name of the first target that refuses an in-place copy of its own contents (which
    changes nothing), if one does."""
    for target, name in zip(targets, names):
        try:
            target.copy_(target.detach().clone())
        except Exception:  # noqa: BLE001 (whatever it raises, it refuses the write)
            return name
    return None


def _restore(target: torch.Tensor, old: torch.Tensor) -> None:
    """Copy ``old`` back into ``target``; a target the failed write never changed (one that
    cannot be written at all) needs nothing."""
    try:
        target.copy_(old)
    except Exception:
        if not torch.equal(target, old):
            raise


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


TIED = "tied"  # the role of a tied tensor's second names


def tied_row(name: str, module: str, first: str) -> Row:
    """The row of a tied tensor's second name: written once, under ``first``."""
    return Row(name, module, TIED, SKIP, reason=f"tied to {first}: skipped")


def _tied_to(row: Row) -> str | None:
    """The first name a tied row's tensor is written under (see :func:`tied_row`)."""
    if row.role != TIED or not row.reason.startswith("tied to "):
        return None
    return row.reason.removeprefix("tied to ").removesuffix(": skipped")


def _retie(model: nn.Module, rows: list[Row], params: dict[str, torch.Tensor]) -> list[str]:
    """Tie again what the plan saw tied and is no longer: ``to_empty`` (materializing a model
    built on the meta device) gives each name its own tensor, and the second name's would keep
    whatever memory held. Each such name is set to its first name's parameter, as Hugging
    Face's ``model.tie_weights()`` does; the names re-tied."""
    done = []
    for row in rows:
        first = _tied_to(row)
        if first in params and row.name in params and params[row.name] is not params[first]:
            owner, leaf = owner_of(model, row.name)
            if params[row.name].shape == params[first].shape:
                setattr(owner, leaf, params[first])
                done.append(row.name)
    return done


_RUNNING = ("running_mean", "running_var", "num_batches_tracked")


@torch.no_grad()
def _rebuilt_buffers(model: nn.Module, names: list[str], planned: dict[str, Any]) -> list[str]:
    """Set again the buffers that were on the meta device when the model was planned (after
    ``to_empty`` they hold whatever memory held), those the plan does not write itself; the
    names left that weightinit cannot compute. Norm layers' running statistics: reset, as a
    freshly built layer holds them (``reset_running_stats``). A Hugging Face model's other
    buffers (rotary frequencies, ``position_ids``): its own ``_init_weights`` on the modules
    that hold them and hold no parameter themselves (so nothing the plan wrote is touched)."""
    found = dict(model.named_buffers(remove_duplicate=False))
    hf_init = getattr(model, "_init_weights", None) if hasattr(model, "config") else None
    left, owners = [], {}
    for name in names:
        if name not in found or name in planned or found[name].is_meta:
            continue
        owner, leaf = owner_of(model, name)
        if leaf in _RUNNING and hasattr(owner, "reset_running_stats"):
            owners[id(owner)] = (owner, owner.reset_running_stats)
        elif hf_init is not None and all(p is None for p in owner._parameters.values()):
            owners[id(owner)] = (owner, lambda owner=owner: hf_init(owner))
        else:
            left.append(name)
    for _, rebuild in owners.values():
        rebuild()
    return left


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
    except Exception:  # noqa: BLE001 (an exception type with its own constructor)
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
