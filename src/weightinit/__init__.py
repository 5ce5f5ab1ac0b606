"""weightinit: initialize neural networks well.

Tensor initializers in the style of ``torch.nn.init`` (in place, ``name_(tensor, ...,
layout=None, generator=None)``), with fans that come from each parameter's layout, gains from
each activation's Gaussian moments, and a catalog of names (``weightinit.get``).
"""

from weightinit import (
    _moved,
    recipes,  # noqa: F401  (registers the architecture recipes' schemes)
)
from weightinit.diagnostics import Comparison, LayerStats, Report, compare, diagnose
from weightinit.initializers.activations import (
    Activation,
    Moments,
    activation,
    gain,
    gain_squared,
    moments,
)
from weightinit.initializers.catalog import CatalogEntry, catalog, get
from weightinit.initializers.fills import (
    block_constant_,
    constant_,
    normal_,
    ones_,
    trunc_normal_,
    truncated_std,
    uniform_,
    zeros_,
)
from weightinit.initializers.layout import Geometry, Layout, fans, geometry
from weightinit.initializers.structured import (
    delta_orthogonal_,
    haar_orthogonal,
    identity_,
    looks_linear_,
    orthogonal_,
    sparse_,
    unitary_,
    zer0_,
)
from weightinit.initializers.variance import (
    glorot_normal_,
    glorot_uniform_,
    he_normal_,
    he_uniform_,
    kaiming_normal_,
    kaiming_uniform_,
    lecun_normal_,
    lecun_uniform_,
    packed_variance_scaling_,
    random_walk_,
    random_walk_gain,
    variance_scaling_,
    xavier_normal_,
    xavier_uniform_,
)
from weightinit.planner import apply, calibrate, init, plan
from weightinit.plans.plan import Plan, Row
from weightinit.recipes.critical import critical_point
from weightinit.scheme import auto as _auto  # noqa: F401  (registers "auto")
from weightinit.scheme import classic as _classic  # noqa: F401  (registers the classic schemes)
from weightinit.scheme import lsuv as _lsuv  # noqa: F401  (registers "lsuv")
from weightinit.scheme.protocol import Choice, Options, Param, Scheme, Survey
from weightinit.scheme.registry import register_scheme, schemes
from weightinit.understanding.knowledge import layout_for

__version__ = "0.2.0.dev0"

_moved.install()  # the flat layout's import paths, with a DeprecationWarning (see _moved)


def __getattr__(name: str):
    """``weightinit.graph`` and the other old module paths, as stand-ins."""
    return _moved.attribute(__name__, name)


__all__ = [
    "Activation",
    "CatalogEntry",
    "Choice",
    "Comparison",
    "Geometry",
    "LayerStats",
    "Layout",
    "Moments",
    "Options",
    "Param",
    "Plan",
    "Report",
    "Row",
    "Scheme",
    "Survey",
    "activation",
    "apply",
    "block_constant_",
    "calibrate",
    "catalog",
    "compare",
    "constant_",
    "critical_point",
    "delta_orthogonal_",
    "diagnose",
    "fans",
    "gain",
    "gain_squared",
    "geometry",
    "get",
    "glorot_normal_",
    "glorot_uniform_",
    "haar_orthogonal",
    "he_normal_",
    "he_uniform_",
    "identity_",
    "init",
    "kaiming_normal_",
    "kaiming_uniform_",
    "layout_for",
    "lecun_normal_",
    "lecun_uniform_",
    "looks_linear_",
    "moments",
    "normal_",
    "ones_",
    "orthogonal_",
    "packed_variance_scaling_",
    "plan",
    "random_walk_",
    "random_walk_gain",
    "register_scheme",
    "schemes",
    "sparse_",
    "trunc_normal_",
    "truncated_std",
    "uniform_",
    "unitary_",
    "variance_scaling_",
    "xavier_normal_",
    "xavier_uniform_",
    "zer0_",
    "zeros_",
]
