"""Whole models: ``plan`` runs a scheme's stages (settle, survey, choose, calibrate) and names no
scheme; ``calibrate`` runs the last stage later, on a materialized model; ``init`` and ``apply``
plan and write in one call."""

from __future__ import annotations

import difflib
import warnings
from collections.abc import Iterable, Mapping
from typing import Any

import torch
from torch import nn

from weightinit._checks import check_seed
from weightinit.frontends import frontend_for
from weightinit.frontends.torch.settle import Loaded, RuleKey, RuleValue, Settled
from weightinit.initializers.counter import RNG_VERSION
from weightinit.plans.plan import Plan, check_rng
from weightinit.scheme.protocol import DATA, EXAMPLE_INPUT, GRAPH, Choice, Param, Scheme, Survey
from weightinit.scheme.registry import get_scheme

__all__ = ["apply", "calibrate", "init", "plan"]


def plan(
    model: nn.Module,
    scheme: str | Scheme = "he",
    *,
    example_input: Any = None,
    rules: Mapping[RuleKey, RuleValue] | None = None,
    skip: Iterable[str] = (),
    strict: bool = False,
    include_frozen: bool = False,
    data: Any = None,
    seed: int | None = None,
    missing_keys: Any = None,
    loaded: Mapping[str, Any] | None = None,
    rng: str | None = None,
    **options: Any,
) -> Plan:
    """What ``scheme`` would write to every parameter of ``model``, and why. Writes nothing.

    One row per parameter (tied parameters once): its role (weight, bias, recurrent weight,
    gate bias, embedding, norm scale/shift, ...), fans, initializer and arguments, resulting
    std, and the reason, e.g. "followed by tanh: gain 1.593". Activation-aware schemes ("he",
    "orthogonal") trace the model to find the activation after each layer: with torch.fx, or
    by running ``example_input`` (else ``data``) through it (needed when the forward has
    Python control flow); given neither, a model fx cannot trace that carries its own
    ``dummy_inputs`` (Hugging Face models do) is run on those, as ``plan.notes`` says.

    Every scheme runs the same stages (:mod:`weightinit.scheme.protocol`): settle (rules,
    skip, frozen, tied, unknown), survey (the whole model), choose (each parameter), calibrate
    (on data). A scheme that calibrates on data ("lsuv") and gets none gives its analytic
    plan, which :func:`calibrate` completes once the model is materialized.

    Args:
        scheme: a name from :func:`weightinit.schemes` (any case, aliases), or a
            :class:`~weightinit.Scheme`.
        rules: per-parameter overrides, by name glob (``"*.head.weight"``) or module type,
            to an initializer name or a ``(name, kwargs)`` pair; also how parameters of
            modules weightinit does not know get initialized.
        skip: name globs of parameters to leave untouched (``fnmatch``, against the names
            of ``model.named_parameters()``); a glob that matches no parameter is warned
            about, with the names close to it.
        strict: raise instead of warning when a parameter has no rule and no known module.
        include_frozen: also initialize parameters with ``requires_grad=False``.
        data: a batch for data-dependent schemes ("lsuv", and "auto"'s sweep).
        missing_keys: initialize only what a checkpoint did not provide: the missing keys
            that ``model.load_state_dict(state, strict=False)`` returns (its result, or the
            list), or Hugging Face's ``output_loading_info=True`` dict; every other parameter
            gets a "loaded: kept" row. A tied tensor is kept when any of its names was loaded.
            Hugging Face's ``_is_hf_initialized`` markers are not read: transformers 5 sets
            them on every module of a model just built from a config.
        loaded: the same from the other side: the state dict that was loaded (its keys).
        seed: an int in [0, 2**64) (numpy integers too), recorded as the default seed of
            :meth:`Plan.apply`; data-dependent schemes draw their pre-initialization with it
            (default 0) and their plans only apply with it.
        rng: the generator a seeded :meth:`Plan.apply` draws from, recorded in the plan (and
            its JSON): ``"philox-v1"`` (the default), the keyed counter-based generator whose
            values depend only on (seed, parameter name, element index), the same on any
            number of ranks and in any registration order; or ``"torch"``, torch's generator
            seeded once and drawn row after row (what ``seed=`` meant before). The "torch"
            scheme always records "torch".
        **options: scheme options, see :class:`weightinit.scheme.protocol.Options`
            (``distribution``, ``mode``, ``bias``, ``relu_bias``, ``forget_bias``,
            ``recurrent``, ``embedding_std``, ``norm_scale``) and each scheme's own.

    Example:
        >>> import torch, weightinit
        >>> net = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1))
        >>> p = weightinit.plan(net, "he")
        >>> p["0.weight"].reason
        'followed by tanh: gain 1.593; He: Var = gain^2 / fan'
    """
    chosen = get_scheme(scheme)
    frontend = frontend_for(model, "plan")
    seed = check_seed(seed, "plan")
    if rng is None:
        rng = chosen.rng or RNG_VERSION
    check_rng(rng, chosen.name, chosen.rng, "plan")
    opts, extra, recorded = chosen.take(options, seed)
    rules = frontend.check_rules(rules)
    skip = _check_skip(skip)
    model = frontend.unwrap(model)
    needs = chosen.needs_for(opts, extra)
    if EXAMPLE_INPUT in needs and example_input is None:
        if data is None:
            raise ValueError(
                f"plan: scheme {chosen.name!r} {needs[EXAMPLE_INPUT]}: pass "
                "example_input=batch (or data=batch)"
            )
        example_input = data
    if EXAMPLE_INPUT in needs:
        _not_sharded(frontend.sharded(model), chosen.name, "plan")
    traced = GRAPH in needs or EXAMPLE_INPUT in needs
    graph = frontend.trace(model, example_input, data) if traced else None

    settled = frontend.settle(
        model, graph, rules=rules, skip=skip, include_frozen=include_frozen,
        own_fans=chosen.own_fans, loaded=_checkpoint(missing_keys, loaded),
    )  # fmt: skip
    _report_skip(settled, skip, chosen.name)
    survey = Survey(
        model, graph, opts, extra, settled.params, example_input,
        settled=settled.moments, data=data, seed=seed, frontend=frontend,
    )  # fmt: skip
    meta = frontend.meta_buffers(model)
    if meta:  # apply sets them again after to_empty (see Plan.apply)
        survey.notes["meta_buffers"] = meta
    if graph is not None and graph.traced_on:  # no input given: the model's own dummy inputs
        survey.notes["example_input"] = graph.traced_on
    surveyed = chosen.survey(survey) if chosen.survey is not None else {}

    def choose(p: Param) -> Choice:
        choice = surveyed.get(p.name)
        if choice is None and chosen.choose is None:
            raise ValueError(
                f"plan: scheme {chosen.name!r} chose nothing for {p.name!r} and has no choose stage"
            )
        return choice if choice is not None else chosen.choose(p, opts)

    rows = frontend.rows(settled, choose)
    _report_unknown(settled.unknown, strict)
    made = Plan(
        chosen.name,
        rows,
        options=recorded,
        graph=graph.method if graph is not None else "",
        notes=survey.notes,
        predictions=survey.predictions,
        rng=rng,
    )
    if chosen.calibrate is None:
        return made
    return chosen.calibrate(made, survey)


