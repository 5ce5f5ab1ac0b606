"""Every initializer of the catalog as a Keras 3 initializer class: ``HeNormal``,
``GlorotUniform``, ``LecunNormal``, ``Orthogonal``, ``DeltaOrthogonal``, ``Identity``,
``Sparse``, ``LooksLinear``, ``Unitary``, ``Zer0``, ``RandomWalk``, ``VarianceScaling``, ...
(one per entry of :func:`weightinit.catalog`; see
:mod:`weightinit.frontends.keras.initializers`).

Example::

    >>> import keras
    >>> from weightinit.keras import initializers
    >>> init = initializers.HeNormal(seed=0)
    >>> keras.initializers.get("weightinit>HeNormal").__class__ is initializers.HeNormal
    True
    >>> tuple(init((64, 32)).shape)
    (64, 32)
"""

from __future__ import annotations

from weightinit.frontends.keras.initializers import WeightinitInitializer, initializer_classes

globals().update(initializer_classes())

__all__ = ["WeightinitInitializer", *initializer_classes()]  # noqa: PLE0604
