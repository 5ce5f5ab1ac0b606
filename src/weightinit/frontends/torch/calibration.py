"""The torch front end's calibration: LSUV sweeps run inside the forward pass of a copy of the
model (hooks on every calibrated layer), the one implementation behind "lsuv" and the "auto"
scheme's stabilizing sweep. The rule and its options are in :mod:`weightinit.scheme.lsuv`,
and so is what happens to norm layers' running statistics (re-estimated on the data, recorded
in ``plan.buffers``).
"""

from __future__ import annotations

import collections
import copy
import copyreg
import dataclasses
import functools
import math
import warnings
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from weightinit._gc import collector_paused
from weightinit.plans.plan import SKIP, Plan, Row, is_sharded, rescale_, resharded
from weightinit.scheme.lsuv import check_settings
from weightinit.understanding.graph import arguments
from weightinit.understanding.knowledge import Kinds, describe, read_back_embeddings, unwrap
from weightinit.understanding.recurrent import layer_suffixes, recurrent_preactivations

__all__ = ["Calibration", "lsuv_plan"]

# layers whose output is linear in their weight and bias: corrected inside the forward pass
_LINEAR = (nn.Linear, nn.modules.conv._ConvNd, nn.Bilinear, nn.Embedding, nn.EmbeddingBag)
_RECURRENT = (nn.RNNBase, nn.RNNCellBase)
_NORMS = nn.modules.batchnorm._NormBase  # BatchNorm, SyncBatchNorm, InstanceNorm
# a norm layer's running statistics, as the plan records them
_STATISTICS = ("running_mean", "running_var", "num_batches_tracked")


@dataclass
class Calibration:
    """One calibrated layer (an RNN's: one layer and direction, named like ``"rnn.l1_reverse"``).

    ``iterations``: sweeps that corrected it. ``gain``: the factor on its base weights
    (per-channel: the root mean square of the channel gains, which ``gain_range`` bounds).
    ``std``, ``mean``: of its output (RNNs: gate pre-activations) under the final weights,
    pooled over its uses; per-channel, the channel farthest from the target. ``mean`` is
    recorded when centring. ``verified``: measured in a final sweep that changed nothing; if
    False (``max_iter`` sweeps ran out first), a layer's ``std`` and ``mean`` were measured in
    the last sweep or, if it corrected the layer, are what the correction aimed at.
    ``std`` is None for a layer that did not run on the data.
    """

    layer: str
    iterations: int
    gain: float
    std: float | None
    mean: float | None = None
    gain_range: tuple[float, float] | None = None
    verified: bool = True


# A unit's numbers (std, mean, gain, shift) are one per channel (float64 tensors) or, pooled,
# one float: the arithmetic on them is IEEE float64 either way, the float saving a tensor op
# per step; sqrt is torch's for both (its float64 sqrt is not always math.sqrt's).
Value = torch.Tensor | float


class _Moments:
    """Count, mean and sum of squared deviations, pooled over uses (Chan, Golub & LeVeque)."""

    def __init__(self) -> None:
        self.n = 0
        self.mean: Value = 0.0
        self.m2: Value = 0.0
        self.found: Value | None = None  # std(), once asked
        self.everywhere: _Moments | None = None  # pooled over the ranks, once asked

    def add(self, y: torch.Tensor, axis: int | None = None, scratch: dict | None = None) -> None:
        """Add the values of ``y``, all pooled or (``axis``) per channel along that axis.
        ``scratch``: memory for the deviations, kept per size between calls."""
        y = y.float()  # two passes: accurate, and far faster than torch.var_mean on CPU
        self.found = self.everywhere = None
        if axis is None:
            flat = y.reshape(-1)
            mean = flat.mean()
            key = (flat.numel(), flat.device)
            if scratch is None:
                d = flat - mean
            else:
                if key not in scratch:
                    scratch[key] = torch.empty_like(flat)
                d = torch.sub(flat, mean, out=scratch[key])
            n, m2, mean = flat.numel(), torch.dot(d, d).item(), mean.item()
        else:
            dims = [i for i in range(y.ndim) if i != axis]
            mean = y.mean(dims, keepdim=True)
            n, m2 = y.numel() // y.shape[axis], (y - mean).square().sum(dims)
            m2, mean = m2.double().cpu(), mean.reshape(m2.shape).double().cpu()
        self._merge(n, mean, m2)

    def _merge(self, n: int, mean: Value, m2: Value) -> None:
        """Pool in ``n`` more values of this mean and sum of squared deviations (Chan et al.)."""
        total = self.n + n
        delta = mean - self.mean
        self.m2 = self.m2 + m2 + delta * delta * (self.n * n / total)
        self.mean = self.mean + delta * (n / total)
        self.n = total

    @classmethod
    def pooled(cls, parts: list[tuple[int, float, float]]) -> _Moments:
        """The moments of ``parts`` (count, mean, m2 each) pooled, in order."""
        pooled = cls()
        for n, mean, m2 in parts:
            if n:
                pooled._merge(n, mean, m2)
        return pooled

    def std(self) -> Value:
        if self.found is None:
            var = self.m2 / max(self.n - 1, 1)
            self.found = var.sqrt() if isinstance(var, torch.Tensor) else _sqrt(var)
        return self.found


