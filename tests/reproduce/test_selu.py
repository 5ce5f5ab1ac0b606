"""8. SELU: the fixed point (0, 1) from the paper's constants by Gauss-Hermite quadrature, torch's
SELU against the paper's formula, and the quick run's per-layer moments against Theorem 1."""

import math

import numpy as np
import torch
from torch import nn

from weightinit.reproduce.papers.selu import DEPTH, activation_moments

LAMBDA, ALPHA = 1.0507009873554805, 1.6732632423543772  # Klambauer et al. 2017, eq. (14)


def _selu(z):
    return LAMBDA * np.where(z > 0, z, ALPHA * np.expm1(np.minimum(z, 0)))


def test_the_papers_constants_make_zero_one_a_fixed_point():
    nodes, weights = np.polynomial.hermite_e.hermegauss(200)
    weights = weights / weights.sum()  # E[f(z)], z ~ N(0, 1)
    mean, second = (weights * _selu(nodes)).sum(), (weights * _selu(nodes) ** 2).sum()
    assert abs(mean) < 1e-3 and abs(second - 1) < 1e-3  # quadrature of a kinked function
    # a perturbed alpha moves the fixed point: the constants matter
    off = LAMBDA * np.where(nodes > 0, nodes, 1.5 * np.expm1(np.minimum(nodes, 0)))
    assert abs((weights * off).sum()) > 0.03


def test_torch_selu_is_the_papers_function():
    z = torch.linspace(-5, 5, 1001, dtype=torch.float64)
    torch.testing.assert_close(nn.SELU()(z), torch.from_numpy(_selu(z.numpy())))


def test_activation_moments_of_a_known_layer():
    net = nn.Sequential(nn.Identity(), nn.Linear(2, 2))
    x = torch.tensor([[0.0, 2.0], [2.0, 4.0]])
    means, variances = activation_moments(net, x)
    assert means == [2.0]
    assert math.isclose(variances[0], 8 / 3, rel_tol=1e-6)  # unbiased variance of (0, 2, 2, 4)


def test_quick_run_selu_stays_at_the_fixed_point_and_relu_drifts(quick):
    data = quick("selu").outcome.data
    means, variances = (
        data["means"]["SELU + LeCun normal"][0],
        data["variances"]["SELU + LeCun normal"][0],
    )
    assert len(means) == DEPTH - 1
    # Theorem 1's domain, at every layer, and close to (0, 1) at the top
    assert max(abs(m) for m in means) <= 0.1
    assert all(0.8 <= v <= 1.5 for v in variances)
    assert abs(means[-1]) < 0.1 and abs(variances[-1] - 1) < 0.3
    # ReLU's mean is far from 0 (relu(z) >= 0) and its variance is not held near any value
    relu_means = data["means"]["ReLU + He"][0]
    assert min(relu_means) > 0.05
    relu_var = data["variances"]["ReLU + He"][0]
    assert max(relu_var) / min(relu_var) > 3 * max(variances) / min(variances)
    # the SELU net trains: its best training loss falls well below chance (ln 10)
    best = data["best_lr"]["SELU + LeCun normal"]
    assert data["losses"][f"SELU + LeCun normal, lr {best}"][0][-1] < 0.9 * math.log(10)
