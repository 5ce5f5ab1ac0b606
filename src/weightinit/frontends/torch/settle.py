"""The shared stages around a scheme's choices: *settle* (which parameters are not the scheme's
to choose: user rules, ``skip=``, frozen, tied and unknown ones) and the row every choice
becomes (fans, std and bound from the initializer's :class:`~weightinit.initializers.fills.Draw`,
the padding row, weight_norm's g).
"""

from __future__ import annotations

import difflib
import fnmatch
import inspect
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import torch
from torch import nn

from weightinit.initializers.catalog import get
from weightinit.initializers.fills import capture
from weightinit.initializers.layout import Layout
from weightinit.plans.plan import SKIP, Row, dtype_name, row_fans, tied_row
from weightinit.scheme.protocol import Choice, Param
from weightinit.understanding.graph import Follower
from weightinit.understanding.knowledge import (
    ParamInfo,
    describe,
    owner_of,
    parametrized,
    read_back_embeddings,
)

__all__ = [
    "Pending",
    "RuleKey",
    "RuleValue",
    "Settled",
    "check_rules",
    "norm_scale",
    "row",
    "settle",
]

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


def check_rules(rules: Mapping[RuleKey, RuleValue] | None) -> dict[RuleKey, RuleValue]:
    """``rules=`` validated: keys are name globs or module types, values initializers."""
    rules = dict(rules or {})
    for key, value in rules.items():
        if not isinstance(key, (str, type)):
            raise TypeError(f"rules: keys are name globs or module types, got {key!r}")
        _rule_choice(value, key)
    return rules


def match_rule(rules: Mapping[RuleKey, RuleValue], name: str, owner: nn.Module):
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


class Pending(NamedTuple):
    """A parameter the scheme chooses for: its row's index, description, tensor, the layout
    its row uses (None: torch's fans) and its module's class name."""

    index: int
    param: Param
    tensor: torch.Tensor
    layout: Layout | None
    module: str


@dataclass
class Settled:
    """The outcome of *settle*: the rows so far (None where the scheme chooses), the
    parameters it chooses for (with their row index and tensor), the moments of the values
    it does not choose (plain name -> (mean, E[x^2])), parameters nobody knows, and the
    ``skip=`` globs: those that matched no parameter name, and how many parameters the
    others left out."""

    rows: list[Row | None] = field(default_factory=list)
    pending: list[Pending] = field(default_factory=list)
    moments: dict[str, tuple[float, float]] = field(default_factory=dict)
    unknown: list[str] = field(default_factory=list)
    skip_unmatched: list[str] = field(default_factory=list)
    skipped: int = 0

    @property
    def params(self) -> list[Param]:
        return [pending.param for pending in self.pending]


def settle(
    model: nn.Module,
    *,
    rules: Mapping[RuleKey, RuleValue],
    skip: Iterable[str],
    include_frozen: bool,
    followers: dict[str, Follower],
    own_fans: bool,
    loaded: Loaded | None = None,
) -> Settled:
    """The shared first stage of every scheme: tied parameters once, then parameters a
    checkpoint provided (``loaded``), ``skip=`` globs, frozen parameters, parameters of
    unknown modules with no rule, and user rules get their rows; every other parameter is
    described for the scheme to choose."""
    out = Settled()
    seen: dict[int, str] = {}
    named = list(model.named_parameters(remove_duplicate=False))
    out.skip_unmatched = [s for s in skip if not any(fnmatch.fnmatchcase(n, s) for n, _ in named)]
    names: dict[int, list[str]] = {}  # every name of each tensor, tied ones have several
    for name, param in named:
        names.setdefault(id(param), []).append(name)
    provided = _provided(model, names, loaded) if loaded is not None else set()
    heads = read_back_embeddings(model)
    for name, param in named:
        owner, leaf, plain = _where(model, name)
        module = type(owner).__name__
        if id(param) in seen:
            out.rows.append(tied_row(name, module, seen[id(param)]))
            continue
        seen[id(param)] = name
        pattern = next((s for s in skip if fnmatch.fnmatchcase(name, s)), None)
        kept = None
        if id(param) in provided:
            kept = Row(name, module, "-", SKIP, reason=f"loaded: kept ({loaded.source})")
        elif pattern is not None:
            kept = Row(name, module, "-", SKIP, reason=f"matches skip {pattern!r}")
            out.skipped += 1
        elif not param.requires_grad and not include_frozen:
            kept = Row(name, module, "-", SKIP, reason="frozen (requires_grad=False)")
        if kept is not None:
            out.rows.append(kept)
            out.moments[plain] = _moments_of(param)
            continue
        info = describe(model, name)
        choice = match_rule(rules, name, owner)
        if choice is None and info is None:
            # a tied parameter whose first name's module is unknown (BERT's
            # `cls.predictions.bias`, also `cls.predictions.decoder.bias`): described from
            # the first of its other names whose module is known; the row keeps this name
            other = next((n for n in names[id(param)][1:] if describe(model, n)), None)
            if other is not None:
                info = describe(model, other)
                owner, leaf, plain = _where(model, other)
                module = type(owner).__name__
        if choice is None and info is None:
            out.unknown.append(name)
            out.rows.append(Row(name, module, "unknown", SKIP, reason="unknown module, no rule"))
            out.moments[plain] = _moments_of(param)
            continue
        layout = info.layout if info is not None and own_fans else None
        if choice is not None:
            role = info.role if info else "custom"
            try:
                made = row(name, module, role, choice, param, layout, info)
            except (TypeError, ValueError) as err:
                raise _rule_error(err, choice, name) from None
            out.moments[plain] = (0.0, (made.std or 0.0) ** 2)  # zero-mean draws
            if choice.init in ("constant", "ones", "zeros"):
                value = {"ones": 1.0, "zeros": 0.0}.get(choice.init, choice.args.get("val"))
                out.moments[plain] = (float(value), float(value) ** 2)
            out.rows.append(made)
            continue
        shape, dtype = info.norm_of or (tuple(param.shape), param.dtype)
        if name in heads:
            info = info._replace(head=heads[name])
        described = Param(
            name=name,
            plain=plain,
            leaf=leaf,
            module=plain.rsplit(".", 1)[0] if "." in plain else "",
            kind=info.kind,
            shape=shape,
            dtype=dtype_name(dtype),
            info=info,
            follower=_follower(followers, plain),
        )
        out.pending.append(Pending(len(out.rows), described, param, layout, module))
        out.rows.append(None)
    return out