def _across_ranks(stats: _Moments) -> _Moments:
    """``stats`` pooled over every rank of the default process group: the ranks' (count, mean,
    m2) gathered and merged in rank order, so that every rank gets the same numbers.

    What is pooled is the distinct data the ranks hold. Ranks whose moments are bit-identical
    hold the same values and count once: a replicated output (tensor parallel's row-wise
    layers reduce theirs onto every rank), or the same batch given to every rank ("auto"'s
    Gaussian stand-in is). Ranks with their own batches (FSDP2) or their own slice of a layer's
    features (column-wise tensor parallel) all count. So the moments are those of one process
    on the concatenated batches, up to rounding, and equal to one process on the batch when
    every rank has it."""
    import torch.distributed as dist

    if stats.everywhere is None:
        mine = [float(stats.n), float(stats.mean), float(stats.m2)]
        device = "cuda" if dist.get_backend() == "nccl" else "cpu"  # what the backend sends
        mine = torch.tensor(mine, dtype=torch.float64, device=device)
        every = [torch.empty_like(mine) for _ in range(dist.get_world_size())]
        dist.all_gather(every, mine)
        parts = dict.fromkeys(tuple(e.tolist()) for e in every)  # distinct, in rank order
        stats.everywhere = _Moments.pooled([(int(n), mean, m2) for n, mean, m2 in parts])
    return stats.everywhere


def _sqrt(x: float) -> float:
    """torch's float64 square root of ``x``, as a 0-d tensor's ``sqrt()`` computes it."""
    return torch.tensor(x, dtype=torch.float64).sqrt().item()


def _finite(v: Value) -> bool:
    return bool(torch.isfinite(v).all()) if isinstance(v, torch.Tensor) else math.isfinite(v)


def _any(v: Value | bool) -> bool:
    return bool(v.any()) if isinstance(v, torch.Tensor) else bool(v)


def _all(v: Value | bool) -> bool:
    return bool(v.all()) if isinstance(v, torch.Tensor) else bool(v)


@dataclass(eq=False)
class _Unit:
    """One gain: a layer, or one layer and direction of an RNN."""

    name: str
    weights: list[str]  # qualified names of the parameters the gain multiplies
    bias: str | None  # qualified name of the bias scaled (and centred) with them
    gain: Value = 1.0
    shift: Value | None = None  # the bias's added shift, when centring
    iterations: int = 0
    zero: bool = False  # deliberately zero (Fixup, zero heads): left alone
    # this sweep
    uses: int = 0
    stats: _Moments = field(default_factory=_Moments)
    in_pass: tuple[Value, Value | None] | None = None  # applied in the pass
    shared: bool = False  # seen used more than once: corrected between passes only
    record: tuple[float | None, float | None, bool] = (None, None, True)  # std, mean, verified


