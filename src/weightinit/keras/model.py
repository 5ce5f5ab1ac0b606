"""Whole Keras 3 models under every scheme, into the same :class:`~weightinit.Plan` as torch
models, written all or nothing; and ``diagnose``.

The classic schemes (:data:`CLASSIC`) read the Keras layers themselves
(:mod:`weightinit.frontends.keras.settle`), for every model, subclassed ones too. Every other
scheme runs or reads the model: a Sequential, Functional or subclassed model (its ``call``
traced on a symbolic input) is planned through its torch
twin (:mod:`weightinit.frontends.keras.twin`) by the torch planner, the rows renamed after the
Keras weights. Values are drawn on the CPU (torch, the same generator and keys as for a torch
model) and assigned to the Keras variables once all exist
(:mod:`weightinit.frontends.keras.write`), on any backend.
"""

from __future__ import annotations

import fnmatch
import warnings
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import keras
import numpy as np
import torch

from weightinit._checks import check_seed
from weightinit.diagnostics.report import Comparison, Report
from weightinit.diagnostics.report import diagnose as run_diagnose
from weightinit.frontends.keras.settle import keras_params, weight_name
from weightinit.frontends.keras.twin import FROZEN, KerasTwin, to_numpy
from weightinit.frontends.keras.write import TWIN_NOTE, values
from weightinit.frontends.torch.settle import RuleKey, RuleValue, check_rules, match_rule, row
from weightinit.initializers.counter import RNG_VERSION
from weightinit.planner import plan as plan_torch
from weightinit.plans.plan import SKIP, Plan, Row, check_rng
from weightinit.scheme.registry import get_scheme

__all__ = ["CLASSIC", "apply", "compare", "diagnose", "init", "plan", "write"]

#: the schemes planned on the Keras layers themselves; the others run the model's torch twin
CLASSIC = ("he", "orthogonal", "lecun", "glorot", "keras", "flax", "random_walk")


