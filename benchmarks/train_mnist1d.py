"""Does the initialization still matter after training? A quick check on MNIST-1D.

30-layer plain MLPs (width 100, ReLU and tanh) are initialized by each scheme (LSUV calibrates on
a batch of 256 training inputs, the others trace it), trained with SGD (momentum 0.9, batch 128)
for a fixed number of epochs at each learning rate of a small grid, and evaluated on the test
set. For each scheme and activation the learning rate with the best mean test accuracy over the
seeds is reported, with that accuracy's mean and standard deviation over the seeds.

    python benchmarks/train_mnist1d.py                       # about 6 minutes (one CPU thread)
    python benchmarks/train_mnist1d.py --schemes torch,he,lsuv --quick

Training, data and initialization are the demo's (``weightinit.commands.demo``); MNIST-1D is generated
locally and cached on first use.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn

from weightinit.commands.demo import initialize, load_mnist1d, mlp, tensors, train

DEPTH, WIDTH = 30, 100
ACTIVATIONS = {"ReLU": nn.ReLU, "tanh": nn.Tanh}
LEARNING_RATES = (0.003, 0.01, 0.03)


def accuracies(
    scheme: str, activation: type[nn.Module], data: dict, epochs: int, lr: float, seeds: list[int]
) -> list[float]:
    """Test accuracy after ``epochs`` for each seed (the seed draws the weights and the batches)."""
    batch = tensors(data)[0][:256]
    result = []
    for seed in seeds:
        torch.manual_seed(seed)
        model = mlp(DEPTH, WIDTH, activation)
        initialize(model, scheme, batch, seed)
        result.append(train(model, data, epochs, seed, lr=lr))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--schemes", default="torch,he,auto,lsuv", help="comma-separated")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="2 epochs, 2 seeds: a smoke run")
    args = parser.parse_args()
    schemes = [s.strip() for s in args.schemes.split(",") if s.strip()]
    start = time.perf_counter()
    data = load_mnist1d()
    probe = tensors(data)[0][:256]
    for scheme in schemes:  # fail now on an unknown scheme, not after minutes of training
        try:
            initialize(mlp(2, 8, nn.ReLU), scheme, probe, seed=0)
        except ValueError as err:
            raise SystemExit(f"--schemes: {err}") from None
    epochs, seeds = (2, 2) if args.quick else (args.epochs, args.seeds)
    # a collapsed network's activations underflow to subnormal floats, which are slow on CPUs
    # (PyTorch's default init trained 2-3x slower); flushed to zero, a 2-epoch check gave the
    # same accuracies
    torch.set_flush_denormal(True)
    # width-100 matrices gain nothing from a second thread, and on a busy machine two threads
    # made an epoch 10x slower than one
    torch.set_num_threads(1)
    print(
        f"MNIST-1D, {DEPTH}-layer MLPs of width {WIDTH}, SGD (momentum 0.9, batch 128), "
        f"{epochs} epochs; test accuracy (mean ± std over {seeds} seeds) at the best "
        f"learning rate of {', '.join(map(str, LEARNING_RATES))}; torch {torch.__version__}, "
        f"threads: {torch.get_num_threads()}\n"
    )
    print(f"| scheme | {' | '.join(ACTIVATIONS)} |")
    print(f"|---|{'---|' * len(ACTIVATIONS)}")
    for scheme in schemes:
        cells = []
        for activation in ACTIVATIONS.values():
            by_lr = {
                lr: accuracies(scheme, activation, data, epochs, lr, list(range(seeds)))
                for lr in LEARNING_RATES
            }
            lr, best = max(by_lr.items(), key=lambda item: statistics.mean(item[1]))
            cells.append(f"{statistics.mean(best):.1%} ± {statistics.stdev(best):.1%} (lr {lr})")
        print(f"| {scheme} | {' | '.join(cells)} |", flush=True)
    print(f"\ntotal {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