def lsuv_plan(
    model: nn.Module,
    base: Plan,
    data: Any,
    *,
    seed: int,
    target_std: float | None = None,
    target_var: float | None = None,
    tol: float = 0.05,
    max_iter: int = 10,
    center: bool = False,
    per_channel: bool = False,
) -> tuple[Plan, list[Calibration]]:
    """Calibrate ``base`` (any plan for ``model``) on ``data`` by the LSUV rule (see the module
    docstring; Mishkin & Matas 2016): the calibrated plan and one record per layer.

    ``base`` is drawn once with ``seed`` on a copy of ``model``; each sweep is one forward pass
    of ``data`` (a tensor, a tuple of positional arguments or a dict of keyword arguments) that corrects every layer out of
    tolerance, and the loop ends after a sweep that corrects nothing or after ``max_iter``
    sweeps (with a warning when ``max_iter > 1``). ``target_std`` (default 1) or
    ``target_var``, not both. The plan keeps ``base``'s scheme name and rows, with the gains
    as ``Row.scale`` (and the centring as ``Row.shift``), ``plan.calibration`` and the
    settings and seed in ``plan.options``; it applies only with ``seed``. ``plan.buffers``
    holds the running statistics of the norm layers that track them (except those whose
    parameters ``base`` leaves alone), re-estimated on ``data`` with the final weights: the
    batch mean and unbiased variance of each one's input, ``num_batches_tracked`` 1 (one
    forward pass more, unless the last sweep changed nothing).

    ``max_iter=1`` is exactly one sweep and one forward pass, with no verifying pass (and one
    pass more for the statistics of norm layers, if any): a refinement step for an analytic
    plan. Layers used once whose output is linear in their
    weights are then exact; the records say ``verified=False`` unless nothing was corrected.

    Example:
        >>> import torch, weightinit
        >>> from weightinit.frontends.torch.calibration import lsuv_plan
        >>> net = torch.nn.Sequential(torch.nn.Linear(8, 32), torch.nn.ReLU(), torch.nn.Linear(32, 2))
        >>> batch = torch.randn(128, 8, generator=torch.Generator().manual_seed(0))
        >>> p, records = lsuv_plan(net, weightinit.plan(net, "he"), batch, seed=0, max_iter=1)
        >>> p.apply(net).scheme, [round(net[:i](batch).std().item(), 4) for i in (1, 3)]
        ('he', [1.0, 1.0])
    """
    target = check_settings(target_std, target_var, tol, max_iter, center, per_channel)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"lsuv: `seed` must be an int, got {seed!r}")
    if not isinstance(data, (torch.Tensor, tuple, dict)):
        raise TypeError(
            "lsuv: `data` must be a tensor, a tuple of the model's positional arguments or a "
            f"dict of its keyword arguments, got {type(data).__name__}"
        )
    model = unwrap(model)
    resharded(model)  # FSDP2's gathered copies back to the shards: the parameters are those
    sharded = next((n for n, p in model.named_parameters() if is_sharded(p)), None)
    rows = {r.name: r for r in base.rows}
    if sharded is not None:
        _check_sharded(model, sharded, rows, per_channel, center)
    pooled = _across_ranks if sharded is not None else (lambda stats: stats)
    # the copy, the hooks and the records live until the plan is made: see weightinit._gc
    with collector_paused():
        args, kwargs = arguments(data)
        # a sharded model is calibrated in place (its parameters are the ranks' shards); any
        # other on a copy, the model untouched
        work = model if sharded is not None else _copy(model, rows)
        modes = {m: m.training for m in work.modules()} if sharded is not None else {}
        norms = _reestimated(work, rows)
        kept = {m for m in work.modules() if isinstance(m, _NORMS) and not m.training}
        kept -= set(norms.values())
        work.eval()  # dropout off
        for module in work.modules():
            if isinstance(module, _NORMS) and module not in kept:
                module.train()  # batch statistics (the running ones are the copy's)
        for norm in norms.values():
            norm.momentum = None  # a cumulative average: one pass gives the batch's own moments
        units = _units(work, rows, center)
        every = [u for found in units.values() for u in found if u is not None]
        params = dict(work.named_parameters(remove_duplicate=False))

        def correction(unit: _Unit) -> tuple[Value, Value | None] | None:
            """(scale, mean to subtract) that brings the unit's pooled output to the target: in the
            first sweep always (exact, at no extra cost), later only when outside tolerance; None
            otherwise, or when the unit is deliberately zero."""
            stats = pooled(unit.stats)
            std, mean = stats.std(), stats.mean
            if stats.n < 2:
                raise ValueError(
                    f"lsuv: layer {unit.name!r} gives fewer than 2 values per channel on `data`; "
                    "pass a larger batch"
                )
            if not (_finite(std) and _finite(mean)):
                raise ValueError(f"lsuv: layer {unit.name!r} gives non-finite outputs on `data`")
            if _any(std == 0):
                if _all(std == 0) and not any(_nonzero(params[w]) for w in unit.weights):
                    unit.zero = True  # deliberately zero (Fixup, zero heads): left at zero
                    return None
                raise ValueError(
                    f"lsuv: layer {unit.name!r} has constant outputs (std 0"
                    f"{' in some channels' if per_channel else ''}) "
                    "on `data`, so no scale can reach the target std; check the data or the layers "
                    "before it"
                )
            centre = unit.shift is not None
            off = (
                sweep == 0
                or _any(abs(std - target) > tol * target)
                or (centre and _any(abs(mean) > tol * target))
            )
            # target / std as torch divides a number by a tensor: reciprocal, then times target
            return ((1.0 / std) * target, mean if centre else None) if off else None

        def hook(module, inputs, kwargs, output):
            if isinstance(module, _RECURRENT):
                x = inputs[0] if inputs else kwargs["input"]
                hx = inputs[1] if len(inputs) > 1 else kwargs.get("hx")
                for unit, a in zip(units[module], recurrent_preactivations(module, x, hx)):
                    if unit is not None:
                        unit.uses += 1
                        unit.stats.add(a)
                return None
            (unit,) = units[module]
            attention = isinstance(module, nn.MultiheadAttention)  # (output, weights)
            out = output[0] if attention else output
            if unit.zero or not isinstance(out, torch.Tensor) or not out.is_floating_point():
                return None
            axis = _feature_axis(module, out) if per_channel else None
            unit.uses += 1
            unit.stats.add(_local_output(out, unit.name), axis, scratch)
            if unit.uses == 1 and not unit.shared:
                unit.in_pass = correction(unit)
            if unit.in_pass is None:
                return None
            # every use this sweep, so later layers see calibrated inputs
            scale, mean = unit.in_pass
            if sharded is not None:  # one number each (pooled), a DTensor output stays one
                y = out if mean is None else out - mean
                y = y * scale
                return (y, *output[1:]) if attention else y
            if _fresh(module, out):  # memory no one else holds: corrected where it is
                y = out if mean is None else out.sub_(_along(mean, out, axis))
                return y.mul_(_along(scale, out, axis))
            y = out if mean is None else out - _along(mean, out, axis)
            y = y * _along(scale, out, axis)
            return (y, *output[1:]) if attention else y

        scratch: dict = {}  # the deviations of a layer's output, one buffer per size
        cuda = sorted({p.device.index or 0 for p in params.values() if p.is_cuda})
        handles = [m.register_forward_hook(hook, with_kwargs=True) for m in units]
        # in place (sharded): the shards as they were, put back if calibrating fails
        before = _shards(work, rows) if sharded is not None else []
        try:
            with torch.random.fork_rng(devices=cuda), torch.no_grad():
                # in place is fine (the copy; or the shards, saved): the analytic plan is
                # what is being calibrated
                drawn = dataclasses.replace(base, pending_calibration=False, computed=None)
                drawn.apply(work, seed=seed, atomic=False)
                originals = _Originals(every, params, max_iter)
                for sweep in range(max_iter):
                    for unit in every:
                        unit.uses, unit.stats, unit.in_pass = 0, _Moments(), None
                    _forward(work, args, kwargs, norms)
                    changed = []  # corrected, or corrected inside the pass only
                    for unit in every:
                        if unit.uses and not unit.zero:
                            unit.shared |= unit.uses > 1
                            fix = correction(unit)
                            if _settle(unit, pooled(unit.stats), fix, target, center):
                                _write(unit, params, originals, rows)
                                changed.append(unit.name)
                            elif unit.in_pass is not None:
                                changed.append(unit.name)
                    if not changed:
                        break
                else:
                    _unsettled(every, changed, max_iter)
        except BaseException:
            with torch.no_grad():
                for shard, saved in before:
                    shard.copy_(saved)
            raise
        finally:
            for handle in handles:
                handle.remove()
            resharded(work)  # the next forward gathers what the last sweep wrote
            for module, training in modes.items():  # calibrated in place: the modes as they were
                module.train(training)
        if norms and changed:  # the last pass ran before its corrections: measure the final network
            with torch.random.fork_rng(devices=cuda), torch.no_grad():
                _forward(work, args, kwargs, norms)
        plan, records = _calibrated(base, every, rows, center)
        plan.options.update(
            seed=seed,
            target_std=target,
            tol=tol,
            max_iter=max_iter,
            center=center,
            per_channel=per_channel,
        )
        plan.buffers = {  # the running statistics of the final network on `data`
            f"{layer}.{name}" if layer else name: _values(buffer)
            for layer, norm in norms.items()
            for name, buffer in norm.named_buffers(recurse=False)
            if name in _STATISTICS
        }
        written = {r.name for r in plan.rows if r.init != SKIP}
        plan.computed = (  # exactly what apply(seed=seed) would draw: no need to draw it again
            {name: p.detach() for name, p in params.items() if name in written}
            if sharded is None
            else None  # the model holds them already; apply draws each rank's shards again
        )
        return plan, records


