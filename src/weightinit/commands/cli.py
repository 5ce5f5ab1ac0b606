"""The ``weightinit`` command line (also ``python -m weightinit``)."""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import inspect
import json
import os
import sys
import tempfile
import types
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, NoReturn

import numpy as np
import torch
from torch import nn

from weightinit._checks import is_keras
from weightinit._table import format_table
from weightinit.initializers.catalog import catalog
from weightinit.planner import plan
from weightinit.plans.plan import RNGS
from weightinit.scheme.protocol import DATA, EXAMPLE_INPUT
from weightinit.scheme.registry import get_scheme, schemes
from weightinit.understanding.graph import map_tensors

__all__ = ["UsageError", "load_factory", "main"]


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


def _scheme_names(text: str) -> list[str]:
    """``torch,he,auto`` -> canonical names, each once."""
    names = [_scheme_name(part.strip()) for part in text.split(",") if part.strip()]
    if not names:
        raise argparse.ArgumentTypeError(
            f"name at least one scheme, e.g. torch,he,auto; got {text!r}"
        )
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
        raise argparse.ArgumentTypeError(
            f"{text!r} names {', '.join(map(repr, twice))} more than once: name each scheme once"
        )
    return names


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


def _shape(text: str) -> tuple[int, ...]:
    try:
        shape = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated sizes like 8,3,32,32, got {text!r}"
        ) from None
    if not shape or min(shape) < 1:
        raise argparse.ArgumentTypeError(f"sizes must be positive, got {text!r}")
    return shape


def _high(text: str) -> int:
    """``--input-int HIGH``: integers are drawn from [0, HIGH), so HIGH is at least 1."""
    try:
        high = int(text)
    except ValueError:
        high = 0
    if high < 1:
        raise argparse.ArgumentTypeError(
            f"expected a positive integer (inputs are drawn from [0, HIGH), e.g. the "
            f"vocabulary size), got {text!r}"
        )
    return high


def _out_folder(text: str) -> Path:
    """A folder the command can write its files into, checked before any work is done: the
    folder (and any missing parents) is created, a file made and removed in it, and whatever
    the check created is removed again."""
    out = Path(text)
    if out.exists() and not out.is_dir():
        raise argparse.ArgumentTypeError(f"{text!r} is a file, not a folder: name a folder")
    created = [p for p in (out, *out.parents) if not p.exists()]  # innermost first
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out):
            pass
    except OSError as err:
        raise argparse.ArgumentTypeError(
            f"cannot write into {text!r} ({err.strerror or err}): name a folder you can write to"
        ) from None
    finally:
        for folder in created:
            with contextlib.suppress(OSError):  # never made, or not empty: leave it
                folder.rmdir()
    return out


class UsageError(Exception):
    """A mistake in the command line or in the files it names: :func:`main` prints it on one
    line and exits with status 2."""


def load_factory(spec: str) -> Callable[[], nn.Module]:
    """``path/to/file.py:factory`` -> the callable ``factory`` defined in that file, which
    must take no arguments. Raises :class:`UsageError` naming what is wrong with ``spec``."""
    path, sep, attr = spec.rpartition(":")
    if not sep or not path or not attr:
        raise UsageError(f"expected path/to/file.py:factory, got {spec!r}")
    file = Path(path)
    if not file.is_file():
        raise UsageError(f"no such file {path!r}")
    module_spec = importlib.util.spec_from_file_location(file.stem, file)
    if module_spec is None:
        raise UsageError(f"{path!r} is not a Python file: name a .py file, e.g. model.py:{attr}")
    module = importlib.util.module_from_spec(module_spec)
    try:
        module_spec.loader.exec_module(module)
    except SyntaxError as err:  # errors the code raises when it runs keep their traceback
        raise UsageError(
            f"syntax error in {err.filename}, line {err.lineno}: {err.msg}: fix the file"
        ) from None
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise UsageError(f"{path} defines no callable {attr!r}")
    try:
        signature = inspect.signature(factory)
    except ValueError:  # no signature to read (some builtins): calling it will tell
        return factory
    try:
        signature.bind()
    except TypeError:
        raise UsageError(
            f"{path}: {attr}{signature} takes arguments, and the command calls it with none: "
            "name a function that builds the model without arguments"
        ) from None
    return factory


