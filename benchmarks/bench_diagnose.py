"""Time ``weightinit.diagnose`` with default arguments on an MLP and on two ImageNet-style CNNs.

    python benchmarks/bench_diagnose.py [--models mlp,mobilenet,resnet50] [--threads 1]
                                        [--profile mobilenet]

- mlp: 1000 x Linear(256, 256) + ReLU, a batch of 256 (issue #4: under 30 s on 2 cores, with
  the Jacobian estimated by random probes and, for comparison, exact);
- mobilenet: a MobileNetV3-small-like net (torchvision's layer configuration: inverted residual
  blocks with depthwise convolutions, squeeze-and-excitation, hardswish, BatchNorm; 1000 classes);
- resnet50: a ResNet-50-like net (bottleneck blocks [3, 4, 6, 3], BatchNorm, 1000 classes);

the CNNs on a batch of 2 images of 3 x 64 x 64 (issue #13: under 30 s on 2 cores with default
arguments). torchvision is not a dependency, so both are written here in its style.
``--profile NAME`` prints the 25 most expensive functions (cumulative time) of one run.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import time

import torch
from torch import nn

import weightinit as wi


def mlp(depth: int = 1000, width: int = 256) -> nn.Module:
    layers = [m for _ in range(depth) for m in (nn.Linear(width, width), nn.ReLU())]
    return nn.Sequential(*layers, nn.Linear(width, 10))


def _divisible(v: float, divisor: int = 8) -> int:
    new = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return new + divisor if new < 0.9 * v else new


def _conv_bn(cin: int, cout: int, k: int, stride: int = 1, groups: int = 1, act=None) -> list:
    layers = [nn.Conv2d(cin, cout, k, stride, (k - 1) // 2, groups=groups, bias=False),
              nn.BatchNorm2d(cout)]  # fmt: skip
    return layers + ([act()] if act is not None else [])


class SqueezeExcitation(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        squeeze = _divisible(channels // 4)
        self.fc1 = nn.Conv2d(channels, squeeze, 1)
        self.relu = nn.ReLU()
        self.fc2 = nn.Conv2d(squeeze, channels, 1)
        self.gate = nn.Hardsigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.mean((2, 3), keepdim=True)
        return x * self.gate(self.fc2(self.relu(self.fc1(s))))


class InvertedResidual(nn.Module):
    def __init__(self, cin, k, expanded, cout, se, act, stride) -> None:
        super().__init__()
        layers = _conv_bn(cin, expanded, 1, act=act) if expanded != cin else []
        layers += _conv_bn(expanded, expanded, k, stride, groups=expanded, act=act)
        layers += [SqueezeExcitation(expanded)] if se else []
        layers += _conv_bn(expanded, cout, 1)
        self.block = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.block(x)
        return x + y if self.residual else y


def mobilenet_v3_small(classes: int = 1000) -> nn.Module:
    """torchvision's mobilenet_v3_small configuration (width 1.0)."""
    re, hs = nn.ReLU, nn.Hardswish
    config = [(16, 3, 16, 16, True, re, 2), (16, 3, 72, 24, False, re, 2),
              (24, 3, 88, 24, False, re, 1), (24, 5, 96, 40, True, hs, 2),
              (40, 5, 240, 40, True, hs, 1), (40, 5, 240, 40, True, hs, 1),
              (40, 5, 120, 48, True, hs, 1), (48, 5, 144, 48, True, hs, 1),
              (48, 5, 288, 96, True, hs, 2), (96, 5, 576, 96, True, hs, 1),
              (96, 5, 576, 96, True, hs, 1)]  # fmt: skip
    return nn.Sequential(
        *_conv_bn(3, 16, 3, 2, act=hs),
        *[InvertedResidual(*c) for c in config],
        *_conv_bn(96, 576, 1, act=hs),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(576, 1024),
        nn.Hardswish(),
        nn.Dropout(0.2),
        nn.Linear(1024, classes),
    )


class Bottleneck(nn.Module):
    def __init__(self, cin: int, width: int, stride: int) -> None:
        super().__init__()
        cout = 4 * width
        self.block = nn.Sequential(
            *_conv_bn(cin, width, 1, act=nn.ReLU),
            *_conv_bn(width, width, 3, stride, act=nn.ReLU),
            *_conv_bn(width, cout, 1),
        )
        self.down = (
            nn.Sequential(*_conv_bn(cin, cout, 1, stride))
            if stride != 1 or cin != cout
            else nn.Identity()
        )
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.block(x) + self.down(x))


def resnet50(classes: int = 1000) -> nn.Module:
    """torchvision's resnet50 configuration: bottleneck blocks [3, 4, 6, 3]."""
    layers = [*_conv_bn(3, 64, 7, 2, act=nn.ReLU), nn.MaxPool2d(3, 2, 1)]
    cin = 64
    for i, (blocks, width) in enumerate(zip([3, 4, 6, 3], [64, 128, 256, 512])):
        for b in range(blocks):
            layers.append(Bottleneck(cin, width, 2 if b == 0 and i > 0 else 1))
            cin = 4 * width
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cin, classes))


def cases(names: list[str]):
    for name in names:  # each case from seed 0, whichever run before it
        torch.manual_seed(0)
        gen = torch.Generator().manual_seed(0)
        if name == "mlp":
            net = mlp()
            wi.init(net, "he", seed=0)
            x = torch.randn(256, 256, generator=gen)
            yield (
                "1000 x Linear(256, 256) + ReLU, batch 256, exact_limit=0",
                net,
                x,
                {"exact_limit": 0},
            )
            yield "1000 x Linear(256, 256) + ReLU, batch 256", net, x, {}
        else:
            net = {"mobilenet": mobilenet_v3_small, "resnet50": resnet50}[name]()
            x = torch.randn(2, 3, 64, 64, generator=gen)
            params = sum(p.numel() for p in net.parameters())
            yield f"{name} ({params / 1e6:.1f} M parameters), 2 x 3 x 64 x 64", net, x, {}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="mlp,mobilenet,resnet50")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--profile", default=None, help="profile the first case of this model")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    names = [args.profile] if args.profile else args.models.split(",")
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}")
    for label, net, x, kwargs in cases(names):
        profiler = cProfile.Profile() if args.profile else None
        start = time.perf_counter()
        if profiler:
            profiler.enable()
        report = wi.diagnose(net, x, **kwargs)
        if profiler:
            profiler.disable()
        elapsed = time.perf_counter() - start
        js = report.jacobian_summary
        print(
            f"| {label} | {elapsed:.1f} s | Jacobian {js['how']}, max {js['max']:.3g} | "
            f"verdict {report.verdict} |",
            flush=True,
        )
        if profiler:
            pstats.Stats(profiler).sort_stats("cumulative").print_stats(25)
            return


if __name__ == "__main__":
    main()