def _copy(model: nn.Module, rows: dict[str, Row]) -> nn.Module:
    """``copy.deepcopy(model)``, faster: the parameters a row of the plan writes get fresh
    memory, not a copy of the values the plan overwrites, and torch.nn modules are rebuilt
    from their attribute dicts as deepcopy rebuilds them (without its per-object dispatch);
    whatever else they hold goes through deepcopy itself, with the same memo."""
    memo: dict[int, Any] = {}
    for name, param in model.named_parameters(remove_duplicate=False):
        row = rows.get(name)
        if row is not None and row.init != SKIP and _plain(param):
            memo[id(param)] = nn.Parameter(torch.empty_like(param), param.requires_grad)
    return _deepcopy(model, memo)


#: types deepcopy returns as they are
_ATOMIC = frozenset({type(None), bool, int, float, complex, str, bytes, torch.dtype, torch.device})
#: the copy protocol of a plain torch.nn.Module: what _deepcopy reproduces
_PROTOCOL = {
    name: getattr(nn.Module, name)
    for name in ("__reduce_ex__", "__reduce__", "__getstate__", "__setstate__")
}


def _deepcopy(value: Any, memo: dict[int, Any]) -> Any:
    """``copy.deepcopy(value, memo)``: modules with torch.nn.Module's copy protocol, the
    dicts in them, and tuples and sets of numbers and strings, copied here as deepcopy copies
    them (the originals stay alive in the model, so deepcopy's keep-alive list is not
    needed); everything else by deepcopy itself."""
    cls = type(value)
    if cls in _ATOMIC:
        return value
    found = memo.get(id(value), memo)
    if found is not memo:
        return found
    if cls is tuple and all(type(v) in _ATOMIC for v in value):
        return value  # deepcopy returns such a tuple itself
    if cls is set and all(type(v) in _ATOMIC for v in value):  # _non_persistent_buffers_set
        memo[id(value)] = new = set(value)
        return new
    if isinstance(value, nn.Module) and _plain_module(cls) and "__deepcopy__" not in vars(value):
        new = cls.__new__(cls)
        memo[id(value)] = new
        state = {}
        for k, v in value.__dict__.items():
            state[k] = v if type(v) in _ATOMIC else _deepcopy(v, memo)
        new.__setstate__(state)
        return new
    if cls is dict or (cls is collections.OrderedDict and not vars(value)):
        new = cls()
        memo[id(value)] = new
        for k, v in value.items():
            new[k if type(k) in _ATOMIC else _deepcopy(k, memo)] = (
                v if type(v) in _ATOMIC else _deepcopy(v, memo)
            )
        return new
    return copy.deepcopy(value, memo)