def _checkpoint(missing_keys: Any, loaded: Mapping[str, Any] | None) -> Loaded | None:
    """What a checkpoint provided, from ``missing_keys=`` (a list of names, the result of
    ``load_state_dict(strict=False)``, or Hugging Face's loading-info dict) or ``loaded=`` (a
    state dict)."""
    if missing_keys is not None and loaded is not None:
        raise ValueError(
            "plan: pass `missing_keys` (what the checkpoint lacked) or `loaded` (the state dict "
            "it loaded), not both"
        )
    if loaded is not None:
        if not isinstance(loaded, Mapping):
            raise TypeError(
                f"plan: `loaded` must be the state dict that was loaded (a mapping of names to "
                f"tensors), got {type(loaded).__name__}"
            )
        return Loaded(frozenset(map(str, loaded)), missing=False, source="in `loaded`")
    if missing_keys is None:
        return None
    if isinstance(missing_keys, Mapping):  # Hugging Face's output_loading_info=True
        if "missing_keys" not in missing_keys:
            raise TypeError(
                "plan: `missing_keys` as a mapping must be Hugging Face's loading info, with a "
                f"'missing_keys' entry; got keys {sorted(missing_keys)[:4]}"
            )
        missing_keys = missing_keys["missing_keys"]
    missing_keys = getattr(missing_keys, "missing_keys", missing_keys)  # load_state_dict's result
    if not isinstance(missing_keys, str):
        try:
            missing_keys = list(missing_keys)
        except TypeError:
            pass
    if not isinstance(missing_keys, list) or not all(isinstance(k, str) for k in missing_keys):
        raise TypeError(
            "plan: `missing_keys` must be the names a checkpoint lacked (a list of str, or what "
            "load_state_dict(..., strict=False) returns)"
        )
    return Loaded(frozenset(missing_keys), missing=True, source="not in `missing_keys`")