def _random_input(shape: tuple[int, ...], high: int | None) -> torch.Tensor:
    """Seeded input of ``shape``: integers in [0, high) when ``high`` is given, else randn."""
    gen = torch.Generator().manual_seed(0)
    if high is not None:
        return torch.randint(0, high, shape, generator=gen)
    return torch.randn(shape, generator=gen)


def _load_data(path: str) -> torch.Tensor | dict[str, torch.Tensor]:
    """``--data``: a tensor saved with ``torch.save`` (read with ``weights_only=True``, so
    nothing in the file runs), a dict of tensors (the model's keyword arguments, as Hugging
    Face models take them), or a ``.npy`` array."""
    npy = path.endswith(".npy")
    try:
        if npy:
            loaded = np.load(path, allow_pickle=False)
        else:
            with warnings.catch_warnings():  # a file pickled by other means warns, then fails
                warnings.simplefilter("ignore")
                loaded = torch.load(path, map_location="cpu", weights_only=True)
    except OSError as err:
        raise UsageError(f"--data: cannot read {path!r}: {err.strerror or err}") from None
    except Exception as err:  # noqa: BLE001  (a malformed file fails wherever the reader trips)
        said = str(err).strip().split("\n")[0].split(". ")[0]
        raise UsageError(
            f"--data: {path!r} is not {'a .npy array' if npy else 'a tensor saved with torch.save'}"
            f" ({type(err).__name__}: {said}); save one batch with torch.save(batch, path) or "
            "numpy.save(path, array)"
        ) from None
    if isinstance(loaded, np.ndarray):
        try:
            loaded = torch.from_numpy(loaded)
        except TypeError:
            raise UsageError(
                f"--data: {path!r} holds an array of {loaded.dtype}, not numbers: save a "
                "numeric array"
            ) from None
    if isinstance(loaded, dict):  # keyword arguments: {"input_ids": ids, ...}
        bad = next(((k, v) for k, v in loaded.items()
                    if not isinstance(k, str) or not isinstance(v, torch.Tensor)), None)  # fmt: skip
        if not loaded or bad is not None:
            what = "nothing" if not loaded else f"{bad[0]!r}: a {type(bad[1]).__name__}"
            raise UsageError(
                f"--data: {path!r} holds a dict with {what}; a dict is the model's keyword "
                "arguments, each a tensor: torch.save({'input_ids': ids}, path)"
            )
        return loaded
    if not isinstance(loaded, torch.Tensor):
        raise UsageError(
            f"--data: {path!r} holds a {type(loaded).__name__}, not a tensor or a dict of "
            "tensors: save one batch with torch.save(batch, path)"
        )
    return loaded


@contextlib.contextmanager
def _library_errors(command: str, inputs: str) -> Iterator[None]:
    """The library's errors about what it was given (ValueError, TypeError) as UsageErrors;
    a RuntimeError as one naming the ``inputs`` the model ran on (a shape that does not fit).
    Anything else keeps its traceback."""
    try:
        yield
    except (ValueError, TypeError) as err:
        raise UsageError(str(err)) from err
    except RuntimeError as err:
        if not inputs:  # the model ran on no input of the user's: not a usage error
            raise
        raise UsageError(
            f"{command}: the model failed on {inputs}: {err}; pass an input the model takes"
        ) from err


def _described_inputs(
    args: argparse.Namespace, data: torch.Tensor | dict[str, torch.Tensor] | None = None
) -> str:
    """The inputs the command line gave, for errors: ``--input-shape 2,5 --input-int 50``."""
    given = []
    if args.input_shape:
        shape = ",".join(map(str, args.input_shape))
        high = f" --input-int {args.input_int}" if args.input_int is not None else ""
        given.append(f"--input-shape {shape}{high}")
    if data is not None:
        if isinstance(data, dict):
            what = ", ".join(f"{k}: {v.dtype} {tuple(v.shape)}" for k, v in data.items())
            given.append(f"--data {args.data} (keyword arguments {what})")
        else:
            given.append(f"--data {args.data} (a {data.dtype} tensor of shape {tuple(data.shape)})")
    return " and ".join(given)


