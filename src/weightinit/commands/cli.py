"""The ``weightinit`` command line (also ``python -m weightinit``)."""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from weightinit._table import format_table
from weightinit.initializers.catalog import catalog
from weightinit.planner import plan
from weightinit.scheme.registry import get_scheme, schemes

__all__ = ["load_factory", "main"]


def _list(args: argparse.Namespace) -> int:
    entries = catalog()
    if args.json:
        print(
            json.dumps(
                [
                    {
                        "name": e.name,
                        "function": f"weightinit.{e.function.__name__}",
                        "aliases": list(e.aliases),
                        "formula": e.formula,
                        "activations": e.activations,
                        "paper": e.paper,
                    }
                    for e in entries
                ],
                indent=2,
            )
        )
        return 0
    rows = [
        (e.name, ", ".join(e.aliases) or "-", e.formula, e.activations, e.paper) for e in entries
    ]
    headers = ("name", "aliases", "formula", "recommended for", "paper")
    print(format_table(headers, rows, max_widths=(None, 16, 44, 34, 30)))
    print(
        f"\n{len(entries)} initializers. Call them as weightinit.<name>_(tensor, ...) "
        "or look one up with weightinit.get('<name or alias>')."
    )
    return 0


def _schemes(args: argparse.Namespace) -> int:
    described = schemes()
    if args.json:
        print(json.dumps(described, indent=2))
        return 0
    print(format_table(("scheme", "what it does"), list(described.items()), max_widths=(None, 90)))
    print(
        f"\n{len(described)} schemes. Use one with weightinit.init(model, '<scheme>', ...) or "
        "weightinit plan file.py:factory --scheme <scheme> [--option name=value]."
    )
    return 0


def _scheme_name(text: str) -> str:
    """A scheme's canonical name from any of its names (case, aliases), or the registry's
    error with its close matches."""
    try:
        return get_scheme(text).name
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def _option(text: str) -> tuple[str, Any]:
    """``name=value``: the value read as JSON (numbers, true/false, null, lists, dicts), else
    as a string."""
    name, sep, value = text.partition("=")
    if not sep or not name.isidentifier():
        raise argparse.ArgumentTypeError(
            f"expected name=value, e.g. q_star=0.01 or branches='[\"blocks.*\"]', got {text!r}"
        )
    try:
        return name, json.loads(value)
    except json.JSONDecodeError:
        return name, value


def load_factory(spec: str) -> Callable[[], nn.Module]:
    """``path/to/file.py:factory`` -> the callable ``factory`` defined in that file."""
    path, sep, attr = spec.rpartition(":")
    if not sep or not path or not attr:
        raise SystemExit(f"weightinit: expected path/to/file.py:factory, got {spec!r}")
    file = Path(path)
    if not file.is_file():
        raise SystemExit(f"weightinit: no such file {path!r}")
    module_spec = importlib.util.spec_from_file_location(file.stem, file)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise SystemExit(f"weightinit: {path} defines no callable {attr!r}")
    return factory


def _shape(text: str) -> tuple[int, ...]:
    try:
        shape = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated sizes like 8,3,32,32, got {text!r}"
        )
    if not shape or min(shape) < 1:
        raise argparse.ArgumentTypeError(f"sizes must be positive, got {text!r}")
    return shape


def _plan(args: argparse.Namespace) -> int:
    model = load_factory(args.factory)()
    if not isinstance(model, nn.Module):
        raise SystemExit(
            f"weightinit: {args.factory} returned {type(model).__name__}, not a module"
        )
    example = None
    if args.input_shape:
        gen = torch.Generator().manual_seed(0)
        if args.input_int:
            example = torch.randint(0, args.input_int, args.input_shape, generator=gen)
        else:
            example = torch.randn(args.input_shape, generator=gen)
    try:
        result = plan(model, args.scheme, example_input=example, **dict(args.option))
    except (ValueError, TypeError) as err:
        raise SystemExit(f"weightinit: {err}")
    print(result.to_json() if args.json else result)
    return 0


