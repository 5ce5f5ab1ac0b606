"""Architecture recipes: the literature's initializations that need the whole model.

Each recipe is a scheme, reached by name (``weightinit.init(model, "fixup")``), and some come
with an explicit model transformation (``add_fixup_scalars``, ``add_residual_gains``) that
adds the parameters the paper adds. Modules: ``residual`` (Fixup, SkipInit/ReZero, ZerO),
``transformer`` (roles, scaled residual presets, T-Fixup), ``critical`` (mean-field
criticality, SELU, LeCun tanh), ``recurrent`` (IRNN, unitary) and ``weight_structure``
(looks-linear, sparse, random walk).
"""

from weightinit import _moved
from weightinit.recipes.critical import CriticalPoint, critical_point, use_alpha_dropout
from weightinit.recipes.recurrent import IRNNOptions
from weightinit.recipes.residual import (
    FixupBias,
    FixupOptions,
    FixupScale,
    ResidualGain,
    Scaffold,
    add_fixup_scalars,
    add_residual_gains,
)
from weightinit.recipes.transformer import ROLES, TransformerRole, transformer_roles
from weightinit.recipes.weight_structure import SparseOptions
from weightinit.understanding.crelu import crelu_fed

__all__ = [
    "ROLES",
    "CriticalPoint",
    "FixupBias",
    "FixupOptions",
    "FixupScale",
    "IRNNOptions",
    "ResidualGain",
    "Scaffold",
    "SparseOptions",
    "TransformerRole",
    "add_fixup_scalars",
    "add_residual_gains",
    "crelu_fed",
    "critical_point",
    "transformer_roles",
    "use_alpha_dropout",
]


def __getattr__(name: str):
    """``weightinit.recipes.roles`` and ``.structured``, the old paths, as stand-ins."""
    return _moved.attribute(__name__, name)
