"""weightinit: initialize neural networks well.

Tensor initializers in the style of ``torch.nn.init`` (in place, ``name_(tensor, ...,
layout=None, generator=None)``), with fans that come from each parameter's layout, gains from
each activation's Gaussian moments, and a catalog of names (``weightinit.get``).
"""

from weightinit.activations import Activation, Moments, activation, gain, gain_squared, moments
from weightinit.diagnostics import Comparison, LayerStats, Report, compare, diagnose
from weightinit.fills import (
    block_constant_,
    constant_,
    normal_,
    ones_,
    trunc_normal_,
    truncated_std,
    uniform_,
    zeros_,
)
from weightinit.layout import Geometry, Layout, fans, geometry
from weightinit.knowledge import layout_for
from weightinit.model import apply, init, plan
from weightinit.plan import Plan, Row
from weightinit.registry import CatalogEntry, catalog, get
from weightinit.schemes import schemes
from weightinit import recipes  # registers the architecture recipes' schemes
from weightinit.recipes.critical import critical_point
from weightinit.structured import (
    delta_orthogonal_,
    haar_orthogonal,
    identity_,
    looks_linear_,
    orthogonal_,
    sparse_,
    unitary_,
    zer0_,
)
from weightinit.variance import (
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

__version__ = "0.1.0"

__all__ = [
    "Activation",
    "CatalogEntry",
    "Comparison",
    "Geometry",
    "LayerStats",
    "Layout",
    "Moments",
    "Plan",
    "Report",
    "Row",
    "activation",
    "apply",
    "block_constant_",
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