@functools.lru_cache(maxsize=1024)  # parametrize makes a class per module
def _plain_module(cls: type) -> bool:
    """Is a module of class ``cls`` deep-copied as torch.nn.Module copies it: rebuilt with
    ``cls.__new__``, its attribute dict copied, ``__setstate__`` called?"""
    if copyreg.dispatch_table.get(cls) is not None or hasattr(cls, "__deepcopy__"):
        return False
    if any("__slots__" in vars(k) for k in cls.__mro__) or issubclass(cls, (list, dict)):
        return False
    if hasattr(cls, "__getnewargs_ex__") or hasattr(cls, "__getnewargs__"):
        return False
    return all(getattr(cls, name) is method for name, method in _PROTOCOL.items())


def _plain(param: torch.Tensor) -> bool:
    """A parameter whose deep copy is ``nn.Parameter(its data cloned, requires_grad)``."""
    return (
        type(param) is nn.Parameter
        and not param.is_meta
        and param.layout == torch.strided
        and not is_sharded(param)
    )


def _forward(work: nn.Module, args: tuple, kwargs: dict, norms: dict[str, nn.Module]) -> None:
    """One forward pass, the re-estimated norm layers' statistics reset first, so that they
    end as the moments of this pass's inputs; FSDP2 modules resharded first, so that the pass
    gathers the weights as the last sweep wrote them into the shards."""
    for norm in norms.values():
        norm.reset_running_stats()
    resharded(work)
    try:
        work(*args, **kwargs)
    except ValueError:
        raise  # weightinit's own findings, or the model's own words on its input
    except Exception as err:  # whatever else the model raises (HF CLIP without pixel_values:
        # AttributeError on None)
        raise ValueError(
            f"lsuv: the model failed on `data` ({type(err).__name__}: {err}); pass data= a "
            "batch the model accepts: a tensor, a tuple of positional arguments or a dict of "
            "keyword arguments"
        ) from err


