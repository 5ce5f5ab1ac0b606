"""Architecture recipes: the literature's initializations that need the whole model.

Each recipe is a scheme, reached by name (``weightinit.init(model, "fixup")``), and some come
with an explicit model transformation (``add_fixup_scalars``, ``add_residual_gains``) that
adds the parameters the paper adds. Modules: ``residual`` (Fixup, SkipInit/ReZero, ZerO),
``transformer`` (roles, scaled residual presets, T-Fixup), ``critical`` (mean-field
criticality, SELU, LeCun tanh), ``recurrent`` (IRNN, unitary) and ``structured``
(looks-linear, sparse, random walk).
"""

from weightinit.recipes.critical import *  # noqa: F403
from weightinit.recipes.recurrent import *  # noqa: F403
from weightinit.recipes.residual import *  # noqa: F403
from weightinit.recipes.structured import *  # noqa: F403
from weightinit.recipes.transformer import *  # noqa: F403
from weightinit.recipes import critical, recurrent, residual, structured, transformer

__all__ = [
    *critical.__all__,
    *recurrent.__all__,
    *residual.__all__,
    *structured.__all__,
    *transformer.__all__,
]
