"""Whole models: ``plan`` (what each parameter gets, and why), ``init`` and ``apply``."""

from __future__ import annotations

import dataclasses
import fnmatch
import math
import warnings
from collections.abc import Iterable, Mapping
from typing import Any

import torch
from torch import nn

from weightinit.auto import (
    STABILIZING_SAMPLES,
    AutoOptions,
    batch_first,
    gaussian_like,
    propagate,
)
from weightinit.fills import capture
from weightinit.graph import Follower, followers, trace
from weightinit.knowledge import Roles, describe, owner_of, parametrized
from weightinit.lsuv import lsuv_plan, orthonormal_base, split_options
from weightinit.plan import SKIP, Plan, Row, row_fans, unwrap
from weightinit.registry import get
from weightinit.schemes import Choice, Options, Param, Survey, get_scheme, take_options

__all__ = ["apply", "init", "plan"]

RuleKey = str | type
RuleValue = str | tuple[str, Mapping[str, Any]]


def _rule_choice(value: RuleValue, key: RuleKey) -> Choice:
    label = key if isinstance(key, str) else key.__name__
    if isinstance(value, str):
        name, args = value, {}
    elif isinstance(value, tuple) and len(value) == 2 and isinstance(value[1], Mapping):
        name, args = value[0], dict(value[1])
    else:
        raise TypeError(
            f"rules[{label!r}]: a rule is an initializer name ('zeros') or a (name, kwargs) "
            f"pair (('normal', {{'std': 0.02}})), got {value!r}"
        )
    try:
        get(name)
    except ValueError as err:
        raise ValueError(f"rules[{label!r}]: {err}") from None
    return Choice(name, args, f"rule {label!r}")


def _match_rule(rules: Mapping[RuleKey, RuleValue], name: str, owner: nn.Module):
    for key, value in rules.items():
        if isinstance(key, str) and fnmatch.fnmatchcase(name, key):
            return _rule_choice(value, key)
        if isinstance(key, type) and isinstance(owner, key):
            return _rule_choice(value, key)
    return None


def _follower(table: dict[str, Follower], name: str) -> Follower | None:
    """The follower of the innermost traced module holding parameter ``name``."""
    path = name.split(".")[:-1]
    while path:
        found = table.get(".".join(path))
        if found is not None:
            return found
        path.pop()
    return table.get("")  # the model itself is the layer