def plan(
    model: Any,
    scheme: str = "he",
    *,
    example_input: Any = None,
    data: Any = None,
    seed: int | None = None,
    rng: str | None = None,
    rules: Mapping[RuleKey, RuleValue] | None = None,
    skip: Iterable[str] = (),
    include_frozen: bool = False,
    **options: Any,
) -> Plan:
    """What ``scheme`` would write to every weight of a built Keras ``model``, and why: the
    same :class:`~weightinit.Plan` as for a torch model (table, JSON). Writes nothing.

    The classic schemes (:data:`CLASSIC`: "he", "orthogonal", "lecun", ...) read the Keras
    layers directly, for every model (Sequential, Functional, subclassed): each kernel gets the
    fans of its layout (Dense, grouped, depthwise and transposed convolutions, LSTM/GRU gates
    per gate, attention kernels, embeddings; see :mod:`.layouts`) and the gain of the activation
    that follows its layer (its own, or the next activation layer's): "he" before a ReLU is
    N(0, 2 / fan_in) (He et al. 2015), before tanh the gain 5/3's square.

    Every other scheme ("auto", "lsuv", "critical", "selu", "fixup", the Transformer presets,
    ...) runs or reads the model, and plans its torch twin
    (:class:`~weightinit.frontends.keras.twin.KerasTwin`; a subclassed model's graph traced
    from its ``call``) with the torch front end: its rows are named after the Keras weights,
    their shapes in torch's layout. "auto" needs no input: a built model knows
    its input's shape, and a N(0, 1) batch of it stands in (``example_input=`` overrides it).
    "lsuv" calibrates on ``data``, a batch the model takes.

    The classic schemes read no input: ``example_input`` and ``data`` are not used there.
    ``rules`` (name globs or Keras layer classes -> initializer) and ``skip`` (name globs)
    name weights as the plan does (``dense.kernel``). ``seed=None`` takes a seed from Keras's
    global seed generator (``keras.utils.set_random_seed`` fixes it), when the values are drawn.

    Example::

        >>> import keras
        >>> from weightinit import keras as wk
        >>> net = keras.Sequential([keras.Input((784,)),
        ...                         keras.layers.Dense(64, activation="relu", name="hidden"),
        ...                         keras.layers.Dense(10, activation="softmax", name="out")])
        >>> p = wk.plan(net, "he")
        >>> p["hidden.kernel"].reason
        'followed by relu: gain 1.414; He: Var = gain^2 / fan'
    """
    _check_model(model, "plan")
    chosen = get_scheme(scheme)
    if not getattr(model, "built", False):
        raise ValueError(
            f"plan: the Keras model {getattr(model, 'name', '')!r} is not built, so its weights do "
            "not exist yet; build it first (keras.Input as its first layer, model.build(shape), "
            "or call it on a batch)"
        )
    seed = check_seed(seed, "plan")
    rules = check_rules(rules)
    skip = [skip] if isinstance(skip, str) else list(skip)
    if chosen.name not in CLASSIC:  # calibration draws now: the seed is fixed now
        seed = _keras_seed() if seed is None else seed
        return _twin_plan(
            model, chosen.name, example_input=example_input, data=data, seed=seed, rng=rng,
            rules=rules, skip=skip, include_frozen=include_frozen, **options,
        )  # fmt: skip
    rng = RNG_VERSION if rng is None else rng
    check_rng(rng, chosen.name, chosen.rng, "plan")
    opts, _, recorded = chosen.take(options, seed)
    known, unknown = keras_params(model, include_frozen)
    if unknown:
        warnings.warn(
            f"plan: weightinit does not know the layers of {len(unknown)} Keras weight(s), so "
            f"they keep what they hold: {', '.join(unknown[:5])}; name them in rules= to "
            "initialize them",
            stacklevel=2,
        )
    unmatched = [g for g in skip if not any(fnmatch.fnmatchcase(p.name, g) for p, *_ in known)]
    if unmatched:
        warnings.warn(f"plan: skip pattern(s) {unmatched} match no weight", stacklevel=2)
    rows = []
    for param, _, layer in known:
        pattern = next((g for g in skip if fnmatch.fnmatchcase(param.name, g)), None)
        if pattern is not None:
            rows.append(Row(param.name, param.module, param.role, SKIP,
                            reason=f"skip= {pattern!r}", shape=list(param.shape)))  # fmt: skip
            continue
        choice = match_rule(rules, param.name, layer) or chosen.choose(param, opts)
        meta = torch.empty(param.shape, device="meta")
        made = row(param.name, type(layer).__name__, param.role, choice, meta,
                   param.info.layout, param.info)  # fmt: skip
        made.dtype = "float32"  # drawn in float32 on the CPU, assigned in the variable's dtype
        rows.append(made)
    return Plan(chosen.name, rows, options=recorded, graph="keras", rng=rng)


def write(plan: Plan, model: Any, seed: int | None = None) -> Plan:
    """Write ``plan`` into the Keras ``model``, all or nothing: every value is drawn first, on
    the CPU, by :meth:`Plan.apply` (the same checks and generator as for torch models), on a
    torch mirror of the weights (classic plans) or on the model's torch twin (the other
    schemes' plans), then assigned. ``seed=None`` takes the plan's seed, and without one a seed
    from Keras's global seed generator (``keras.utils.set_random_seed`` fixes it)."""
    _check_model(model, "write")
    if not isinstance(plan, Plan):
        raise TypeError(f"write: `plan` must be a weightinit.Plan, got {type(plan).__name__}")
    if seed is None and plan.options.get("seed") is None:
        seed = _keras_seed()
    for variable, value in values(plan, model, seed):
        variable.assign(keras.ops.convert_to_tensor(value, dtype=variable.dtype))
    return plan


def init(model: Any, scheme: str = "he", *, seed: int | None = None, **kw: Any) -> Plan:
    """Plan and write in one call (see :func:`plan` and :func:`write`); returns the plan.
    The same as :func:`apply`, with "he" as the default scheme, as ``weightinit.init``.

    Example::

        >>> import keras
        >>> from weightinit import keras as wk
        >>> net = keras.Sequential([keras.Input((784,)),
        ...                         keras.layers.Dense(64, activation="selu", name="hidden"),
        ...                         keras.layers.Dense(10, activation="softmax", name="out")])
        >>> wk.init(net, "lecun", seed=0)["hidden.kernel"].std == 1 / 28
        True
    """
    return write(plan(model, scheme, seed=seed, **kw), model, seed)