def _check_skip(skip: Iterable[str]) -> list[str]:
    """``skip=`` as a list of name globs (a single glob may be given as a str)."""
    if isinstance(skip, str):
        return [skip]
    try:
        globs = list(skip)
    except TypeError:
        globs = [skip]
    bad = [g for g in globs if not isinstance(g, str)]
    if bad:
        raise TypeError(
            f"plan: `skip` takes parameter name globs (str), got {bad[0]!r}; pass e.g. "
            "skip=['*.bias', 'head.*']"
        )
    return globs


def _report_skip(settled: Settled, skip: list[str], scheme: str) -> None:
    """Warn about ``skip=`` globs that match no parameter (a typo skips nothing) and about
    globs that leave the scheme nothing to initialize."""
    names = [r.name for r in settled.rows if r is not None] + [p.name for p in settled.params]
    for glob in settled.skip_unmatched:
        close = difflib.get_close_matches(glob, names, n=3, cutoff=0.6)
        if close:
            hint = f"did you mean {', '.join(map(repr, close))}?"
        elif names:
            hint = f"the parameters are named like {', '.join(map(repr, names[:3]))}"
        else:
            hint = "the model has no parameters"
        warnings.warn(
            f"plan: skip glob {glob!r} matches no parameter, so it skips nothing; {hint}",
            stacklevel=3,
        )
    if settled.skipped and not settled.pending:
        warnings.warn(
            f"plan: skip={skip!r} covers every parameter scheme {scheme!r} would initialize "
            f"({settled.skipped} skipped), so the scheme initializes none; narrow the globs "
            "if that is not what you meant",
            stacklevel=3,
        )


def _report_unknown(unknown: list[str], strict: bool) -> None:
    if not unknown:
        return
    message = (
        f"weightinit does not know the module of {len(unknown)} parameter(s) and no rule "
        f"covers them, so they are left as they are: {', '.join(unknown)}. Add rules="
        "{'name_glob': 'initializer'} for them"
    )
    if strict:
        raise ValueError(message)
    warnings.warn(message, stacklevel=3)


