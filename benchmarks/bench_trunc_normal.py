"""Time trunc_normal_ against a plain normal_ before and after issue 14 (no rejection pass
where the bounds lie beyond the largest |z| torch's CPU normal_ can write).

Three fills of the same float32 tensor, each with its own seeded ``torch.Generator``:
``Tensor.normal_`` (the peer), weightinit's ``trunc_normal_`` as it was before (``fills.py``
at ``--before``, read with ``git show`` and loaded as a separate module) and as it is now. Two
cases: torchtitan's absolute bounds +-2 at std 0.02 (z = +-100: nothing can be cut) and +-2
std (4.6% cut: the rejection pass must run). The calls rotate (each repeat starts with the
next fill) so that drift in machine speed hits all alike; one warm-up call each, then the
median of ``--repeats`` timed calls (``time.perf_counter``), at each thread count of
``--threads`` (``torch.set_num_threads``).

    python benchmarks/bench_trunc_normal.py                  # 4096x4096, threads 1 and 2
    python benchmarks/bench_trunc_normal.py --max-z          # also: largest |z| of 2^26 draws

ratio = median over the repeats of fill time / normal_ time in the same repeat (1.00: as
fast as a plain normal_); the ms columns are plain medians. ``--max-z`` draws 2^26
values with each of torch's CPU normal paths and prints the largest |z| next to the bound the
fast path relies on (a sanity check; the bound itself is derived from torch's source, in
``weightinit/initializers/fills.py``).
"""

from __future__ import annotations

import argparse
import importlib.util
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from unittest import mock

import torch

import weightinit as wi
from weightinit.initializers import catalog, fills

ROOT = Path(__file__).resolve().parent.parent
FILLS = "src/weightinit/initializers/fills.py"


def load_before(rev: str):
    """fills.py at ``rev``, as a module of its own (its catalog registrations skipped)."""
    source = subprocess.run(
        ["git", "show", f"{rev}:{FILLS}"], cwd=ROOT, check=True, capture_output=True, text=True
    ).stdout
    path = Path(tempfile.mkdtemp()) / "fills_before.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("fills_before", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    with mock.patch.object(catalog, "register", lambda *a, **k: lambda f: f):
        spec.loader.exec_module(module)
    return module


def time_case(fns: dict, shape, repeats: int) -> dict[str, list[float]]:
    """Each fill's time in each repeat (the fills of a repeat back to back, rotated)."""
    names = list(fns)
    tensors = {n: torch.empty(shape) for n in names}
    gens = {n: torch.Generator().manual_seed(0) for n in names}
    for n in names:  # warm-up
        fns[n](tensors[n], gens[n])
    times: dict[str, list[float]] = {n: [] for n in names}
    for r in range(repeats):
        for n in names[r % len(names) :] + names[: r % len(names)]:
            start = time.perf_counter()
            fns[n](tensors[n], gens[n])
            times[n].append(time.perf_counter() - start)
    return times


def ratio(times: dict[str, list[float]], name: str) -> float:
    """Median over the repeats of time / normal_ time in the same repeat: a per-repeat ratio
    cancels the slow spells of a shared machine, which a ratio of two medians does not."""
    return statistics.median(t / n for t, n in zip(times[name], times["normal"]))


def max_z(log2_n: int) -> None:
    """Largest |z| of 2^log2_n draws on each CPU path, against the bound the fast path uses."""
    chunk = 1 << 22
    paths = [
        ("float32, contiguous (float uniforms)", torch.float32, True),
        ("bfloat16, contiguous (float uniforms)", torch.bfloat16, True),
        ("float16, contiguous (float uniforms)", torch.float16, True),
        ("float64, contiguous (double uniforms)", torch.float64, True),
        ("float32, strided (double uniforms)", torch.float32, False),
    ]
    print(f"\nLargest |z| of 2^{log2_n} draws per path (seed 0)\n")
    print("| path | largest abs(z) | bound used |")
    print("|---|---:|---:|")
    for label, dtype, contiguous in paths:
        g = torch.Generator().manual_seed(0)
        biggest = 0.0
        for _ in range(max(1, (1 << log2_n) // chunk)):
            if contiguous:
                t = torch.empty(chunk, dtype=dtype)
            else:  # every other element of a buffer: normal_'s serial double path
                t = torch.empty(2 * chunk, dtype=dtype)[::2]
            biggest = max(biggest, t.normal_(generator=g).abs().max().item())
        bound = fills._normal_reach(dtype, chunk if contiguous else 1)
        print(f"| {label} | {biggest:.4f} | {bound:.4f} |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", default="9bc5a8c", help="revision of the old fills.py")
    parser.add_argument("--shape", default="4096x4096")
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--max-z", action="store_true", help="also report the largest |z|")
    parser.add_argument("--max-z-log2", type=int, default=26)
    args = parser.parse_args(argv)
    shape = tuple(int(s) for s in args.shape.split("x"))
    before = load_before(args.before)
    print(f"torch {torch.__version__}, Python {platform.python_version()}, {platform.machine()}")
    print(f"before: {FILLS} at {args.before}; shape {args.shape} float32")
    print(
        f"{args.repeats} rotated repeats; ms: median; ratio: median of per-repeat time / normal_\n"
    )
    cases = {
        "absolute +-2, std 0.02 (torchtitan)": {"std": 0.02, "bounds": "absolute"},
        "+-2 std, std 0.02": {"std": 0.02, "bounds": "std"},
    }
    print("| case | threads | normal_ ms | before ms | ratio | after ms | ratio |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for threads in (int(s) for s in args.threads.split(",")):
        torch.set_num_threads(threads)
        for label, kw in cases.items():
            fns = {
                "normal": lambda t, g, kw=kw: t.normal_(0.0, kw["std"], generator=g),
                "before": lambda t, g, kw=kw: before.trunc_normal_(
                    t, 0.0, a=-2.0, b=2.0, **kw, generator=g
                ),
                "after": lambda t, g, kw=kw: wi.trunc_normal_(
                    t, 0.0, a=-2.0, b=2.0, **kw, generator=g
                ),
            }
            times = time_case(fns, shape, args.repeats)
            ms = {n: 1e3 * statistics.median(ts) for n, ts in times.items()}
            print(
                f"| {label} | {threads} | {ms['normal']:.1f} | {ms['before']:.1f} "
                f"| {ratio(times, 'before'):.2f} | {ms['after']:.1f} "
                f"| {ratio(times, 'after'):.2f} |",
                flush=True,
            )
    if args.max_z:
        max_z(args.max_z_log2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