def apply(
    model: Any,
    scheme: str = "auto",
    *,
    example_input: Any = None,
    data: Any = None,
    seed: int | None = None,
    rules: Mapping[RuleKey, RuleValue] | None = None,
    skip: Iterable[str] = (),
    **options: Any,
) -> Plan:
    """Initialize a whole built Keras ``model`` with ``scheme`` and return the plan; the
    model changes only if every weight can be written.

    The default, "auto", is data-free, in the spirit of AutoInit (Bingham & Miikkulainen 2023):
    a N(0, 1) stand-in of the model's input is carried through its graph, each layer's output
    mean and variance tracked analytically (measured where no map is known), and each weight
    scaled so that the signal keeps unit variance: Var(W) = 1 / (fan_in E[x^2]) in front of an
    input of second moment E[x^2]. See :func:`plan` for the schemes and arguments.

    Example::

        >>> import keras
        >>> import weightinit.keras as autoinit
        >>> model = keras.Sequential([keras.Input((784,)),
        ...                           keras.layers.Dense(64, activation="relu", name="hidden"),
        ...                           keras.layers.Dense(10, activation="softmax", name="out")])
        >>> autoinit.apply(model).scheme
        'auto'
    """
    made = plan(model, scheme, example_input=example_input, data=data, seed=seed, rules=rules,
                skip=skip, **options)  # fmt: skip
    return write(made, model, seed)


def diagnose(model: Any, inputs: Any, *, plan: Plan | None = None, **kw: Any) -> Report:
    """Measure signal propagation through a Keras graph ``model`` on ``inputs`` and change
    nothing: the same :class:`~weightinit.Report` as :func:`weightinit.diagnose` (each layer's
    output std, dead units, gradient norms, the input-output Jacobian's singular values; a
    table, a plot, HTML), measured on the model's torch twin, rows named after the Keras layers.
    ``plan``: an "auto" plan of the model, whose predictions are shown next to the measurements.

    Example::

        >>> import keras, numpy as np
        >>> from weightinit import keras as wk
        >>> net = keras.Sequential([keras.Input((32,))] + [
        ...     keras.layers.Dense(32, activation="tanh", name=f"d{i}") for i in range(10)])
        >>> report = wk.diagnose(net, np.random.default_rng(0).normal(size=(64, 32)))
        >>> report.verdict in ("healthy", "vanishing", "exploding")
        True
    """
    _check_model(model, "diagnose")
    twin = KerasTwin(model, "diagnose")
    report = run_diagnose(twin, _torch_batch(inputs, "inputs"), plan=plan, **kw)
    for layer in report.layers:  # Dense, not the twin's Linear
        layer.module = twin.kinds.get(layer.name, layer.module)
    return report


def compare(
    model_factory: Callable[[], Any], schemes: list[str], inputs: Any, *, seed: int = 0, **kw: Any
) -> Comparison:
    """Build the Keras model once per scheme, initialize it (``seed``) and diagnose it on
    ``inputs`` (also "lsuv"'s data and "auto"'s example input): the same
    :class:`~weightinit.Comparison` as :func:`weightinit.compare` (table, plot, HTML).

    Example::

        >>> import keras, numpy as np
        >>> from weightinit import keras as wk
        >>> def factory():
        ...     return keras.Sequential([keras.Input((16,))] + [
        ...         keras.layers.Dense(16, activation="tanh", name=f"d{i}") for i in range(8)])
        >>> x = np.random.default_rng(0).normal(size=(64, 16))
        >>> result = wk.compare(factory, ["glorot", "lsuv"], x)
        >>> sorted(result)
        ['glorot', 'lsuv']
    """
    result = Comparison()
    for scheme in schemes:
        model = model_factory()
        given = {"data": inputs} if get_scheme(scheme).name == "lsuv" else {"example_input": inputs}
        apply(model, scheme, seed=seed, **given)
        result[scheme] = diagnose(model, inputs, seed=seed, **kw)
    return result