def calibrate(plan: Plan, model: nn.Module, *, data: Any = None, example_input: Any = None) -> Plan:
    """Run the calibrate stage of ``plan``'s scheme on ``model`` (materialized), on ``data``.

    ``plan(model, "lsuv")`` without data gives the analytic plan (on the meta device too); this
    completes it once the model has storage, e.g. after ``model.to_empty(device=...)``. The
    plan's own options (its scheme's settings, the seed) are used. Returns the calibrated plan;
    a plan whose scheme does not calibrate is returned as it is, one calibrated already is an
    error (its gains were measured on what it draws). Calibration runs the model, so
    its buffers must hold their values: ``to_empty`` leaves them uninitialized too (a
    Transformer's rotary frequencies), so restore them first; the running statistics of the
    norm layers the plan writes are the exception: calibration re-estimates them on ``data``
    and the plan records them (``plan.buffers``), see docs/automatic.md.

    A sharded model (FSDP2, tensor parallel: its parameters DTensors) is calibrated in place,
    as its own stage after ``to_empty``: every rank runs the calibration on its own ``data``,
    each layer's statistics are pooled over the ranks of the default process group (every rank
    gets the same gains, those of one process on the concatenated batches, up to rounding), and
    the model ends holding the calibrated weights, which ``plan.apply(model)`` writes again.
    Every rank must run the same layers in the same order (as FSDP2 needs anyway); one gain
    per layer (not ``per_channel`` or ``center``) and no norm layer with running statistics,
    for now. If calibrating fails, the shards are put back as they were. See
    docs/distributed.md.

    Example:
        >>> import torch, weightinit as wi
        >>> with torch.device("meta"):
        ...     net = torch.nn.Sequential(torch.nn.Linear(8, 32), torch.nn.Tanh(), torch.nn.Linear(32, 2))
        >>> p = wi.plan(net, "lsuv", seed=0)       # analytic: no data, no memory
        >>> p.pending_calibration
        True
        >>> net = net.to_empty(device="cpu")
        >>> batch = torch.randn(256, 8, generator=torch.Generator().manual_seed(0))
        >>> p = wi.calibrate(p, net, data=batch)
        >>> _ = p.apply(net)
        >>> round(net[:1](batch).std().item(), 3), round(net(batch).std().item(), 3)
        (1.0, 1.0)
    """
    chosen = get_scheme(plan.scheme)
    if chosen.calibrate is None:
        return plan
    if plan.calibration:
        raise ValueError(
            f"calibrate: this {plan.scheme!r} plan is calibrated already (plan.calibration); "
            "make the plan again to calibrate it anew"
        )
    frontend = frontend_for(model, "calibrate")
    opts, extra, _ = chosen.take({k: v for k, v in plan.options.items() if k != "seed"})
    model = frontend.unwrap(model)
    needs = chosen.needs_for(opts, extra)
    if DATA in needs and data is None:
        raise ValueError(f"calibrate: scheme {plan.scheme!r} {needs[DATA]}: pass data=batch")
    meta = frontend.on_meta_device(plan, model)
    if meta:
        raise ValueError(
            f"calibrate: {meta[0]!r} is on the meta device and has no storage; materialize the "
            "model first, e.g. model.to_empty(device='cpu'), then calibrate the plan"
        )
    plan.restore(model, fn="calibrate", stacklevel=3)  # after to_empty: ties, buffers
    survey = Survey(
        model, None, opts, extra, [], example_input if example_input is not None else data,
        data=data, seed=plan.options.get("seed"), frontend=frontend,
    )  # fmt: skip
    return chosen.calibrate(plan, survey)


def _not_sharded(sharded: list[str], scheme: str, fn: str) -> None:
    """Surveying a model by running it ("auto"'s analysis) measures each rank's own data; on
    sharded parameters those measurements would differ between ranks, and so would the plan.
    The survey is made where the model is whole; its calibration runs on the sharded model."""
    if sharded:
        raise ValueError(
            f"{fn}: scheme {scheme!r} traces and measures the model, and {sharded[0]!r} is "
            "sharded (a DTensor). Plan the model on the meta device (or unsharded), before "
            "sharding it: wi.plan(meta_model, ..., example_input=batch, seed=...); then, once "
            "it is sharded and materialized, wi.calibrate(plan, model, example_input=batch) "
            "runs the calibration on the sharded model, its statistics pooled over the ranks, "
            "and plan.apply(model) writes it"
        )


def init(
    model: nn.Module,
    scheme: str | Scheme = "he",
    *,
    seed: int | None = None,
    generator: torch.Generator | None = None,
    atomic: bool = True,
    rng: str | None = None,
    **kw: Any,
) -> Plan:
    """Plan and apply in one call; returns the plan (print it to see what was done).

    ``seed``, ``generator`` and ``atomic`` go to :meth:`Plan.apply`, ``rng`` to :func:`plan`
    (which records it), the rest to :func:`plan` too. With ``seed``, the values come from the
    keyed generator "philox-v1" unless ``rng="torch"`` (see :meth:`Plan.apply`).

    Example:
        >>> import torch, weightinit
        >>> net = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 1))
        >>> p = weightinit.init(net, "he", seed=0)
        >>> p["0.weight"].init, round(p["0.weight"].std, 4)
        ('variance_scaling', 0.5)
    """
    if seed is not None and generator is not None:
        raise ValueError("init: pass `seed` or `generator`, not both")
    made = plan(model, scheme, seed=seed, rng=rng, **kw)
    return made.apply(model, seed=seed, generator=generator, atomic=atomic)


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
