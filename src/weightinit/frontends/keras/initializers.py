"""The catalog as Keras 3 initializers: one ``keras.initializers.Initializer`` class per
catalog entry (``HeNormal``, ``Orthogonal``, ``DeltaOrthogonal``, ``Zer0``, ...), on every backend.

Each class computes its values with the catalog's own function (the same formulas, fans from a
:class:`~weightinit.Layout`) on the CPU with torch, and hands them to Keras as a tensor of the
backend (``keras.ops.convert_to_tensor``). Its ``layout`` says where the kernel's inputs and
outputs lie: one of :data:`~weightinit.frontends.keras.layouts.KINDS` ("recurrent" with
``gates=4`` for an LSTM's kernels, "depthwise", "conv_transpose", "attention_in", ...), a
:class:`~weightinit.Layout`, or None for Keras's own convention (inputs on the second-to-last
axis, outputs on the last). Every class is registered with Keras (``"weightinit>HeNormal"``), so
a model saved with one reloads, and ``kernel_initializer="weightinit>HeNormal"`` names one.

Seeds follow Keras: an int ``seed`` gives the same values at every call; ``seed=None`` draws a
seed from Keras's global seed generator at each call (``keras.utils.set_random_seed`` makes
that reproducible).
"""

from __future__ import annotations

import dataclasses
import inspect
from typing import Any, ClassVar

import keras
import torch

from weightinit.frontends.keras.layouts import KINDS, keras_layout
from weightinit.initializers.catalog import CatalogEntry, catalog
from weightinit.initializers.layout import Layout

__all__ = ["WeightinitInitializer", "initializer_classes"]

_PACKAGE = "weightinit"
_SEED_HIGH = 2**31 - 1


class WeightinitInitializer(keras.initializers.Initializer):
    """Base of the catalog's Keras initializers; each subclass is one catalog entry."""

    entry: ClassVar[CatalogEntry]

    def __init__(
        self,
        *,
        layout: str | Layout | dict | None = None,
        groups: int = 1,
        gates: int = 1,
        seed: int | None = None,
        **kwargs: Any,
    ) -> None:
        name = type(self).__name__
        self.layout = _checked_layout(layout, name)
        for option, value in (("groups", groups), ("gates", gates)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}: `{option}` must be a positive int, got {value!r}")
        self.groups, self.gates = groups, gates
        if seed is not None and not isinstance(seed, (int, keras.random.SeedGenerator)):
            raise TypeError(
                f"{name}: `seed` must be an int, a keras.random.SeedGenerator or None, got "
                f"{type(seed).__name__}"
            )
        self.seed = seed
        parameters = inspect.signature(self.entry.function).parameters
        own = [p for p in parameters if p not in ("tensor", "layout", "generator")]
        unknown = sorted(set(kwargs) - set(own))
        if unknown:
            raise TypeError(
                f"{name}: unknown argument(s) {', '.join(map(repr, unknown))}; it takes "
                f"{', '.join(own) or 'no arguments'} (and layout, groups, gates, seed)"
            )
        self.kwargs = kwargs

    def __call__(self, shape: Any, dtype: Any = None) -> Any:
        shape = tuple(int(size) for size in shape)
        layout = self._layout(shape)
        values = torch.empty(shape, dtype=torch.float32)
        generator = torch.Generator().manual_seed(self._draw_seed())
        self.entry.function(values, **self.kwargs, layout=layout, generator=generator)
        dtype = dtype or keras.config.floatx()
        return keras.ops.convert_to_tensor(values.numpy(), dtype=dtype)

    def _layout(self, shape: tuple[int, ...]) -> Layout:
        if isinstance(self.layout, Layout):
            return self.layout
        if self.layout is None:  # Keras's convention: (..., in, out)
            return keras_layout("elementwise" if len(shape) < 2 else "dense", shape)
        return keras_layout(self.layout, shape, groups=self.groups, gates=self.gates)

    def _draw_seed(self) -> int:
        if isinstance(self.seed, int):
            return self.seed
        drawn = keras.random.randint((), 0, _SEED_HIGH, seed=self.seed)  # None: the global one
        return int(keras.ops.convert_to_numpy(drawn))

    def get_config(self) -> dict[str, Any]:
        layout = self.layout
        if isinstance(layout, Layout):
            layout = dataclasses.asdict(layout)
        seed = self.seed if isinstance(self.seed, int) else None
        return {"layout": layout, "groups": self.groups, "gates": self.gates, "seed": seed,
                **self.kwargs}  # fmt: skip

    def __repr__(self) -> str:
        config = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items() if v is not None)
        return f"{type(self).__name__}({config})"


def _checked_layout(layout: Any, name: str) -> str | Layout | None:
    if layout is None or isinstance(layout, Layout):
        return layout
    if isinstance(layout, dict):  # a Layout, as get_config writes it
        try:
            return Layout(**layout)
        except (TypeError, ValueError) as err:
            raise ValueError(f"{name}: `layout` as a dict must hold a Layout's fields: {err}")
    if layout == "einsum":
        raise ValueError(
            f"{name}: an EinsumDense kernel's layout depends on its equation: pass "
            "layout=keras_layout('einsum', shape, equation=layer.equation)"
        )
    if isinstance(layout, str) and layout in KINDS:
        return layout
    raise ValueError(
        f"{name}: `layout` must be None (Keras's (..., in, out)), a weightinit.Layout or one of "
        f"{', '.join(map(repr, KINDS))}, got {layout!r}"
    )


def _class_name(entry: CatalogEntry) -> str:
    return "".join(part.capitalize() for part in entry.name.split("_"))


def _docstring(entry: CatalogEntry, class_name: str) -> str:
    return (
        f"The catalog's ``{entry.name}`` as a Keras initializer: {entry.formula}.\n\n"
        f"For: {entry.activations}. Paper: {entry.paper}. Arguments: those of "
        f":func:`weightinit.{entry.function.__name__}`, and ``layout``, ``groups``, ``gates``, "
        f"``seed`` (see the module docstring).\n\n"
        f"Example::\n\n"
        f"    >>> import keras\n"
        f"    >>> from weightinit.keras import initializers\n"
        f"    >>> layer = keras.layers.Dense(8, kernel_initializer=initializers.{class_name}(seed=0))\n"
    )


def initializer_classes() -> dict[str, type[WeightinitInitializer]]:
    """One registered :class:`WeightinitInitializer` subclass per catalog entry, by class name
    (``"HeNormal"``); made once."""
    if not _CLASSES:
        for entry in catalog():
            name = _class_name(entry)
            cls = type(name, (WeightinitInitializer,), {"entry": entry, "__module__": __name__,
                                                       "__doc__": _docstring(entry, name)})  # fmt: skip
            _CLASSES[name] = keras.saving.register_keras_serializable(package=_PACKAGE)(cls)
    return _CLASSES


_CLASSES: dict[str, type[WeightinitInitializer]] = {}