def _reestimated(work: nn.Module, rows: dict[str, Row]) -> dict[str, nn.Module]:
    """The norm layers whose running statistics the plan re-estimates, by qualified name:
    those that track them, unless the plan writes none of their parameters (skipped, frozen,
    loaded from a checkpoint: their statistics are the user's too). A layer without affine
    parameters has no rows to say so and is re-estimated."""
    found = {}
    for name, module in work.named_modules():
        if not isinstance(module, _NORMS) or module.running_mean is None:
            continue
        prefix = f"{name}." if name else ""
        own = [rows[prefix + p] for p, _ in module.named_parameters() if prefix + p in rows]
        if not own or any(r.init != SKIP for r in own):
            found[name] = module
    return found


def _units(work: nn.Module, rows: dict[str, Row], center: bool) -> dict[nn.Module, list]:
    """The calibrated units of each module (an RNN's per layer and direction, None where
    skipped): layers whose weight rows the base plan writes."""

    def planned(name: str) -> bool:
        row = rows.get(name)
        return row is not None and row.init != SKIP

    def tied_head(module: nn.Module, prefix: str) -> str | None:
        """The first name of a Linear head's weight when that is a read-back embedding the
        plan writes under another name (GPT-2's lm_head.weight is transformer.wte.weight)."""
        if not isinstance(module, nn.Linear):
            return None
        name = first.get(id(module.weight))
        tied = name != prefix + "weight" and name in read_back and planned(name)
        return name if tied else None

    found: dict[nn.Module, list] = {}
    # an embedding an output head reads back is calibrated where the head uses it, on the
    # logits (the head's row is "tied"); embeddings of its width keep the scheme's scale
    read_back = read_back_embeddings(work)
    first = {id(p): n for n, p in work.named_parameters()}
    # MultiheadAttention uses its out_proj's weights without calling it: the attention's output
    # is linear in them, so the attention module is the unit
    inside = {m.out_proj for m in work.modules() if isinstance(m, nn.MultiheadAttention)}
    for mname, module in work.named_modules():
        prefix = f"{mname}." if mname else ""
        if isinstance(module, nn.MultiheadAttention) and planned(prefix + "out_proj.weight"):
            bias = prefix + "out_proj.bias" if planned(prefix + "out_proj.bias") else None
            unit = _Unit(mname, [prefix + "out_proj.weight"], bias)
            unit.shift = 0.0 if center and bias else None
            found[module] = [unit]
        elif tied_head(module, prefix) is not None:
            bias = prefix + "bias" if planned(prefix + "bias") else None
            found[module] = [_Unit(mname, [tied_head(module, prefix)], bias)]
        elif (
            module in inside or isinstance(module, nn.Embedding) and prefix + "weight" in read_back
        ):
            continue
        elif _layer(module) and planned(prefix + "weight"):
            bias = prefix + "bias" if planned(prefix + "bias") else None
            unit = _Unit(mname, [prefix + "weight"], bias)
            unit.shift = 0.0 if center and bias else None
            found[module] = [unit]
        elif isinstance(module, _RECURRENT):
            suffixes = layer_suffixes(module) if isinstance(module, nn.RNNBase) else [""]
            layers = []
            for suffix in suffixes:
                names = [prefix + "weight_ih" + suffix, prefix + "weight_hh" + suffix]
                name = prefix + suffix[1:] if suffix else mname
                layers.append(_Unit(name, names, None) if all(map(planned, names)) else None)
            if any(layers):
                found[module] = layers
    return found


def _settle(unit: _Unit, stats: _Moments, fix, target: float, center: bool) -> bool:
    """Fold this sweep's correction (if any) into the unit's gain and shift, and record its
    std and mean (``stats``: the unit's, pooled over the ranks of a sharded model); whether
    it changed."""
    std, mean = stats.std(), stats.mean
    if fix is None:
        unit.record = (_worst(std, target), _worst(mean, 0.0) if center else None, True)
        return False
    scale, shift = fix
    unit.gain = unit.gain * scale
    if shift is not None:
        unit.shift = scale * (unit.shift - shift)
    unit.iterations += 1
    after = 0.0 if shift is not None else _worst(mean * scale, 0.0)
    unit.record = (target, after if center else None, False)
    return True


