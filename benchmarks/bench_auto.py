"""Planning "auto" against one plain forward pass of the same batch (issue 14).

    python benchmarks/bench_auto.py [--runs 5] [--threads 1 2] [--profile]

Models: the zoo MLP (``zoo.mlp(depth, "relu", width=w, in_features=w, batch=256)``) at depth 100
and 1000, width 256 and 64. Each run times ``wi.plan(model, "auto", example_input=x, seed=0)``
and ``model(x)`` under ``torch.no_grad()``, interleaved (forward, plan, forward), in the same
process and thread count; the ratio is the median plan time over the median forward time.
Target: the plan at most 10x one plain forward pass at depth 100 and 1000, width 256.

``--profile`` prints cProfile's top functions (cumulative and own time) for each model instead.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import statistics
import time
import warnings

import torch

import weightinit as wi
from weightinit import zoo

CASES = [(100, 256), (1000, 256), (100, 64), (1000, 64)]


def forward_s(model: torch.nn.Module, x: torch.Tensor) -> float:
    with torch.no_grad():
        start = time.perf_counter()
        model(x)
        return time.perf_counter() - start


def plan_s(model: torch.nn.Module, x: torch.Tensor) -> float:
    start = time.perf_counter()
    wi.plan(model, "auto", example_input=x, seed=0)
    return time.perf_counter() - start


def profile(model: torch.nn.Module, x: torch.Tensor, lines: int) -> None:
    profiler = cProfile.Profile()
    profiler.enable()
    wi.plan(model, "auto", example_input=x, seed=0)
    profiler.disable()
    stats = pstats.Stats(profiler)
    stats.sort_stats("cumulative").print_stats(lines)
    stats.sort_stats("tottime").print_stats(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="timed runs per model (default 5)")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--profile", action="store_true", help="cProfile one plan per model")
    parser.add_argument("--lines", type=int, default=30, help="profile lines (default 30)")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    print(f"torch {torch.__version__}, batch 256, ReLU MLP from weightinit.zoo\n")
    if not args.profile:
        print("| threads | depth | width | forward ms | plan ms | plan / forward |")
        print("|--:|--:|--:|--:|--:|--:|")
    for threads in args.threads:
        torch.set_num_threads(threads)
        for depth, width in CASES:
            model, x = zoo.mlp(depth, "relu", width=width, in_features=width, batch=256)
            if args.profile:
                print(f"\n=== depth {depth}, width {width}, threads {threads} ===")
                profile(model, x, args.lines)
                continue
            forward_s(model, x)  # warm-up: allocator, kernels
            plan_s(model, x)
            forwards, plans = [forward_s(model, x)], []
            for _ in range(args.runs):
                plans.append(plan_s(model, x))
                forwards.append(forward_s(model, x))
            fwd, pl = statistics.median(forwards), statistics.median(plans)
            print(
                f"| {threads} | {depth} | {width} | {fwd * 1e3:.1f} | {pl * 1e3:.0f} | "
                f"{pl / fwd:.1f}x |",
                flush=True,
            )


if __name__ == "__main__":
    main()
