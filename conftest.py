"""Collection: Keras fixes its backend at import (``KERAS_BACKEND``; its default, TensorFlow, is
not installed here), so the modules and tests that import Keras are collected only in a process
started with ``KERAS_BACKEND`` set. ``tests/test_keras_backends.py`` runs them in their own
pytest processes, once with ``KERAS_BACKEND=torch`` and once with ``jax``."""

import os

KERAS_PATHS = [
    "tests/keras",
    "src/weightinit/keras",
    # every module of the Keras front end but layouts.py, which needs no Keras
    *(
        f"src/weightinit/frontends/keras/{name}.py"
        for name in ("activations", "initializers", "settle", "twin", "write")
    ),
    "docs/keras.md",
]

collect_ignore = [] if os.environ.get("KERAS_BACKEND") else KERAS_PATHS
