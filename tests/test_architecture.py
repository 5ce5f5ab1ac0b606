"""The package's layers, as docs/architecture.md draws them: every import (module level and
inside functions; ``if TYPE_CHECKING:`` blocks excepted) goes to the same layer or a lower one,
and no modules import each other in a cycle. Also: the public surface is pinned, and the flat
layout's import paths still work, with a warning that names the new path."""

from __future__ import annotations

import ast
import importlib
import warnings
from pathlib import Path

import pytest

import weightinit as wi
from weightinit import _moved

PACKAGE = Path(wi.__file__).parent

#: layer of each module, by the longest matching prefix (lower layers never import upper ones)
LAYERS = {
    "weightinit._checks": 0,
    "weightinit._gc": 0,  # the garbage collector paused while a plan is built
    "weightinit._names": 0,
    "weightinit._table": 0,
    "weightinit._moved": 0,
    "weightinit.initializers": 1,  # tensor math: layouts, fills, variance, structured, catalog
    "weightinit.modules": 1,  # the activation modules recipes are written for
    "weightinit.understanding": 2,  # reading a model: knowledge, graph, branches, roles
    "weightinit.plans": 3,  # the Plan: data, JSON, and apply (the only writer)
    "weightinit.scheme": 4,  # the protocol, registry, classic, auto, lsuv
    "weightinit.recipes": 4,  # the architecture recipes (schemes too)
    "weightinit.frontends": 5,  # torch: settle, trace, propagate, stand-in, calibrate
    "weightinit.planner": 6,  # plan / calibrate / init / apply: the stages, no scheme named
    "weightinit.diagnostics": 7,
    "weightinit.commands": 8,  # the command line and the demo
    "weightinit.reproduce": 8,  # the papers' claims, measured: experiments, data, training, figures
    "weightinit.zoo": 8,
    "weightinit.keras": 8,  # the public surface for Keras: apply, plan, init, write, diagnose
    "weightinit.__main__": 8,
    "weightinit": 8,  # the package's public surface
}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def layer(module: str) -> int:
    best = max((k for k in LAYERS if module == k or module.startswith(k + ".")), key=len)
    return LAYERS[best]


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imports(module: str, path: Path | None = None) -> set[str]:
    """The weightinit modules ``module`` (at ``path``) imports, anywhere but under
    TYPE_CHECKING."""
    path = path or MODULES[module]
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("weightinit"))
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1])
                base = f"{base}.{node.module}" if node.module else base
            if base.startswith("weightinit"):
                for alias in node.names:
                    sub = f"{base}.{alias.name}"
                    found.add(sub if sub in MODULES else base)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text(), str(path)))
    found.discard(module)
    return found


GRAPH = {m: imports(m) for m in MODULES}


def test_every_module_has_a_layer():
    assert all(any(m == k or m.startswith(k + ".") for k in LAYERS) for m in MODULES)


def test_no_module_imports_an_old_path():
    old = set(_moved.MOVED)
    assert {m: sorted(GRAPH[m] & old) for m in MODULES if GRAPH[m] & old} == {}
    assert all(target in MODULES for targets in GRAPH.values() for target in targets)


def test_imports_go_down_the_layers():
    upward = [
        f"{m} (layer {layer(m)}) imports {t} (layer {layer(t)})"
        for m, targets in GRAPH.items()
        for t in sorted(targets)
        if layer(t) > layer(m)
    ]
    assert upward == []


def test_no_import_cycles():
    state: dict[str, int] = {}  # 1: on the stack, 2: done
    cycles = []

    def walk(m: str, stack: list[str]) -> None:
        state[m] = 1
        for t in sorted(GRAPH[m]):
            if state.get(t) == 1:
                cycles.append(" -> ".join(stack[stack.index(t) :] + [m, t]))
            elif t not in state:
                walk(t, stack + [m])
        state[m] = 2

    for m in sorted(GRAPH):
        if m not in state:
            walk(m, [])
    assert cycles == []


def test_the_walk_sees_upward_imports_inside_functions(tmp_path):
    """The checker itself: a function-level upward import is found, a TYPE_CHECKING one not."""
    fake = tmp_path / "fake.py"
    fake.write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from weightinit.planner import plan\n"
        "def f():\n    from weightinit.understanding.knowledge import layout_for\n"
    )
    found = imports("weightinit.initializers.fake", fake)
    assert found == {"weightinit.understanding.knowledge"}
    assert layer("weightinit.understanding.knowledge") > layer("weightinit.initializers.fake")


PUBLIC = [
    "Activation", "CatalogEntry", "Choice", "Comparison", "Geometry", "LayerStats", "Layout",
    "Moments", "Options", "Param", "Plan", "Report", "Row", "Scheme", "Survey", "activation",
    "apply", "block_constant_", "calibrate", "catalog", "compare", "constant_",
    "critical_point", "delta_orthogonal_", "diagnose", "fans", "gain", "gain_squared",
    "geometry", "get", "glorot_normal_", "glorot_uniform_", "haar_orthogonal", "he_normal_",
    "he_uniform_", "identity_", "init", "kaiming_normal_", "kaiming_uniform_", "layout_for",
    "lecun_normal_", "lecun_uniform_", "looks_linear_", "moments", "normal_", "ones_",
    "orthogonal_", "packed_variance_scaling_", "plan", "random_walk_", "random_walk_gain",
    "register_scheme", "schemes", "sparse_", "trunc_normal_", "truncated_std", "uniform_",
    "unitary_", "variance_scaling_", "xavier_normal_", "xavier_uniform_", "zer0_", "zeros_",
]  # fmt: skip


def test_the_public_surface_is_pinned():
    """A change to wi.__all__ shows up here, in review."""
    assert sorted(wi.__all__) == sorted(PUBLIC)
    assert all(hasattr(wi, name) for name in wi.__all__)


@pytest.mark.parametrize("old", sorted(_moved.MOVED))
def test_old_import_paths_work_with_a_warning_naming_the_new_one(old):
    module = importlib.import_module(old)
    new = [importlib.import_module(path) for path in _moved.MOVED[old]]
    for name in {n for m in new for n in m.__all__}:
        owner = next(m for m in new if hasattr(m, name))
        with pytest.warns(DeprecationWarning, match=f"{old} moved to {owner.__name__}"):
            assert getattr(module, name) is getattr(owner, name)
    with pytest.raises(AttributeError, match=f"{old} .moved to .* has no 'nothing'"):
        _ = module.nothing


def test_old_paths_do_not_shadow_the_functions():
    """``import weightinit.plan`` (the old module) leaves ``weightinit.plan`` the function."""
    importlib.import_module("weightinit.plan")
    importlib.import_module("weightinit.schemes")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        from weightinit.plans.plan import Plan  # noqa: F401  (the new paths never warn)
        from weightinit.scheme.registry import register_scheme  # noqa: F401
    assert callable(wi.plan) and callable(wi.schemes) and "he" in wi.schemes()
    with pytest.warns(DeprecationWarning, match="weightinit.scheme"):
        from weightinit.schemes import register_scheme as old
    assert old is wi.register_scheme
