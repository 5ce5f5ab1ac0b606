"""weightinit's LSUV against the ``lsuv`` package (0.3.0), at the same tolerance.

Install the peer only in a benchmark environment, never as a project dependency:

    pip install -c constraints.txt -e . && pip install --no-deps lsuv==0.3.0
    python benchmarks/bench_lsuv.py [--runs 3] [--threads N]

Models: a 100-layer MLP (width 256, ReLU) and a 50-layer plain 1-D CNN (16 channels, ReLU), each
with a 256-sample batch. Both sides start from the same model; the final per-layer output std
error |std - 1| is measured afterwards with independent hooks on the same batch.
Target (issue #5): >= 20x faster with the same or lower error.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch
from torch import nn

import weightinit as wi

try:
    from lsuv import lsuv_with_singlebatch
except ImportError as err:  # pragma: no cover - a benchmark-only dependency
    raise SystemExit("install the peer first: pip install --no-deps lsuv==0.3.0") from err

TOL = 0.1


def mlp() -> nn.Module:
    layers = [m for _ in range(100) for m in (nn.Linear(256, 256), nn.ReLU())]
    return nn.Sequential(*layers)


def cnn() -> nn.Module:
    layers = [nn.Conv1d(1, 16, 3, padding=1), nn.ReLU()]
    layers += [m for _ in range(49) for m in (nn.Conv1d(16, 16, 3, padding=1), nn.ReLU())]
    return nn.Sequential(*layers)


def std_errors(model: nn.Module, x: torch.Tensor) -> list[float]:
    stds: list[float] = []
    hooks = [
        m.register_forward_hook(lambda m, i, o: stds.append(o.detach().std().item()))
        for m in model.modules()
        if isinstance(m, (nn.Linear, nn.Conv1d))
    ]
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    return [abs(s - 1.0) for s in stds]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="rows per model (default 3)")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    gen = torch.Generator().manual_seed(0)
    cases = {
        "100-layer MLP (256 wide)": (mlp, torch.randn(256, 256, generator=gen)),
        "50-layer plain CNN (16 ch)": (cnn, torch.randn(256, 1, 40, generator=gen)),
    }
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, tolerance {TOL}\n")
    print(
        "| model | weightinit s | lsuv 0.3.0 s | speed-up | max / median |std-1|, weightinit | "
        "max / median |std-1|, lsuv |"
    )
    print("|---|--:|--:|--:|---|---|")
    for name, (make, x) in cases.items():
        for _ in range(args.runs):
            torch.manual_seed(0)
            base = make()
            ours, theirs = copy.deepcopy(base), copy.deepcopy(base)
            start = time.perf_counter()
            wi.init(ours, "lsuv", data=x, seed=0, tol=TOL)
            t_ours = time.perf_counter() - start
            start = time.perf_counter()
            lsuv_with_singlebatch(theirs, x, std_tol=TOL, verbose=False)
            t_theirs = time.perf_counter() - start
            e_ours, e_theirs = std_errors(ours, x), std_errors(theirs, x)
            print(
                f"| {name} | {t_ours:.3f} | {t_theirs:.2f} | {t_theirs / t_ours:.1f}x | "
                f"{max(e_ours):.3f} / {statistics.median(e_ours):.3f} | "
                f"{max(e_theirs):.3f} / {statistics.median(e_theirs):.3f} |"
            )


if __name__ == "__main__":
    main()
