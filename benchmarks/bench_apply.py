"""Time whole-model initialization against the plain loops of torch.nn.init calls it replaces.

(a) a model of 10,000 small layers: ``plan.apply`` vs a loop of kaiming_normal_/zeros_ calls;
(b) a stack of about 1B parameters: ``plan.apply`` vs the raw in-place fills, in place
    (``atomic=False``) and atomic (new values in fresh memory, then committed);
(c) ``plan`` on the same stack built on the meta device: time, and no parameter memory.

    python benchmarks/bench_apply.py            # full run (about 8 GB of memory for (b))
    python benchmarks/bench_apply.py --quick    # small sizes, a smoke run

Ratios are weightinit time / torch time (lower is better; targets: (a) <= 1.2x, (b) <= 1.1x).
"""

from __future__ import annotations

import argparse
import math
import platform
import statistics
import time

import torch
from torch import nn

import weightinit as wi


def rss_mib() -> float:
    """Resident memory now (not the peak), from /proc."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def best_of(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def small_layers(n: int) -> nn.Module:
    return nn.Sequential(*[nn.Linear(8, 8) for _ in range(n)])


def torch_loop(model: nn.Module, gen: torch.Generator) -> None:
    for m in model.modules():
        if isinstance(m, nn.Linear):
            nn.init.kaiming_normal_(m.weight, nonlinearity="linear", generator=gen)
            nn.init.zeros_(m.bias)


def stack(width: int, depth: int, device: str = "cpu") -> nn.Module:
    with torch.device(device):
        return nn.Sequential(*[nn.Linear(width, width, bias=False) for _ in range(depth)])


def raw_fills(model: nn.Module, gen: torch.Generator) -> None:
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 1.0 / math.sqrt(p.shape[1]), generator=gen)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    n_small, width, depth, repeats = (1_000, 1024, 8, 5) if args.quick else (10_000, 8192, 15, 5)
    print(
        f"torch {torch.__version__}, weightinit {wi.__version__}, threads "
        f"{torch.get_num_threads()}, Python {platform.python_version()}"
    )
    rows = []

    model = small_layers(n_small)
    gen = torch.Generator().manual_seed(0)
    plan = wi.plan(model, "he")  # followed by the next Linear: gain 1, zero biases
    t_plan_small = best_of(lambda: wi.plan(model, "he"), repeats)
    theirs = best_of(lambda: torch_loop(model, gen), repeats)
    in_place = best_of(lambda: plan.apply(model, generator=gen, atomic=False), repeats)
    atomic = best_of(lambda: plan.apply(model, generator=gen), repeats)
    rows.append((f"(a) apply(atomic=False), {n_small} x Linear(8, 8)", in_place, theirs, "<= 1.2x"))
    rows.append(
        (f"(a') apply (atomic, the default), {n_small} x Linear(8, 8)", atomic, theirs, "-")
    )

    big = stack(width, depth)
    params = sum(p.numel() for p in big.parameters())
    plan_big = wi.plan(big, "lecun", distribution="normal")
    theirs = best_of(lambda: raw_fills(big, gen), repeats)
    in_place = best_of(lambda: plan_big.apply(big, generator=gen, atomic=False), repeats)
    atomic = best_of(lambda: plan_big.apply(big, generator=gen), repeats)
    label = f"{depth} x Linear({width}, {width}) = {params / 1e9:.2f}B"
    rows.append((f"(b) apply(atomic=False), {label}", in_place, theirs, "<= 1.1x"))
    rows.append((f"(b') apply (atomic, the default), {label}", atomic, theirs, "-"))
    big = None  # free the 4 GB before planning the meta stack

    rss_before = rss_mib()
    meta = stack(width, depth, "meta")
    t_meta = best_of(lambda: wi.plan(meta, "he"), repeats)
    rss_after = rss_mib()

    print("\n| case | weightinit s | torch s | ratio (weightinit / torch) | target |")
    print("|---|--:|--:|--:|---|")
    for name, o, t, target in rows:
        print(f"| {name} | {o:.3f} | {t:.3f} | {o / t:.3f}x | {target} |")
    print(
        f"| (c) plan on the meta stack ({params / 1e9:.2f}B params) | {t_meta:.3f} | - | - | < 2 s |"
    )
    print(
        f"\nplan of (a) (fx trace included, median of {repeats}): {t_plan_small:.3f} s. Resident memory: "
        f"{rss_before:.0f} MiB before building and planning the meta stack, {rss_after:.0f} MiB "
        f"after (its parameters would take {params * 4 / 2**20:.0f} MiB)"
    )


if __name__ == "__main__":
    main()
