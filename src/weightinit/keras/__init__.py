"""weightinit for Keras 3, on any backend (an extra: ``pip install "weightinit[keras]"``).

Keras fixes its backend when it is first imported, from ``KERAS_BACKEND`` (its default,
TensorFlow, need not be installed: set ``KERAS_BACKEND=torch`` or ``jax`` first).

- :mod:`weightinit.keras.initializers`: every initializer of the catalog as a
  ``keras.initializers.Initializer`` (``HeNormal``, ``Orthogonal``, ``DeltaOrthogonal``, ...),
  serializable and registered, with fans from the kernel's layout
  (:func:`keras_layout`: LSTM gates, depthwise and transposed convolutions, attention
  kernels), where Keras's own initializers read only the last two axes.
- :func:`apply` (default "auto", data-free like AutoInit), :func:`plan`, :func:`init` and
  :func:`write`: a built Keras model planned with any scheme, into the same Plan as a torch
  model's, written all or nothing. The classic schemes (:data:`CLASSIC`) read the layers
  themselves, each kernel's fans from its layout and its gain from the activation after it;
  the others ("auto", "lsuv", "critical", "selu", "fixup", the Transformer presets, ...) plan
  the model's torch twin.
- :func:`diagnose` and :func:`compare`: the signal through the model, layer by layer (the
  same Report and Comparison as ``weightinit.diagnose`` and ``weightinit.compare``).

Example::

    >>> import keras
    >>> import weightinit.keras as autoinit
    >>> model = keras.Sequential([keras.Input((784,)), keras.layers.Dense(64, activation="relu"),
    ...                           keras.layers.Dense(10, activation="softmax")])
    >>> plan = autoinit.apply(model)        # data-free "auto"
    >>> from weightinit.keras import initializers
    >>> lstm = keras.layers.LSTM(
    ...     16, kernel_initializer=initializers.Orthogonal(layout="recurrent", gates=4, seed=0))
"""

from __future__ import annotations

import os

try:
    import keras  # noqa: F401  (fixes the backend: checked here, with what to do)
except ImportError as err:
    backend = os.environ.get("KERAS_BACKEND", "tensorflow (Keras's default)")
    if getattr(err, "name", None) == "keras":
        raise ImportError(
            "weightinit.keras needs Keras 3: pip install 'weightinit[keras]' (with the "
            "constraints file), then set KERAS_BACKEND=torch or jax"
        ) from err
    raise ImportError(
        f"weightinit.keras: Keras could not load its backend {backend} ({err}); set "
        "KERAS_BACKEND=torch or KERAS_BACKEND=jax (with jax installed) before importing keras"
    ) from err

from weightinit.frontends.keras.layouts import KINDS, keras_fans, keras_layout
from weightinit.keras import initializers
from weightinit.keras.model import CLASSIC, apply, compare, diagnose, init, plan, write

__all__ = [
    "CLASSIC",
    "KINDS",
    "apply",
    "compare",
    "diagnose",
    "init",
    "initializers",
    "keras_fans",
    "keras_layout",
    "plan",
    "write",
]
