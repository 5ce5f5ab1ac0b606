"""2. He vs Xavier: the per-layer decay against the ReLU algebra, and the quick run's stall."""

from __future__ import annotations

import itertools
import math
import statistics

import pytest
import torch

import weightinit as wi
from weightinit.reproduce.papers.he_xavier import DEPTH, WIDTH, activation_stds, plateau_epochs
from weightinit.zoo import mlp


def _mean_log_ratio(scheme: str, seeds: int = 4) -> float:
    """The mean over layers and nets of ln(RMS after a layer / RMS before it)."""
    steps = []
    for seed in range(seeds):
        net = mlp(DEPTH, "relu", width=WIDTH, in_features=WIDTH)[0]
        wi.init(net, scheme, seed=seed)
        rms = activation_stds(
            net, torch.randn(512, WIDTH, generator=torch.Generator().manual_seed(seed))
        )
        steps += [math.log(b / a) for a, b in itertools.pairwise(rms)]
    return statistics.fmean(steps)


@pytest.mark.parametrize(("scheme", "expected"), [("glorot", -0.5 * math.log(2)), ("he", 0.0)])
def test_each_relu_layer_scales_the_rms_as_the_algebra_says(scheme, expected):
    # Var(W) = 1/n (Glorot, square) or 2/n (He); E[relu(z)^2] = Var(z)/2: the RMS is multiplied
    # by 1/sqrt(2) or 1 per layer. Per-layer ln-ratios scatter by about sqrt(1/n) = 0.1 at
    # n = 100, so the mean of 4 x 28 is known to about 0.01; 0.04 also covers the small
    # E[ln] < ln E bias of a finite layer (about -1/n)
    assert _mean_log_ratio(scheme) == pytest.approx(expected, abs=0.04)


def test_plateau_counts_epochs_before_the_loss_first_leaves_chance():
    assert plateau_epochs([2.3, 2.3, 2.3]) == math.inf  # never leaves it
    assert plateau_epochs([2.3, 2.3, 1.0]) == 2  # leaves it at the last epoch: not the same
    assert plateau_epochs([2.3, 1.0, 2.3]) == 1
    assert plateau_epochs([1.0, 2.3]) == 0


def test_quick_run_xavier_stalls_and_he_trains(quick):
    data = quick("he-xavier").outcome.data
    xavier, he = data["losses"]["Xavier (glorot)"][0], data["losses"]["He"][0]
    assert plateau_epochs(xavier) == math.inf  # on the plateau the whole run
    assert plateau_epochs(he) < len(he) - 1 and he[-1] < 0.9 * math.log(10)
    assert data["accuracy"]["He"][0] > data["accuracy"]["Xavier (glorot)"][0] + 0.1