def plan(
    model: nn.Module,
    scheme: str = "he",
    *,
    example_input: Any = None,
    rules: Mapping[RuleKey, RuleValue] | None = None,
    skip: Iterable[str] = (),
    strict: bool = False,
    include_frozen: bool = False,
    data: Any = None,
    seed: int | None = None,
    **options: Any,
) -> Plan:
    """What ``scheme`` would write to every parameter of ``model``, and why. Writes nothing.

    One row per parameter (tied parameters once): its role (weight, bias, recurrent weight,
    gate bias, embedding, norm scale/shift, ...), fans, initializer and arguments, resulting
    std, and the reason, e.g. "followed by tanh: gain 1.593". Activation-aware schemes ("he",
    "orthogonal") trace the model to find the activation after each layer: with torch.fx, or
    by running ``example_input`` through it (needed when the forward has Python control flow).

    Args:
        scheme: a name from :func:`weightinit.schemes`.
        rules: per-parameter overrides, by name glob (``"*.head.weight"``) or module type,
            to an initializer name or a ``(name, kwargs)`` pair; also how parameters of
            modules weightinit does not know get initialized.
        skip: name globs of parameters to leave untouched.
        strict: raise instead of warning when a parameter has no rule and no known module.
        include_frozen: also initialize parameters with ``requires_grad=False``.
        data: a batch for data-dependent schemes ("lsuv").
        seed: recorded as the default seed of :meth:`Plan.apply`; data-dependent schemes draw
            their pre-initialization with it (default 0) and their plans only apply with it.
        **options: scheme options, see :class:`weightinit.schemes.Options` (``distribution``,
            ``mode``, ``bias``, ``relu_bias``, ``forget_bias``, ``recurrent``,
            ``embedding_std``, ``norm_scale``).

    Example:
        >>> import torch, weightinit
        >>> net = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1))
        >>> p = weightinit.plan(net, "he")
        >>> p["0.weight"].reason
        'followed by tanh: gain 1.593; He: Var = gain^2 / fan'
    """
    if isinstance(scheme, str) and scheme.lower() == "lsuv":
        settings, options = split_options(options)
        orthonormal = settings.pop("orthonormal", True)
        if data is None:
            raise ValueError("plan: the 'lsuv' scheme calibrates on data: pass data=batch")
        common = {"rules": rules, "skip": skip, "strict": strict, "include_frozen": include_frozen}
        # LSUV sets every scale itself, so the pre-initialization needs no trace of the
        # activations, unless it is He (orthonormal=False) or relu_bias must find the ReLUs
        if not orthonormal:
            pre = "he"
        elif "relu_bias" in options:
            pre = "orthogonal"
        else:
            pre = "lecun"  # untraced; orthonormal_base makes its weights orthonormal
        try:  # a symbolic trace costs no forward pass
            base = plan(model, pre, example_input=example_input, **common, **options)
        except ValueError:
            if example_input is not None:
                raise
            base = plan(model, pre, example_input=data, **common, **options)
        base = orthonormal_base(base, model) if orthonormal else base
        result = lsuv_plan(model, base, data, seed=0 if seed is None else seed, **settings)[0]
        result.scheme = "lsuv"
        result.options["orthonormal"] = orthonormal
        return result
    is_auto = isinstance(scheme, str) and scheme.lower() == "auto"
    auto = AutoOptions.pop(options) if is_auto else None
    chosen = get_scheme("he" if is_auto else scheme)
    recorded = dict(options, **({"seed": seed} if seed is not None else {}))
    extra = take_options(chosen.extra, options, chosen.name) if chosen.extra else None
    opts = Options.build(options, chosen.extra)
    rules = dict(rules or {})
    for key, value in rules.items():
        if not isinstance(key, (str, type)):
            raise TypeError(f"rules: keys are name globs or module types, got {key!r}")
        _rule_choice(value, key)
    skip = [skip] if isinstance(skip, str) else list(skip)
    model = unwrap(model)
    table: dict[str, Follower] = {}
    method = ""
    graph = None
    if is_auto:
        example_input = example_input if example_input is not None else data
        if example_input is None:
            raise ValueError(
                "plan: the 'auto' scheme propagates the signal through an actual forward pass: "
                "pass example_input=batch (or data=batch)"
            )
    if chosen.needs_graph:
        graph = trace(model, example_input)
        table, method = followers(graph), graph.method

    rows: list[Row | None] = []
    pending: list[tuple[int, Param, str, tuple | None, Any]] = []  # rows the scheme chooses
    seen: dict[int, str] = {}
    unknown: list[str] = []
    settled: dict[str, tuple[float, float]] = {}  # plain name -> (mean, E[x^2]) not ours
    for name, param in model.named_parameters(remove_duplicate=False):
        found = parametrized(model, name)
        owner, leaf = (found[0], found[1]) if found else owner_of(model, name)
        as_plain = name.rsplit("parametrizations.", 1)[0] + leaf if found else name
        module = type(owner).__name__
        if id(param) in seen:
            rows.append(
                Row(name, module, "tied", SKIP, reason=f"tied to {seen[id(param)]}: skipped")
            )
            continue
        seen[id(param)] = name
        pattern = next((s for s in skip if fnmatch.fnmatchcase(name, s)), None)
        kept = None
        if pattern is not None:
            kept = Row(name, module, "-", SKIP, reason=f"matches skip {pattern!r}")
        elif not param.requires_grad and not include_frozen:
            kept = Row(name, module, "-", SKIP, reason="frozen (requires_grad=False)")
        if kept is not None:
            rows.append(kept)
            settled[as_plain] = _moments_of(param)
            continue
        info = describe(model, name)
        choice = _match_rule(rules, name, owner)
        if choice is None and info is None:
            unknown.append(name)
            rows.append(Row(name, module, "unknown", SKIP, reason="unknown module, no rule"))
            settled[as_plain] = _moments_of(param)
            continue
        layout = info.layout if info is not None and chosen.own_fans else None
        if choice is not None:
            row = _row(name, module, info.role if info else "custom", choice, param, layout, info)
            settled[as_plain] = (0.0, (row.std or 0.0) ** 2)  # zero-mean draws
            if choice.init in ("constant", "ones", "zeros"):
                value = {"ones": 1.0, "zeros": 0.0}.get(choice.init, choice.args.get("val"))
                settled[as_plain] = (float(value), float(value) ** 2)
            rows.append(row)
            continue
        follower = _follower(table, as_plain)
        pending.append((len(rows), Param(name, leaf, owner, param, info, follower), as_plain,
                        found, layout))  # fmt: skip
        rows.append(None)

    analysis = None
    if is_auto:
        analysis = propagate(model, graph, example_input, auto, opts, settled.get)
    survey = None
    if chosen.survey is not None:
        params = [entry[1] for entry in pending]
        survey = Survey(model, graph, opts, extra, params, example_input)
        overrides = chosen.survey(survey)
    for index, p, as_plain, found, layout in pending:
        name, leaf, owner, param, info = p.name, p.leaf, p.owner, p.tensor, p.info
        choice = None if analysis is None else analysis.choices.get(as_plain)
        if choice is None and survey is not None:
            choice = overrides.get(name)
        if choice is None:
            choice = chosen.choose(p, opts)
            if analysis is not None and info.role in (Roles.WEIGHT, Roles.RECURRENT):
                reason = f"not reached by the traced forward pass: {choice.reason}"
                choice = Choice(choice.init, choice.args, reason)
        if found and _is_weight_norm_scale(owner, leaf, found[2]):
            # g of weight_norm: the norm of each output's weights that the scheme's own
            # weight would have (root mean square), so that g v / |v| starts at that scale
            v = owner.parametrizations[leaf].original1
            draw = capture(get(choice.init), v.shape, v.dtype, choice.args, layout)
            value = (draw.std if draw else 1.0) * math.sqrt(v.numel() / max(param.numel(), 1))
            reason = f"weight_norm g: the RMS norm of each output's weights under {choice.init}"
            choice, layout = Choice("constant", {"val": value}, reason), None
        rows[index] = _row(name, type(owner).__name__, info.role, choice, param, layout, info)
    if unknown:
        message = (
            f"weightinit does not know the module of {len(unknown)} parameter(s) and no rule "
            f"covers them, so they are left as they are: {', '.join(unknown)}. Add rules="
            "{'name_glob': 'initializer'} for them"
        )
        if strict:
            raise ValueError(message)
        warnings.warn(message, stacklevel=2)
    if not is_auto:
        notes = survey.notes if survey is not None else {}
        return Plan(chosen.name, rows, options=recorded, graph=method, notes=notes)
    recorded.update(dataclasses.asdict(auto))
    made = Plan("auto", rows, options=recorded, graph=method)
    made.predictions = [dataclasses.asdict(p) for p in analysis.predictions]
    if data is None and not auto.stabilize:
        return made
    # one calibration sweep: on the data, or on a Gaussian stand-in for the input (data-free)
    samples = STABILIZING_SAMPLES if batch_first(model) else None
    batch = data if data is not None else gaussian_like(example_input, auto, samples)
    seed = 0 if seed is None else seed
    refined = lsuv_plan(model, made, batch, seed=seed, max_iter=1, target_var=auto.target_var)[0]
    refined.predictions = made.predictions
    return refined