def _diagnose(args: argparse.Namespace) -> int:
    from weightinit.diagnostics.report import compare

    factory = load_factory(args.factory)
    gen = torch.Generator().manual_seed(0)
    if args.input_int:
        inputs = torch.randint(0, args.input_int, args.input_shape, generator=gen)
    else:
        inputs = torch.randn(args.input_shape, generator=gen)
    try:
        schemes_ = [_scheme_name(s.strip()) for s in args.schemes.split(",") if s.strip()]
    except argparse.ArgumentTypeError as err:
        raise SystemExit(f"weightinit: --schemes: {err}")
    try:
        result = compare(factory, schemes_, inputs)
    except (ValueError, TypeError) as err:
        raise SystemExit(f"weightinit: {err}")
    out = Path(args.out)
    for name, report in result.items():
        print(f"== {name} ==\n{report}\n")
    result.plot(out / "signal.png", title=args.factory)
    result.to_html(out / "index.html", title=f"weightinit diagnose {args.factory}")
    (out / "report.json").write_text(result.to_json())
    print(
        f"verdicts:\n{result}\nwrote {out / 'signal.png'}, {out / 'index.html'}, "
        f"{out / 'report.json'}"
    )
    return 0


def _demo(args: argparse.Namespace) -> int:
    from weightinit.commands.demo import run

    run(args.out, quick=args.quick)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="weightinit", description="Initialize neural networks well."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    listing = commands.add_parser("list", help="print the catalog of initializers")
    listing.add_argument("--json", action="store_true", help="print JSON instead of a table")
    listing.set_defaults(run=_list)
    listing_schemes = commands.add_parser(
        "schemes",
        help="print the whole-model schemes (he, auto, fixup, gpt2, ...) and what each does",
    )
    listing_schemes.add_argument("--json", action="store_true", help="print JSON")
    listing_schemes.set_defaults(run=_schemes)
    planning = commands.add_parser(
        "plan", help="print what a scheme would write to every parameter of a model, and why"
    )
    planning.add_argument("factory", help="path/to/file.py:factory, a function returning the model")
    planning.add_argument(
        "--scheme",
        default="he",
        type=_scheme_name,
        help="a name from `weightinit schemes` (any case, aliases); default: he",
    )
    planning.add_argument(
        "--input-shape",
        type=_shape,
        help="trace a forward pass on randn of this shape, e.g. 8,3,32,32",
    )
    planning.add_argument(
        "--input-int", type=int, metavar="HIGH", help="draw integer inputs in [0, HIGH) (token ids)"
    )
    planning.add_argument(
        "--option",
        type=_option,
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a scheme option (repeatable; the value is read as JSON, else as text), "
        "e.g. --option q_star=0.01 --option 'branches=[\"blocks.*\"]'",
    )
    planning.add_argument("--json", action="store_true", help="print the plan as JSON")
    planning.set_defaults(run=_plan)
    diagnosing = commands.add_parser(
        "diagnose", help="signal propagation of a model under several schemes: table, PNG, HTML"
    )
    diagnosing.add_argument(
        "factory", help="path/to/file.py:factory, a function returning the model"
    )
    diagnosing.add_argument("--input-shape", type=_shape, required=True, help="e.g. 64,40")
    diagnosing.add_argument(
        "--input-int", type=int, metavar="HIGH", help="integer inputs in [0, HIGH)"
    )
    diagnosing.add_argument(
        "--schemes", default="torch,he,auto", help="comma-separated, default torch,he,auto"
    )
    diagnosing.add_argument("--out", default="weightinit-report", help="folder for PNG, HTML, JSON")
    diagnosing.set_defaults(run=_diagnose)
    demo = commands.add_parser(
        "demo",
        help="deep MLPs on MNIST-1D: torch's default init vs weightinit's, diagnosed and trained",
    )
    demo.add_argument("--quick", action="store_true", help="small and short (seconds), for tests")
    demo.add_argument("--out", default="weightinit-demo", help="folder for figures and the page")
    demo.set_defaults(run=_demo)
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except BrokenPipeError:  # the reader went away (`weightinit plan ... | head`): not an error
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115  (Python flushes stdout at exit)
        return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
