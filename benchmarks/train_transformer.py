"""T-Fixup against Xavier on a Transformer without LayerNorm, trained without warm-up.

Huang et al. 2020 ("Improving Transformer Optimization Through Better Initialization") show
that with T-Fixup a Transformer trains without LayerNorm and without learning-rate warm-up,
where the usual Xavier init does not. This script trains a small encoder (token + learned
position embeddings, ``nn.TransformerEncoderLayer`` blocks with their norms replaced by
``Identity``, post-norm order, no dropout) to reverse random sequences, with Adam at a fixed
learning rate from the first step, from both inits and several seeds, and prints the final
loss and accuracy of each run (a NaN/inf loss counts as diverged).

Run: ``python benchmarks/train_transformer.py [--layers 6 12] [--lr 1e-3 3e-3] [--seeds 3]``.
The model and the two inits are those of ``weightinit reproduce t-fixup``
(``weightinit.reproduce.papers.t_fixup``), which runs the 6-block case with its figure; this
script adds the depth sweep.
"""

from __future__ import annotations

import argparse
import math
import time

import torch
from torch import nn

from weightinit.reproduce.papers.t_fixup import NoNormEncoder, initialize


def train(
    how: str,
    *,
    layers: int,
    lr: float,
    seed: int,
    steps: int,
    d: int = 32,
    vocab: int = 16,
    length: int = 8,
    batch: int = 32,
) -> tuple[float, float]:
    """(final loss, final accuracy) on the reverse task; loss inf when it diverged."""
    torch.manual_seed(seed)
    model = NoNormEncoder(vocab, length, d, layers)
    initialize(model, how, seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    data = torch.Generator().manual_seed(1000 + seed)
    loss = torch.tensor(float("nan"))
    for _ in range(steps):
        x = torch.randint(0, vocab, (batch, length), generator=data)
        logits = model(x)
        loss = nn.functional.cross_entropy(logits.reshape(-1, vocab), x.flip(1).reshape(-1))
        if not torch.isfinite(loss):
            return math.inf, 0.0
        opt.zero_grad()
        loss.backward()
        opt.step()
    x = torch.randint(0, vocab, (256, length), generator=data)
    with torch.no_grad():
        logits = model(x)
    loss = nn.functional.cross_entropy(logits.reshape(-1, vocab), x.flip(1).reshape(-1))
    accuracy = (logits.argmax(-1) == x.flip(1)).float().mean().item()
    return (loss.item() if torch.isfinite(loss) else math.inf), accuracy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, nargs="+", default=[6])
    parser.add_argument("--lr", type=float, nargs="+", default=[1e-3, 3e-3])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=300)
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"reverse task, vocab 16, length 8, d 32, Adam without warm-up, {args.steps} steps")
    print(f"{'layers':>6} {'lr':>7} {'init':>8}  final loss per seed (accuracy)")
    for layers in args.layers:
        for lr in args.lr:
            for how in ("Xavier", "T-Fixup"):
                start = time.perf_counter()
                runs = [
                    train(how, layers=layers, lr=lr, seed=s, steps=args.steps)
                    for s in range(args.seeds)
                ]
                shown = "  ".join(f"{loss:.3g} ({acc:.2f})" for loss, acc in runs)
                took = time.perf_counter() - start
                print(f"{layers:>6} {lr:>7.0e} {how:>8}  {shown}   [{took:.0f} s]", flush=True)


if __name__ == "__main__":
    main()