class _Originals:
    """The drawn values of the units' parameters, each kept at its first correction when a
    later correction rescales it again (a later sweep, or another unit using the same tensor):
    with ``max_iter=1`` (auto's stabilizing sweep) nothing is kept."""

    def __init__(self, units: list[_Unit], params: dict, max_iter: int):
        uses = collections.Counter(id(params[n]) for u in units for n in _written(u))
        self.keep = {i for i, count in uses.items() if count > 1 or max_iter > 1}
        self.kept: dict[int, torch.Tensor] = {}

    def restore(self, param: torch.Tensor) -> None:
        """Bring ``param`` back to its drawn values (kept now, at its first correction)."""
        key = id(param)
        if key in self.kept:
            param.copy_(self.kept[key])
        elif key in self.keep:
            self.kept[key] = param.detach().clone()


def _written(unit: _Unit) -> list[str]:
    """The parameters a unit's correction rescales: its weights and bias."""
    return unit.weights + ([unit.bias] if unit.bias else [])


def _write(unit: _Unit, params: dict, originals: _Originals, rows: dict[str, Row]) -> None:
    """The unit's parameters from their pre-initialization, as the plan will write them."""
    scale, shift = _values(unit.gain), _values(unit.shift)
    for name in _written(unit):
        param = params[name]
        originals.restore(param)
        rescale_(param, scale, shift if name == unit.bias else None, rows[name].layout)


def _calibrated(base: Plan, units: list[_Unit], rows, center: bool):
    plan = Plan(
        base.scheme,
        [_shallow(r) for r in base.rows],
        dict(base.options),
        base.graph,
        notes=dict(base.notes),
        predictions=list(base.predictions),
        rng=base.rng,
    )
    by_name = {r.name: r for r in plan.rows}
    records = []
    for unit in units:
        gain = unit.gain
        if isinstance(gain, torch.Tensor):
            rms = gain.square().mean().sqrt().item()
            spread = (gain.min().item(), gain.max().item()) if gain.ndim else None
            largest = gain.abs().max().item()
        else:  # one number: its root mean square, as the tensor's, computed by torch's sqrt
            rms, spread, largest = _sqrt(gain * gain), None, abs(gain)
        for name in unit.weights + ([unit.bias] if unit.bias else []):
            row = by_name[name]
            if unit.record[0] is None and not unit.zero:
                row.reason += "; LSUV: did not run on `data`, not calibrated"
            if not unit.iterations:
                continue
            row.scale = _values(unit.gain)
            row.std = None if row.std is None else row.std * rms
            row.bound = None if row.bound is None else row.bound * largest
            gains = f"gains {spread[0]:.4g}-{spread[1]:.4g}" if spread else f"gain {rms:.4g}"
            row.reason += f"; LSUV {gains}"
            if name == unit.bias and unit.shift is not None:
                row.shift = _values(unit.shift)
                row.reason += ", centred"
        std, mean, verified = unit.record
        if unit.zero:
            std, mean = 0.0, (0.0 if center else None)
        records.append(Calibration(unit.name, unit.iterations, rms, std, mean, spread, verified))
    plan.calibration = [dict(vars(r)) for r in records]  # asdict: numbers, str, a tuple
    return plan, records


def _shallow(row: Row) -> Row:
    """``copy.copy(row)``, without its per-object dispatch."""
    new = object.__new__(Row)
    new.__dict__.update(row.__dict__)
    return new


def _check_sharded(
    model: nn.Module, name: str, rows: dict[str, Row], per_channel: bool, center: bool
) -> None:
    """What calibrating a sharded model in place supports: one gain per layer (pooled over
    the ranks), no re-estimated running statistics (they would be each rank's own)."""
    import torch.distributed as dist

    where = f"lsuv: {name!r} is sharded (a DTensor)"
    if not dist.is_initialized():
        raise ValueError(f"{where}, but torch.distributed is not initialized")
    if per_channel or center:
        raise ValueError(
            f"{where}: a sharded model is calibrated with one gain per layer, pooled over the "
            "ranks; per_channel=True and center=True are not supported there yet. Calibrate "
            "the unsharded model, or drop those options"
        )
    norms = _reestimated(model, rows)
    if norms:
        raise ValueError(
            f"{where}, and norm layer {next(iter(norms))!r} tracks running statistics, which "
            "calibration re-estimates on each rank's batch and would differ between ranks: "
            "calibrate the unsharded model (or skip= the norm layer's parameters)"
        )


