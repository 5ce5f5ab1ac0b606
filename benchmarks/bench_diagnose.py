"""Time ``weightinit.diagnose`` on a 1000-layer, width-256 ReLU MLP and a 256-sample batch.

    python benchmarks/bench_diagnose.py [--depth 1000] [--width 256] [--batch 256]

Target (issue #4): under 30 s on 2 CPU cores with the Jacobian estimated by random probes.
"""

from __future__ import annotations

import argparse
import time

import torch
from torch import nn

import weightinit as wi


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--depth", type=int, default=1000)
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--batch", type=int, default=256)
    args = parser.parse_args()
    layers = [m for _ in range(args.depth) for m in (nn.Linear(args.width, args.width), nn.ReLU())]
    net = nn.Sequential(*layers, nn.Linear(args.width, 10))
    wi.init(net, "he", seed=0)
    x = torch.randn(args.batch, args.width, generator=torch.Generator().manual_seed(0))
    print(
        f"torch {torch.__version__}, threads {torch.get_num_threads()}; {args.depth} x "
        f"Linear({args.width}, {args.width}) + ReLU, batch {args.batch}"
    )
    for label, kwargs in (("estimated Jacobian (8 probes)", {"exact_limit": 0}),
                          ("exact Jacobian", {})):  # fmt: skip
        start = time.perf_counter()
        report = wi.diagnose(net, x, **kwargs)
        elapsed = time.perf_counter() - start
        print(
            f"| {label} | {elapsed:.1f} s | verdict {report.verdict} | "
            f"singular values max {max(report.singular_values):.3g} |"
        )


if __name__ == "__main__":
    main()