# what the command line passes for a scheme's needs (the planner's example_input=, data=)
_GIVEN_BY = {
    EXAMPLE_INPUT: "--input-shape SIZES (or --data PATH)",
    DATA: "--data PATH (a batch saved with torch.save: a tensor or a dict of them; or .npy)",
}


def _plan(args: argparse.Namespace) -> int:
    if args.input_int is not None and args.input_shape is None:
        raise UsageError(
            "plan: --input-int draws the inputs of --input-shape: pass --input-shape too"
        )
    chosen = get_scheme(args.scheme)
    if args.data is not None and chosen.calibrate is None:
        calibrating = [name for name in schemes() if get_scheme(name).calibrate is not None]
        raise UsageError(
            f"plan: --data is the batch a scheme calibrates on ({', '.join(calibrating)}); "
            f"scheme {chosen.name!r} does not calibrate: leave --data out (--input-shape traces "
            "a forward pass)"
        )
    with _library_errors("plan", ""):
        needs = chosen.needs_for(*chosen.take(dict(args.option))[:2])
    factory = load_factory(args.factory)
    given = {EXAMPLE_INPUT: args.input_shape or args.data, DATA: args.data}
    if _uses_keras(factory):  # a built Keras model knows its input's shape: it stands in
        given[EXAMPLE_INPUT] = True
    for need, why in needs.items():
        if need in _GIVEN_BY and given[need] is None:
            raise UsageError(f"plan: scheme {chosen.name!r} {why}: pass {_GIVEN_BY[need]}")
    data = _load_data(args.data) if args.data is not None else None
    model = factory()
    if is_keras(model):
        return _plan_keras(model, args, data)
    if not isinstance(model, nn.Module):
        raise UsageError(
            f"{args.factory} returned {type(model).__name__}, not a torch.nn.Module or a "
            "Keras model"
        )
    dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()), None)
    if data is not None and dtype is not None:  # numpy saves float64; the model has its own
        data = map_tensors(data, lambda t: t.to(dtype) if t.is_floating_point() else t)
    example = None
    if args.input_shape:
        example = _random_input(args.input_shape, args.input_int)
    with _library_errors("plan", _described_inputs(args, data)):
        result = plan(
            model, args.scheme, example_input=example, data=data, seed=args.seed, rng=args.rng,
            **dict(args.option),
        )  # fmt: skip
    print(result.to_json() if args.json else result)
    return 0


def _uses_keras(factory: Callable[[], Any]) -> bool:
    """Does the factory's file import Keras (so its model may be a Keras model, which needs no
    --input-shape for "auto")? Asked before the factory runs: a usage error runs nothing."""
    for value in getattr(factory, "__globals__", {}).values():  # keras, or from keras import X
        name = value.__name__ if isinstance(value, types.ModuleType) else None
        name = name or (getattr(value, "__module__", None) if callable(value) else None)
        if isinstance(name, str) and name.split(".")[0] == "keras":
            return True
    return False


def _plan_keras(model: Any, args: argparse.Namespace, data: Any) -> int:
    """``weightinit plan`` on a factory that returns a Keras model: weightinit.keras.plan
    (Keras's backend is the one the factory's file imported, from KERAS_BACKEND)."""
    from weightinit.keras import plan as plan_keras

    example = None
    if args.input_shape:
        example = _random_input(args.input_shape, args.input_int).numpy()
    seed = 0 if args.seed is None else args.seed  # as the torch models' plans (the help says)
    with _library_errors("plan", _described_inputs(args, data)):
        result = plan_keras(
            model, args.scheme, example_input=example, data=data, seed=seed, rng=args.rng,
            **dict(args.option),
        )  # fmt: skip
    print(result.to_json() if args.json else result)
    return 0