def _where(model: nn.Module, name: str) -> tuple[nn.Module, str, str]:
    """The module that holds parameter ``name``, its attribute there, and the plain name of
    the weight it stands for (behind a parametrization, the parametrized weight's name)."""
    found = parametrized(model, name)
    if not found:
        owner, leaf = owner_of(model, name)
        return owner, leaf, name
    return found[0], found[1], name.rsplit("parametrizations.", 1)[0] + found[1]


class Loaded(NamedTuple):
    """What a checkpoint provided: the names it left missing (``missing=True``: from
    ``load_state_dict(..., strict=False)`` or Hugging Face's loading info), or the names it
    holds (a state dict); ``source`` words it for the plan's rows."""

    keys: frozenset[str]
    missing: bool
    source: str


def _provided(model: nn.Module, names: dict[int, list[str]], loaded: Loaded) -> set[int]:
    """The ids of the parameters the checkpoint provided. A tied tensor is provided when any
    of its names is. Missing keys that name no parameter or buffer, or a state dict that
    names no parameter, are errors: the checkpoint was made for another model (or under a
    wrapper's prefix)."""
    params = {n for tied in names.values() for n in tied}
    if loaded.missing:
        known = params | {n for n, _ in model.named_buffers(remove_duplicate=False)}
        strange = sorted(loaded.keys - known)
        if strange:
            close = difflib.get_close_matches(strange[0], sorted(params), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ValueError(
                f"plan: `missing_keys` names {strange[0]!r}, which is no parameter or buffer of "
                f"the model{hint} Pass the missing keys of a checkpoint loaded into this model "
                "(the names load_state_dict reported)"
            )
        return {i for i, tied in names.items() if not all(n in loaded.keys for n in tied)}
    if params and not params & loaded.keys:
        raise ValueError(
            "plan: `loaded` holds none of the model's parameter names (it has e.g. "
            f"{sorted(loaded.keys)[:2]}, the model {sorted(params)[:2]}); pass the state dict "
            "loaded into this model, with the same prefixes"
        )
    return {i for i, tied in names.items() if any(n in loaded.keys for n in tied)}


def _rule_error(err: Exception, choice: Choice, name: str) -> Exception:
    """``err`` from a user rule's arguments, checked on a meta tensor of the parameter's
    shape, as the same exception type naming the rule, the parameter and what the
    initializer takes."""
    init = get(choice.init)
    takes = [  # after the tensor; every initializer also takes layout= and generator=
        str(p.replace(annotation=inspect.Parameter.empty))
        for p in list(inspect.signature(init).parameters.values())[1:]
        if p.name not in ("layout", "generator")
    ]
    return type(err)(
        f"plan: {choice.reason} for parameter {name!r}: {err}; {init.__name__} takes "
        f"{', '.join(takes) or 'no arguments'}"
    )


def _moments_of(param: torch.Tensor) -> tuple[float, float]:
    """(mean, E[x^2]) of a parameter's current values (meta tensors: unknown, taken as 0, 1)."""
    if param.is_meta or not param.numel():
        return 0.0, 1.0
    t = param.detach().double()
    return float(t.mean()), float((t * t).mean())


def row(
    name: str,
    module: str,
    role: str,
    choice: Choice,
    param: torch.Tensor,
    layout: Layout | None,
    info: ParamInfo | None,
) -> Row:
    """The plan row of ``choice`` for ``param``: fans, std and bound from the initializer's
    draw, the padding row kept at 0."""
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
        shape=list(param.shape),
        dtype=dtype_name(param.dtype),
    )


def norm_scale(choice: Choice, info: ParamInfo, param: torch.Tensor, layout: Layout | None):
    """A scheme's choice for weight_norm's g (``info.norm_of``), made for the weight it
    normalizes, as (choice, layout) for g itself: the root mean square norm of each output's
    weights under the choice, so that g v / |v| starts at the scale the scheme chose."""
    shape, dtype = info.norm_of
    draw = capture(get(choice.init), shape, dtype, choice.args, layout)
    value = (draw.std if draw else 1.0) * math.sqrt(math.prod(shape) / max(param.numel(), 1))
    reason = f"weight_norm g: the RMS norm of each output's weights under {choice.init}"
    return Choice("constant", {"val": value}, reason), None
