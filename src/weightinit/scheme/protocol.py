"""The scheme protocol: what every scheme is, and what it sees of a model.

A scheme is a named policy that turns a model into a :class:`~weightinit.Plan`, in four stages
that :func:`weightinit.plan` runs in order for every scheme alike:

1. **settle** (shared by every scheme; the front end walks the parameters,
   :mod:`weightinit.frontends.torch.settle`): user rules, ``skip=``, frozen, tied and unknown
   parameters get their rows; the rest are the scheme's to choose.
2. **survey** (optional): sees the whole model once, in a :class:`Survey`, and returns choices
   by parameter name: residual branches, depth, Transformer roles, a critical point, auto's
   propagated moments. What it finds goes into ``plan.notes`` (and ``plan.predictions``).
3. **choose**: one parameter's :class:`Choice` from its :class:`Param`, a framework-neutral
   description; parameters the survey left out fall back to it. Required, unless the survey
   chooses every parameter (as "auto" and "lsuv" do).
4. **calibrate** (optional): runs data through the model and returns the plan with per-row
   gains and shifts (LSUV; auto's stabilizing sweep). It can run later, on its own, once the
   model is materialized: :func:`weightinit.calibrate`.

A scheme declares what it needs (``needs``: "graph", "example_input", "data", each with the
reason), and the planner words the missing-input error once for all. A scheme returns choices;
it never writes a parameter.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

from weightinit._checks import finite, positive
from weightinit.initializers.layout import Geometry, shape_geometry
from weightinit.understanding.graph import Follower, Graph
from weightinit.understanding.knowledge import ParamInfo

if TYPE_CHECKING:  # pragma: no cover
    from weightinit.plans.plan import Plan

__all__ = [
    "DATA",
    "EXAMPLE_INPUT",
    "GRAPH",
    "Choice",
    "Frontend",
    "Options",
    "Param",
    "Scheme",
    "Survey",
    "take_options",
]

#: what a scheme may need: the activations after layers (a trace: torch.fx, or a forward pass
#: on the example input when one is given), an actual forward pass, and data to calibrate on
GRAPH, EXAMPLE_INPUT, DATA = "graph", "example_input", "data"
NEEDS = (GRAPH, EXAMPLE_INPUT, DATA)


class Choice(NamedTuple):
    """An initializer from the catalog, its arguments and the reason for them."""

    init: str
    args: dict[str, Any]
    reason: str


class Param(NamedTuple):
    """What a scheme sees of one parameter: a description, not the tensor or its module.

    ``name`` is its qualified name and ``plain`` the name of the weight it stands for (the
    same, except for the tensors behind a parametrization: ``lin.parametrizations.weight.
    original`` is ``lin.weight``; and for a tied tensor whose first name has no known module,
    described from another of its names: HF BERT's ``cls.predictions.bias`` is
    ``cls.predictions.decoder.bias``). ``module`` is the qualified name of the layer that holds it,
    ``kind`` that layer's :class:`~weightinit.understanding.knowledge.Kinds` ("linear",
    "conv", "attention", "recurrent", ...). ``info`` is the module knowledge (role, layout,
    the framework's default, gates, padding row) and ``follower`` what follows the layer
    (the activation after it; None when the scheme reads no graph). ``shape`` and ``dtype``
    are those of the weight the scheme chooses for ("float32", "complex64", ...).
    """

    name: str
    plain: str
    leaf: str
    module: str
    kind: str
    shape: tuple[int, ...]
    dtype: str
    info: ParamInfo
    follower: Follower | None

    @property
    def role(self) -> str:
        return self.info.role

    @property
    def geometry(self) -> Geometry:
        """Fans and block form under the parameter's layout."""
        return shape_geometry(self.shape, self.info.layout)

    @property
    def fans(self) -> tuple[int, int]:
        g = self.geometry
        return g.fan_in, g.fan_out

    @property
    def is_complex(self) -> bool:
        return self.dtype.startswith("complex")


@dataclass(frozen=True)
class Options:
    """Options every classic scheme honours (``None``: the scheme's own default).

    distribution: "normal", "uniform" or "truncated_normal" for variance-scaling weights.
    mode: "fan_in" (forward signal) or "fan_out" (backward signal), for "he".
    bias: constant for biases. relu_bias: constant for the biases of layers followed by a
    ReLU-family activation (e.g. 0.01 or 0.1), keeping units alive at the start.
    forget_bias: the LSTM forget gate's bias (Jozefowicz et al. 2015; the forget slices of
    bias_ih and bias_hh sum to it). recurrent: "orthogonal" (per gate), "unitary" (per gate:
    Haar orthogonal, unitary for complex weights; Arjovsky et al. 2016), "identity" (IRNN,
    Le et al. 2015) or "scheme" (like input weights). embedding_std: embeddings ~ N(0, std^2).
    norm_scale: the scale of normalization layers.
    """

    distribution: str | None = None
    mode: str = "fan_in"
    bias: float = 0.0
    relu_bias: float | None = None
    forget_bias: float | None = 1.0
    recurrent: str = "orthogonal"
    embedding_std: float | None = None
    norm_scale: float = 1.0

    @classmethod
    def build(cls, options: dict[str, Any], extra: type | None = None) -> Options:
        """The shared options from keywords, each value checked here, where it is taken (an
        error names the option, not the initializer it would reach); ``extra``: the scheme's
        own options dataclass, already taken out, named in the error for unknown keywords."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(options) - names)
        if unknown:
            own = {f.name for f in dataclasses.fields(extra)} if extra is not None else set()
            raise TypeError(
                f"unknown scheme option(s) {', '.join(unknown)}; the options are "
                f"{', '.join(sorted(names | own))}"
            )
        opts = cls(**options)
        checks = {
            "distribution": (opts.distribution, (None, "normal", "uniform", "truncated_normal")),
            "mode": (opts.mode, ("fan_in", "fan_out")),
            "recurrent": (opts.recurrent, ("orthogonal", "unitary", "identity", "scheme")),
        }
        for name, (value, allowed) in checks.items():
            if value not in allowed:
                shown = ", ".join(repr(a) for a in allowed if a is not None)
                raise ValueError(f"option `{name}` must be one of {shown}, got {value!r}")
        for name in ("bias", "norm_scale"):
            finite("", name, getattr(opts, name))
        for name in ("relu_bias", "forget_bias"):  # None: no bias of their own
            if getattr(opts, name) is not None:
                finite("", name, getattr(opts, name))
        if opts.embedding_std is not None:
            positive("", "embedding_std", opts.embedding_std, allow_zero=True)
        return opts


@dataclass
class Survey:
    """What a scheme's survey and calibrate stages see of the whole model.

    ``params`` are the parameters the scheme chooses for (not skipped, frozen, tied or covered
    by a user rule), in the model's order. ``extra`` holds the scheme's own options (an
    instance of :attr:`Scheme.extra`). ``settled`` gives (mean, E[x^2]) of the values of the
    parameters the scheme does not choose, by plain name. A survey writes what it established
    about the model (residual branches found, depth, a critical point) into ``notes`` and,
    when it predicts each layer's output, ``predictions``; the plan keeps both. ``data`` and
    ``seed`` are what calibration runs on; ``frontend`` runs the model (:class:`Frontend`).
    """

    model: Any
    graph: Graph | None
    options: Options
    extra: Any
    params: list[Param]
    example_input: Any = None
    notes: dict[str, Any] = dataclasses.field(default_factory=dict)
    predictions: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    settled: dict[str, tuple[float, float]] = dataclasses.field(default_factory=dict)
    data: Any = None
    seed: int | None = None
    frontend: Frontend | None = None


class Frontend(Protocol):
    """Everything that touches the framework a model is written in (torch:
    :class:`~weightinit.frontends.torch.TorchFrontend`). Schemes reach it through
    ``Survey.frontend`` and never import a framework's model code; the planner uses the rest.

    What schemes ask:

    - ``propagate(survey)``: carry the signal's (mean, variance) through ``survey.graph`` (an
      execution trace) from the example input, and choose the weights "auto" sets (an
      :class:`~weightinit.scheme.auto.Analysis`), measuring ops it has no map for.
    - ``stand_in(survey)``: a Gaussian batch with the example input's shape and statistics.
    - ``calibrate(model, plan, data, seed=..., **settings)``: the plan with LSUV gains (and
      shifts) measured by running ``data`` through the model (settings: ``target_std`` or
      ``target_var``, ``tol``, ``max_iter``, ``center``, ``per_channel``).

    What the planner asks: ``unwrap(model)`` (the user's model inside wrappers),
    ``check_rules(rules)``, ``trace(model, example_input, data)`` (the graph),
    ``settle(model, graph, rules=, skip=, include_frozen=, own_fans=)`` (the shared stage: rows
    for what the scheme does not choose, a :class:`Param` for the rest),
    ``rows(settled, choose)`` (every row) and ``on_meta_device(plan, model)``.
    """

    name: str

    def propagate(self, s: Survey) -> Any: ...

    def stand_in(self, s: Survey) -> Any: ...

    def calibrate(
        self, model: Any, plan: Plan, data: Any, *, seed: int, **settings: Any
    ) -> Plan: ...

    def unwrap(self, model: Any) -> Any: ...

    def check_rules(self, rules: Any) -> dict: ...

    def trace(self, model: Any, example_input: Any, data: Any) -> Graph: ...

    def settle(self, model: Any, graph: Graph | None, **how: Any) -> Any: ...

    def rows(self, settled: Any, choose: Callable[[Param], Choice]) -> list: ...

    def on_meta_device(self, plan: Plan, model: Any) -> list[str]: ...


Needs = Mapping[str, str]  # need -> why the scheme needs it (quoted in the error)


@dataclass(frozen=True)
class Scheme:
    """A named initialization policy: the stages of the protocol (see the module docstring).

    ``choose`` gives one parameter its :class:`Choice`. ``survey`` (optional) sees every
    parameter at once and returns choices by qualified name, which take precedence over
    ``choose`` (None: the survey chooses every parameter). ``calibrate`` (optional) maps the plan to a calibrated plan on
    ``Survey.data``. ``needs`` maps what the scheme needs ("graph", "example_input", "data")
    to why, or is a function of the options that does. ``extra`` is the dataclass of the
    scheme's own options (its ``__post_init__`` validates them, worded "option `name` ...";
    a ``recorded()`` method, if it has one, says what the plan records of them). ``own_fans``
    False: torch's fans (dim 1 in, dim 0 out), as its defaults use. ``aliases``: other names
    it answers to. ``prepare``: the model transformation the scheme is written for, if any
    (``prepare(model, example_input=...)`` adds the parameters its paper adds, e.g. Fixup's
    scalars); the user calls it before planning, never the planner. ``rng``: the generator
    its plans always draw from, whatever ``rng=`` says ("torch" for the "torch" scheme, which
    reproduces ``reset_parameters`` draw for draw); None: the keyed generator by default (see
    :meth:`~weightinit.Plan.apply`).
    """

    name: str
    description: str
    choose: Callable[[Param, Options], Choice] | None
    needs: Needs | Callable[[Options, Any], Needs] = dataclasses.field(default_factory=dict)
    own_fans: bool = True
    survey: Callable[[Survey], dict[str, Choice]] | None = None
    calibrate: Callable[[Plan, Survey], Plan] | None = None
    extra: type | None = None
    aliases: tuple[str, ...] = ()
    prepare: Callable[..., Any] | None = None
    rng: str | None = None

    def __post_init__(self) -> None:
        if self.choose is None and self.survey is None:
            raise ValueError(f"scheme {self.name!r}: give it a choose or a survey stage")

    def needs_for(self, options: Options, extra: Any) -> Needs:
        """What the scheme needs under these options, with why."""
        needs = self.needs(options, extra) if callable(self.needs) else self.needs
        unknown = set(needs) - set(NEEDS)
        if unknown:
            raise ValueError(
                f"scheme {self.name!r} declares unknown need(s) {sorted(unknown)}; "
                f"a scheme needs some of {', '.join(NEEDS)}"
            )
        return needs

    def take(
        self, options: dict[str, Any], seed: int | None = None
    ) -> tuple[Options, Any, dict[str, Any]]:
        """(shared options, own options, what the plan records) from keywords. The plan
        records the options as given, in the order given, then the seed, then what the own
        options' ``recorded()`` says instead of their raw values (if they have one)."""
        given = dict(options)
        extra = take_options(self.extra, given, self.name) if self.extra else None
        try:
            shared = Options.build(given, self.extra)
        except (TypeError, ValueError) as err:
            raise type(err)(f"scheme {self.name!r}: {err}") from None
        own = extra.recorded() if hasattr(extra, "recorded") else None
        recorded = {k: v for k, v in options.items() if own is None or k in given}
        if seed is not None:
            recorded["seed"] = seed
        recorded.update(own or {})
        return shared, extra, recorded


def take_options(cls: type, options: dict[str, Any], scheme: str) -> Any:
    """Take the fields of the dataclass ``cls`` out of ``options`` and build it (its
    ``__post_init__`` validates them, its errors worded "option `name` ...", to which this
    adds the scheme's name); what is left are the shared :class:`Options`."""
    names = [f.name for f in dataclasses.fields(cls)]
    taken = {name: options.pop(name) for name in names if name in options}
    try:
        return cls(**taken)
    except (TypeError, ValueError) as err:  # the validators say "option `name` ..."
        raise type(err)(f"scheme {scheme!r}: {err}") from None