def _shards(model: nn.Module, rows: dict[str, Row]) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(local shard, a copy of it) of every parameter the plan writes: one copy of the local
    shards, as atomic apply holds."""
    written = [p for n, p in model.named_parameters() if n in rows and rows[n].init != SKIP]
    shards = [p.to_local() if is_sharded(p) else p for p in written]
    return [(shard, shard.detach().clone()) for shard in shards]


def _nonzero(param: torch.Tensor) -> bool:
    """Does ``param`` (a sharded one: on any rank) hold a nonzero value?"""
    if not is_sharded(param):
        return bool(param.any())
    import torch.distributed as dist

    found = param.to_local().any().to(torch.int32).reshape(1)
    dist.all_reduce(found, op=dist.ReduceOp.MAX)
    return bool(found.item())


def _local_output(out: torch.Tensor, layer: str) -> torch.Tensor:
    """What this rank holds of a layer's output: a DTensor's local part (a slice of the
    features, or all of them replicated: see :func:`_across_ranks`)."""
    if not is_sharded(out):
        return out
    if any(p.is_partial() for p in out.placements):
        raise ValueError(
            f"lsuv: layer {layer!r} returns a partial sum (a DTensor awaiting its reduction), "
            "whose statistics mean nothing on one rank; let the layer reduce its output "
            "(tensor parallel's RowwiseParallel does by default)"
        )
    return out.to_local()


def _unsettled(units: list[_Unit], changed: list[str], max_iter: int) -> None:
    """The last sweep still changed something: no record is verified."""
    for unit in units:
        unit.record = (*unit.record[:2], False)
    if max_iter > 1:
        warnings.warn(
            f"lsuv: the last of max_iter={max_iter} sweeps still corrected {len(changed)} "
            f"layer(s) ({', '.join(changed[:5])}{', ...' if len(changed) > 5 else ''}), so the "
            "records give aimed-at values (verified=False); raise max_iter to verify",
            stacklevel=4,
        )


def _worst(values: Value, target: float) -> float:
    """The value farthest from ``target`` (the value itself for a single one)."""
    if not isinstance(values, torch.Tensor):
        return values
    flat = values.reshape(-1)
    return flat[(flat - target).abs().argmax()].item()


def _values(t: Value | None) -> float | int | list[float] | None:
    if t is None or not isinstance(t, torch.Tensor):
        return t
    return t.item() if t.ndim == 0 else t.tolist()


def _along(t: Value, y: torch.Tensor, axis: int | None) -> torch.Tensor:
    """``t`` (one number, or one per channel) broadcastable against ``y`` along ``axis``."""
    if not isinstance(t, torch.Tensor):
        t = torch.tensor(t, dtype=torch.float64)
    t = t.to(y.dtype).to(y.device)
    return t if axis is None else t.reshape([-1 if i == axis else 1 for i in range(y.ndim)])


#: layers whose forward returns new memory (exactly these classes: a subclass may return a view)
_FRESH = {
    nn.Linear, nn.Bilinear, nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d,
    nn.ConvTranspose2d, nn.ConvTranspose3d, nn.Embedding,
}  # fmt: skip


def _fresh(module: nn.Module, out: torch.Tensor) -> bool:
    """Is ``out`` memory that only the hook that corrects it holds: the output of a layer
    that returns new memory, which no other hook sees (a user's hook copied with the model
    may keep it)?"""
    return (
        type(module) in _FRESH
        and len(module._forward_hooks) == 1
        and not nn.modules.module._global_forward_hooks
        and out._base is None
    )


def _layer(module: nn.Module) -> bool:
    """A layer LSUV calibrates as one unit: torch's linear, conv, bilinear and embedding
    layers, and the layers of other code bases weightinit knows as linear by class name
    (Hugging Face's ``Conv1D``, GPT-2's projections; routers)."""
    if isinstance(module, _LINEAR):
        return True
    if module._parameters.get("weight") is None:
        return False
    info = describe(module, "weight")
    return info is not None and info.kind == Kinds.LINEAR


def _feature_axis(module: nn.Module, y: torch.Tensor) -> int:
    """Output channels: dim 1 of a batched conv output (0 unbatched), else the last dim."""
    if isinstance(module, nn.modules.conv._ConvNd):
        return y.ndim - len(module.kernel_size) - 1
    return y.ndim - 1
