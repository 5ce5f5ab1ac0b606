"""1. Symmetry: the rank claim, against what the algebra says."""

import torch
from torch import nn

from weightinit.reproduce.papers.symmetry import HIDDEN, WIDTH, _constant, _net, hidden_rank


def test_constant_weights_give_identical_units_and_identical_gradients():
    # the mechanism, independent of the experiment: with every weight equal, every hidden unit
    # gets the same gradient, so one step keeps the columns of each weight matrix equal
    torch.manual_seed(0)
    net = _net()
    _constant(net, 0)
    x, y = torch.randn(32, 64), torch.randint(0, 10, (32,))
    nn.functional.cross_entropy(net(x), y).backward()
    grad = net[0].weight.grad
    assert grad.abs().sum() > 0
    torch.testing.assert_close(grad, grad[:1].expand_as(grad))  # every unit's row the same


def test_hidden_rank_counts_distinct_directions():
    net = nn.Sequential(nn.Linear(5, 6), nn.Identity(), nn.Linear(6, 2))
    with torch.no_grad():
        net[0].weight.zero_()
        net[0].weight[:3] = torch.randn(3, 5)
        net[0].bias.zero_()
    assert hidden_rank(net, torch.randn(50, 5)) == 3


def test_quick_run_keeps_constant_init_at_rank_one_and_random_init_full(quick):
    result = quick("symmetry")
    ranks = result.outcome.data["ranks"]
    # every epoch, not only the last: the symmetry is never broken
    assert all(r == 0 for run in ranks["zero"] for r in run)
    assert all(r == 1 for run in ranks["constant 0.05"] for r in run)
    assert all(run[-1] > WIDTH // 2 for run in ranks["N(0, 0.01²)"])
    assert result.outcome.holds
    assert HIDDEN >= 2  # the claim is about hidden layers fed by hidden layers too