def _twin_plan(model: Any, scheme: str, *, example_input: Any, data: Any, seed: int | None,
               rng: str | None, rules: dict, skip: list[str], include_frozen: bool,
               **options: Any) -> Plan:  # fmt: skip
    """``scheme`` planned on the model's torch twin, rows renamed after the Keras weights."""
    twin = KerasTwin(model, "plan")
    names = {t: weight_name(model, w.variable) for t, w in twin.weights.items()}
    layers = {t: w.layer for t, w in twin.weights.items()}
    twin_rules, given = {}, {}
    for key, value in rules.items():
        for t, k in names.items():
            if (isinstance(key, str) and fnmatch.fnmatchcase(k, key)) or (
                isinstance(key, type) and isinstance(layers[t], key)
            ):
                twin_rules.setdefault(t, value)
                given.setdefault(t, key if isinstance(key, str) else key.__name__)
    twin_skip = [t for t, k in names.items() if any(fnmatch.fnmatchcase(k, g) for g in skip)]
    twin_skip += [n for n, _ in twin.named_parameters() if n.rsplit(".", 1)[-1] in FROZEN]
    unmatched = [g for g in skip if not any(fnmatch.fnmatchcase(k, g) for k in names.values())]
    if unmatched:
        warnings.warn(f"plan: skip pattern(s) {unmatched} match no weight", stacklevel=3)
    batch = _torch_batch(data, "data") if data is not None else None
    if example_input is not None:
        example = _torch_batch(example_input, "example_input")
    else:
        example = _stand_in(twin, batch)
    made = plan_torch(
        twin, scheme, example_input=example, data=batch, seed=seed, rng=rng, rules=twin_rules,
        skip=twin_skip, include_frozen=include_frozen, **options,
    )  # fmt: skip
    if made.pending_calibration:
        raise ValueError(
            f"plan: scheme {scheme!r} calibrates on data: pass data= a batch the Keras model "
            "takes (a numpy array or tensor; a tuple for several inputs)"
        )
    made.rows = [r for r in made.rows if r.name in names]  # not the twin's own (LSTM bias_hh)
    for r in made.rows:
        if r.name in given:  # the rule as the user wrote it
            r.reason = r.reason.replace(f"rule {r.name!r}", f"rule {given[r.name]!r}")
        if r.name in names:
            r.name, r.module = names[r.name], type(layers[r.name]).__name__
    made.buffers = {names.get(k, k): v for k, v in made.buffers.items()}
    made.notes["keras"] = TWIN_NOTE
    return made


def _check_model(model: Any, where: str) -> None:
    if not isinstance(model, keras.Model):
        raise TypeError(
            f"{where}: `model` must be a Keras model (keras.Sequential, keras.Model or a "
            f"subclass), got {type(model).__name__}; for torch models use weightinit.{where}"
        )


def _keras_seed() -> int:
    """A seed from Keras's global seed generator (``keras.utils.set_random_seed`` fixes it)."""
    return int(to_numpy(keras.random.randint((), 0, 2**31 - 1)))


def _torch_batch(batch: Any, what: str) -> Any:
    """A batch for the twin: Keras, numpy or backend tensors as CPU torch tensors (floats as
    float32), in lists and tuples (several inputs) and dicts (keyword arguments)."""
    if isinstance(batch, (list, tuple)):
        return tuple(_torch_batch(b, what) for b in batch)
    if isinstance(batch, dict):
        return {k: _torch_batch(v, what) for k, v in batch.items()}
    try:
        tensor = torch.from_numpy(np.ascontiguousarray(to_numpy(batch)))
    except Exception as err:  # any backend's conversion error
        raise TypeError(
            f"`{what}` must be an array or tensor the model takes (numpy, Keras or backend "
            f"tensors; a tuple for several inputs), got {type(batch).__name__}: {err}"
        ) from err
    return tensor.float() if tensor.is_floating_point() else tensor


def _stand_in(twin: KerasTwin, data: Any) -> Any:
    """N(0, 1) batches of the model's input shapes (seeded: the same plan every time); the
    data itself where an input is not float or has a free size."""
    generator = torch.Generator().manual_seed(0)
    batch = []
    for shape, dtype in twin.input_specs:
        dims = shape[1:]
        if None in dims or not dtype.startswith(("float", "bfloat")):
            if data is not None:
                return data
            raise ValueError(
                f"plan: the model's input has shape {shape} and dtype {dtype}, so no N(0, 1) "
                "batch can stand in for it; pass example_input= (or data=) a batch the model takes"
            )
        batch.append(torch.randn((STAND_IN_BATCH, *dims), generator=generator))
    return batch[0] if len(batch) == 1 else tuple(batch)


#: the stand-in's batch size ("auto" tiles it further for its stabilizing sweep)
STAND_IN_BATCH = 64
