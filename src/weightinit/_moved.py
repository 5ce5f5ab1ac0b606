"""The import paths of the flat layout before 0.2 (``weightinit.graph``, ``weightinit.schemes``,
...), kept for one release: each old module is a stand-in whose names resolve to the module they
moved to, with a ``DeprecationWarning`` that names the new path.
"""

from __future__ import annotations

import importlib
import sys
import types
import warnings

#: old module path -> the modules that hold its code now (names are looked up in this order)
MOVED = {
    "weightinit.activations": ("weightinit.initializers.activations",),
    "weightinit.layout": ("weightinit.initializers.layout",),
    "weightinit.fills": ("weightinit.initializers.fills",),
    "weightinit.variance": ("weightinit.initializers.variance",),
    "weightinit.structured": ("weightinit.initializers.structured",),
    "weightinit.registry": ("weightinit.initializers.catalog",),
    "weightinit.knowledge": ("weightinit.understanding.knowledge",),
    "weightinit.graph": ("weightinit.understanding.graph",),
    "weightinit.structure": ("weightinit.understanding.branches",),
    "weightinit.recipes.roles": ("weightinit.understanding.roles",),
    "weightinit.recipes.structured": (
        "weightinit.recipes.weight_structure",
        "weightinit.understanding.crelu",
    ),
    "weightinit.plan": ("weightinit.plans.plan", "weightinit.understanding.knowledge"),
    "weightinit.schemes": (
        "weightinit.scheme.protocol",
        "weightinit.scheme.registry",
        "weightinit.scheme.classic",
    ),
    "weightinit.auto": ("weightinit.scheme.auto", "weightinit.frontends.torch.propagation"),
    "weightinit.lsuv": (
        "weightinit.scheme.lsuv",
        "weightinit.frontends.torch.calibration",
        "weightinit.understanding.recurrent",
    ),
    "weightinit.model": ("weightinit.planner",),
    "weightinit.figures": ("weightinit.diagnostics.figures",),
    "weightinit.cli": ("weightinit.commands.cli",),
    "weightinit.demo": ("weightinit.commands.demo",),
}


class _Moved(types.ModuleType):
    """An old module path: every name is looked up in the new modules, with a warning."""

    def __init__(self, old: str, new: tuple[str, ...]):
        super().__init__(old, f"Moved to {' and '.join(new)}.")
        self.__dict__["_new"] = new

    def __getattr__(self, name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        for path in self._new:
            module = importlib.import_module(path)
            if hasattr(module, name):
                warnings.warn(
                    f"{self.__name__} moved to {path} in weightinit 0.2: import {name} from "
                    f"{path}; the old path goes in 0.3",
                    DeprecationWarning,
                    stacklevel=2,
                )
                return getattr(module, name)
        raise AttributeError(
            f"{self.__name__} (moved to {' and '.join(self._new)}) has no {name!r}"
        )

    def __dir__(self) -> list[str]:
        return sorted({n for p in self._new for n in dir(importlib.import_module(p))})


def install() -> dict[str, types.ModuleType]:
    """Register a stand-in for every old path that is not a module of its own now. Registered
    in ``sys.modules`` up front, so importing an old path never rebinds a package attribute
    (``weightinit.plan`` and ``weightinit.schemes`` stay the functions)."""
    made = {}
    for old, new in MOVED.items():
        if old not in sys.modules:
            sys.modules[old] = made[old] = _Moved(old, new)
    return made


def attribute(package: str, name: str) -> types.ModuleType:
    """A package's ``__getattr__``: the stand-in for ``package.name``, if it is an old path."""
    module = sys.modules.get(f"{package}.{name}")
    if isinstance(module, _Moved):
        return module
    raise AttributeError(f"module {package!r} has no attribute {name!r}")