def _diagnose(args: argparse.Namespace) -> int:
    from weightinit.diagnostics.report import compare

    try:
        import matplotlib  # noqa: F401  (the figures need it: checked before any work)
    except ImportError:
        raise UsageError(
            'diagnose draws its figures with matplotlib: pip install "weightinit[demo]"'
        ) from None
    factory = load_factory(args.factory)
    inputs = _random_input(args.input_shape, args.input_int)
    with _library_errors("diagnose", _described_inputs(args)):
        model = factory()
        if is_keras(model):  # the Keras front end's compare (its backend: KERAS_BACKEND)
            from weightinit.keras import compare as compare_keras

            result = compare_keras(factory, args.schemes, inputs.numpy())
        else:
            result = compare(factory, args.schemes, inputs)
    out = args.out
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
    from weightinit.commands.demo import require_extra, run

    try:
        require_extra()
    except ImportError as err:
        raise UsageError(str(err)) from None
    run(args.out, quick=args.quick)
    return 0


def _reproduce(args: argparse.Namespace) -> int:
    from weightinit.commands.demo import require_extra
    from weightinit.reproduce.catalog import get, reproductions
    from weightinit.reproduce.runner import EXTRA, INSTALL, run

    if args.list:
        listed = reproductions()
        if args.json:
            print(json.dumps([{"number": r.number, "name": r.name, "title": r.title,
                               "paper": r.paper, "claim": r.claim, "setup": r.setup}
                              for r in listed], indent=2))  # fmt: skip
            return 0
        rows = [(str(r.number), r.name, r.title, r.paper) for r in listed]
        print(format_table(("#", "name", "claim", "paper"), rows, max_widths=(None, None, 46, 50)))
        print(f"\n{len(listed)} reproductions. Run one with `weightinit reproduce NAME [--quick]`, "
              "every one with `weightinit reproduce all`.")  # fmt: skip
        return 0
    if not args.names and args.page is not None:  # the page alone, from the results in --out
        from weightinit.reproduce.page import write_page

        print(f"page {write_page(args.out, args.page)} written from the results in {args.out}")
        return 0
    if not args.names:
        raise UsageError("name a reproduction (see `weightinit reproduce --list`) or 'all'; "
                         "or give --page alone to rewrite the page from the results in --out")  # fmt: skip
    for name in args.names:
        if name != "all":
            try:
                get(name)
            except ValueError as err:
                raise UsageError(str(err)) from None
    try:
        require_extra(EXTRA, INSTALL, "weightinit reproduce")
    except ImportError as err:
        raise UsageError(str(err)) from None
    page = args.page if args.page is not None else args.out / "README.md"
    results = run(args.names, quick=args.quick, seeds=args.seeds, out=args.out,
                  threads=args.threads, page=page)  # fmt: skip
    held = sum(r.outcome.holds for r in results)
    print(f"{held} of {len(results)} claims hold here; results in {args.out}, page {page}")
    return 0


def _bench(args: argparse.Namespace) -> int:
    from weightinit.commands.demo import require_extra
    from weightinit.reproduce.grid import FULL, QUICK, run
    from weightinit.reproduce.runner import EXTRA, INSTALL

    try:
        require_extra(EXTRA, INSTALL, "weightinit bench")
    except ImportError as err:
        raise UsageError(str(err)) from None
    previous = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    try:
        run(QUICK if args.quick else FULL, args.out, jobs=args.jobs)
    except ValueError as err:  # another grid's runs in --out
        raise UsageError(str(err)) from None
    finally:
        torch.set_num_threads(previous)
    print((args.out / "bench.md").read_text(encoding="utf-8"))
    print(f"table, figure and every run in {args.out} (bench.md, bench.png, bench.json)")
    return 0


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}")
    return value