def _moments_of(param: torch.Tensor) -> tuple[float, float]:
    """(mean, E[x^2]) of a parameter's current values (meta tensors: unknown, taken as 0, 1)."""
    if param.is_meta or not param.numel():
        return 0.0, 1.0
    t = param.detach().double()
    return float(t.mean()), float((t * t).mean())


def _is_weight_norm_scale(owner: nn.Module, leaf: str, index: str) -> bool:
    chain = owner.parametrizations[leaf]
    return index == "0" and len(chain) == 1 and type(chain[0]).__name__ == "_WeightNorm"


def _row(name, module, role, choice: Choice, param, layout, info) -> Row:
    fan_in, fan_out = row_fans(param, layout)
    draw = capture(get(choice.init), param.shape, param.dtype, choice.args, layout)
    std, bound = (draw.std, draw.bound) if draw is not None else (None, None)
    padding = [info.padding_idx] if info is not None and info.padding_idx is not None else []
    reason = choice.reason + ("; padding row stays 0" if padding else "")
    return Row(
        name,
        module,
        role,
        choice.init,
        dict(choice.args),
        reason,
        fan_in,
        fan_out,
        std,
        bound,
        layout,
        padding,
    )


def init(
    model: nn.Module,
    scheme: str = "he",
    *,
    seed: int | None = None,
    generator: torch.Generator | None = None,
    atomic: bool = True,
    **kw: Any,
) -> Plan:
    """Plan and apply in one call; returns the plan (print it to see what was done).

    ``seed``, ``generator`` and ``atomic`` go to :meth:`Plan.apply`, the rest to :func:`plan`.

    Example:
        >>> import torch, weightinit
        >>> net = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 1))
        >>> p = weightinit.init(net, "he", seed=0)
        >>> p["0.weight"].init, round(p["0.weight"].std, 4)
        ('variance_scaling', 0.5)
    """
    if seed is not None and generator is not None:
        raise ValueError("init: pass `seed` or `generator`, not both")
    made = plan(model, scheme, seed=seed, **kw)
    return made.apply(model, generator=generator, atomic=atomic)


def apply(model: nn.Module, **kw: Any) -> Plan:
    """The one-call entry point: the best scheme weightinit has for what it is given.

    - With ``example_input=`` (or ``data=``): "auto", the signal propagated through the traced
      model and every weighted layer set to unit output variance, stabilized with one sweep
      (on ``data`` when given, else on Gaussian input with the input's statistics).
    - With neither: activation-aware "he" (each weight scaled by the gain of the activation
      after its layer, recurrent weights orthogonal, LSTM forget bias 1), which needs no input.

    Takes the arguments of :func:`plan` and :func:`init`; ``scheme=`` overrides the choice.

    Example:
        >>> import torch, weightinit
        >>> net = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.SELU(), torch.nn.Linear(16, 1))
        >>> weightinit.apply(net, seed=0)["0.weight"].reason
        'followed by selu: gain 1; He: Var = gain^2 / fan'
        >>> x = 3 * torch.randn(256, 8) + 1
        >>> weightinit.apply(net, example_input=x, seed=0).scheme
        'auto'
    """
    given = kw.get("example_input") is not None or kw.get("data") is not None
    return init(model, kw.pop("scheme", "auto" if given else "he"), **kw)
