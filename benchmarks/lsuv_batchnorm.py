"""LSUV and "auto" on MobileNetV3s with BatchNorm: the output std with the norm layers on batch
statistics (as calibration and training normalize; dropout off) and in eval mode (running
statistics), on the calibration batch and on a fresh batch of the same distribution (issue 13:
eval mode used to see the norm layers' fresh statistics). The numbers are in docs/automatic.md.

    python benchmarks/lsuv_batchnorm.py            # the small model of the tests, 128 images
    python benchmarks/lsuv_batchnorm.py --large    # MobileNetV3-Large's blocks, 32 images of 112 x 112

The models are tests/test_lsuv_batchnorm.py's (torchvision's layout and names).
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import torch

import weightinit as wi

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from test_lsuv_batchnorm import MobileNetV3, batch_statistics, eval_mode

# torchvision's mobilenet_v3_large blocks: (input, kernel, expanded, output, SE, hardswish, stride)
LARGE = [
    (16, 3, 16, 16, False, False, 1), (16, 3, 64, 24, False, False, 2),
    (24, 3, 72, 24, False, False, 1), (24, 5, 72, 40, True, False, 2),
    (40, 5, 120, 40, True, False, 1), (40, 5, 120, 40, True, False, 1),
    (40, 3, 240, 80, False, True, 2), (80, 3, 200, 80, False, True, 1),
    (80, 3, 184, 80, False, True, 1), (80, 3, 184, 80, False, True, 1),
    (80, 3, 480, 112, True, True, 1), (112, 3, 672, 112, True, True, 1),
    (112, 5, 672, 160, True, True, 2), (160, 5, 960, 160, True, True, 1),
    (160, 5, 960, 160, True, True, 1),
]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--large", action="store_true", help="MobileNetV3-Large's blocks")
    args = parser.parse_args()
    size, n = (112, 32) if args.large else (32, 128)
    gen = torch.Generator().manual_seed(0)
    x, fresh = (torch.randn(n, 3, size, size, generator=gen) for _ in range(2))
    print(f"{'large' if args.large else 'small'}: {n} images of {size} x {size}")
    print("scheme | batch statistics: calibration, fresh | eval mode: calibration, fresh")
    for scheme in ("he", "lsuv", "auto"):
        torch.manual_seed(0)
        model = MobileNetV3(LARGE, 1280, 1000) if args.large else MobileNetV3()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            wi.init(model, scheme, seed=0, **({} if scheme == "he" else {"data": x}))
        stds = [f(model, b).std().item() for f in (batch_statistics, eval_mode) for b in (x, fresh)]
        print(f"{scheme} | " + " | ".join(f"{a:.3g}, {b:.3g}" for a, b in (stds[:2], stds[2:])))


if __name__ == "__main__":
    main()