class _Parser(argparse.ArgumentParser):
    """argparse with its errors on one line: ``weightinit plan: error: argument ...``."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status: 0, or 2 for a usage error (printed on
    one line to stderr, nothing written)."""
    parser = _Parser(prog="weightinit", description="Initialize neural networks well.")
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
        "--input-int",
        type=_high,
        metavar="HIGH",
        help="draw the --input-shape inputs as integers in [0, HIGH) (token ids)",
    )
    planning.add_argument(
        "--data",
        metavar="PATH",
        help="a batch for the schemes that calibrate on data (lsuv, auto): a tensor saved with "
        "torch.save, or a .npy array; floating data is cast to the model's dtype",
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
    planning.add_argument(
        "--seed",
        type=int,
        help="the seed the plan records (plan.apply draws with it); lsuv and auto calibrate on "
        "the values it draws (default 0)",
    )
    planning.add_argument(
        "--rng",
        choices=RNGS,
        help="the generator a seeded apply draws from, recorded in the plan: philox-v1 (the "
        "default: keyed by seed and parameter name) or torch (a torch generator seeded once)",
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
        "--input-int", type=_high, metavar="HIGH", help="integer inputs in [0, HIGH)"
    )
    diagnosing.add_argument(
        "--schemes",
        default="torch,he,auto",
        type=_scheme_names,
        help="comma-separated, default torch,he,auto",
    )
    diagnosing.add_argument(
        "--out", default="weightinit-report", type=_out_folder, help="folder for PNG, HTML, JSON"
    )
    diagnosing.set_defaults(run=_diagnose)
    demo = commands.add_parser(
        "demo",
        help="deep MLPs on MNIST-1D: torch's default init vs weightinit's, diagnosed and trained",
    )
    demo.add_argument("--quick", action="store_true", help="small and short (seconds), for tests")
    demo.add_argument(
        "--out", default="weightinit-demo", type=_out_folder, help="folder for figures and the page"
    )
    demo.set_defaults(run=_demo)
    reproducing = commands.add_parser(
        "reproduce",
        help="each paper's claim about initialization, measured here: figure, numbers, verdict",
    )
    reproducing.add_argument(
        "names", nargs="*", metavar="NAME", help="reproductions to run (see --list), or 'all'"
    )
    reproducing.add_argument("--list", action="store_true", help="list the reproductions")
    reproducing.add_argument("--json", action="store_true", help="with --list: print JSON")
    reproducing.add_argument(
        "--quick", action="store_true", help="a small slice of each (about 20 s), for tests"
    )
    reproducing.add_argument(
        "--seeds", type=_count, help="seeds per configuration (default 3; --quick: 1)"
    )
    reproducing.add_argument(
        "--threads", type=_count, default=1, help="torch threads (default 1: steady on shared CPUs)"
    )
    reproducing.add_argument(
        "--out", default="weightinit-reproduce", type=_out_folder,
        help="folder for the figures and the JSON results",
    )  # fmt: skip
    reproducing.add_argument(
        "--page", type=Path, metavar="PATH",
        help="markdown page showing every result in --out (default: OUT/README.md); with no "
        "NAME, only rewrites the page",
    )  # fmt: skip
    reproducing.set_defaults(run=_reproduce)
    benching = commands.add_parser(
        "bench",
        help="every scheme on MLPs, CNNs, residual MLPs, Transformers and LSTMs at depth 4, 30 "
        "and 100 on MNIST-1D: accuracy table and figure (hours; --quick: a slice, seconds)",
    )
    benching.add_argument(
        "--quick", action="store_true", help="a small slice (3 architectures, depth 4 and 30)"
    )
    benching.add_argument(
        "--threads", type=_count, default=1, help="torch threads (default 1: steady on shared CPUs)"
    )
    benching.add_argument(
        "--jobs", type=_count, default=1,
        help="worker processes, one thread each (default 1); results do not depend on it",
    )  # fmt: skip
    benching.add_argument(
        "--out", default="weightinit-bench", type=_out_folder,
        help="folder for bench.json (every run; an interrupted grid resumes from it), bench.md "
        "and bench.png",
    )  # fmt: skip
    benching.set_defaults(run=_bench)
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except UsageError as err:
        print(f"weightinit: {' '.join(str(err).split())}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # the reader went away (`weightinit plan ... | head`): not an error
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115  (Python flushes stdout at exit)
        return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
