"""One training loop for every reproduction: minibatch SGD (momentum) or Adam at a fixed
learning rate, no schedule and no gradient clipping unless asked, so a bad start shows. A
non-finite loss stops the run and marks it diverged: divergence is a result, not an error."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from weightinit.reproduce.data import Task

__all__ = ["Curve", "evaluate", "fit"]


@dataclass
class Curve:
    """A training run: ``losses[0]`` is the training loss at initialization, ``losses[k]`` the
    mean training loss over epoch ``k``'s batches (NaN after a divergence); ``accuracy`` and
    ``test_loss`` on the test set at the end (accuracy NaN for regression)."""

    losses: list[float] = field(default_factory=list)
    accuracy: float = math.nan
    test_loss: float = math.nan
    diverged: bool = False

    @property
    def final(self) -> float:
        """The last training loss (NaN when diverged)."""
        return self.losses[-1] if self.losses else math.nan


def _loss(task: Task, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    if task.classes is None:
        return F.mse_loss(output, target)
    return F.cross_entropy(output.reshape(-1, task.classes), target.reshape(-1))


@torch.no_grad()
def evaluate(model: nn.Module, task: Task, *, test: bool = True) -> tuple[float, float]:
    """``(loss, accuracy)`` on the test set (or the training set), in eval mode; the model's
    mode is restored.

    Example:
        >>> from weightinit.reproduce.data import digits
        >>> loss, accuracy = evaluate(nn.Linear(64, 10), digits())
        >>> 0.0 <= accuracy <= 1.0 and loss > 0
        True
    """
    x, y = (task.x_test, task.y_test) if test else (task.x, task.y)
    was_training = model.training
    model.eval()
    try:
        out = model(x)
        loss = _loss(task, out, y).item()
        accuracy = math.nan
        if task.classes is not None:
            accuracy = (out.reshape(-1, task.classes).argmax(1) == y.reshape(-1)).float().mean()
            accuracy = accuracy.item()
        return loss, accuracy
    finally:
        model.train(was_training)


def fit(
    model: nn.Module,
    task: Task,
    *,
    epochs: int,
    lr: float,
    seed: int,
    optimizer: str = "sgd",
    momentum: float = 0.9,
    batch: int = 128,
    weight_decay: float = 0.0,
    clip: float | None = None,
    on_epoch: Callable[[int], None] | None = None,
) -> Curve:
    """Train ``model`` on ``task`` for ``epochs`` (batches drawn in an order fixed by ``seed``)
    and return its :class:`Curve`. ``on_epoch(k)`` is called before training (``k = 0``) and
    after each epoch ``k`` (measurements of the weights or the representation along the way).

    Example:
        >>> from weightinit.reproduce.data import digits
        >>> torch.manual_seed(0) and None
        >>> curve = fit(nn.Linear(64, 10), digits().subset(256), epochs=2, lr=0.1, seed=0)
        >>> curve.losses[-1] < curve.losses[0], curve.accuracy > 0.5
        (True, True)
    """
    if len(task.x) == 0:
        raise ValueError(f"fit: the task {task.name!r} has no training examples")
    if optimizer == "sgd":
        opt: torch.optim.Optimizer = torch.optim.SGD(
            model.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay
        )
    elif optimizer == "adam":
        opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    else:
        raise ValueError(f"fit: optimizer must be 'sgd' or 'adam', got {optimizer!r}")
    curve = Curve(losses=[evaluate(model, task, test=False)[0]])
    gen = torch.Generator().manual_seed(seed)
    if on_epoch is not None:
        on_epoch(0)
    model.train()
    for epoch in range(1, epochs + 1):
        total, count = 0.0, 0
        for index in torch.randperm(len(task.x), generator=gen).split(batch):
            loss = _loss(task, model(task.x[index]), task.y[index])
            if not torch.isfinite(loss):
                curve.diverged = True
                break
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if clip is not None:
                nn.utils.clip_grad_norm_(model.parameters(), clip)
            opt.step()
            total, count = total + loss.item() * len(index), count + len(index)
        if curve.diverged:
            curve.losses += [math.nan] * (epochs + 1 - len(curve.losses))
            break
        curve.losses.append(total / count)
        if on_epoch is not None:
            on_epoch(epoch)
    curve.test_loss, curve.accuracy = evaluate(model, task)
    if curve.diverged or not math.isfinite(curve.test_loss):
        curve.diverged = True
    return curve
