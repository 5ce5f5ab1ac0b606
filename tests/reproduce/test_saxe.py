"""4. Saxe et al.: the mechanism (singular values of the end-to-end map) against exact facts and
random-matrix theory, the gradient against autograd, and the quick run's depth dependence."""

import math

import pytest
import torch

from weightinit.reproduce.papers import saxe


def test_orthogonal_products_keep_every_singular_value_at_one():
    for depth in (1, 8, 64):
        sv = torch.linalg.svdvals(saxe.end_to_end(saxe.layers("orthogonal", depth, seed=3)))
        torch.testing.assert_close(sv, torch.ones_like(sv), atol=1e-10, rtol=0)


def test_gaussian_products_spread_at_the_lyapunov_rates():
    # Newman 1986: ln s_i(W_D ... W_1) / D -> (ln(2/N) + digamma((N - i + 1)/2)) / 2; at N = 8
    # digamma(4) = 11/6 - euler_gamma and digamma(1/2) = -euler_gamma - 2 ln 2
    n, gamma = 8, 0.5772156649015329
    top = (math.log(2 / n) + 11 / 6 - gamma) / 2
    bottom = (math.log(2 / n) - gamma - 2 * math.log(2)) / 2
    torch.testing.assert_close(saxe.lyapunov(n)[[0, -1]].tolist(), [top, bottom])
    # the largest exponent, from deep products (the top singular value is exact in float64)
    products = [saxe.end_to_end(saxe.layers("gaussian", 100, s, n)) for s in range(10)]
    rate = sum(torch.linalg.matrix_norm(p, 2).log().item() for p in products) / (10 * 100)
    assert rate == pytest.approx(top, abs=0.03)
    # the sum of all exponents: ln|det P| = sum_l ln|det W_l| (the product itself is too
    # ill-conditioned for a determinant), E ln|det W| = sum_i lambda_i for one Gaussian layer
    logdets = torch.linalg.slogdet(torch.stack(saxe.layers("gaussian", 1000, 0, n)))[1]
    assert logdets.mean().item() == pytest.approx(saxe.lyapunov(n).sum().item(), abs=0.15)  # 3 s.e.
    assert saxe.lyapunov(n)[-1] < -1.0  # the weakest direction loses e^-1.3 per layer


def test_hand_written_gradient_step_matches_autograd():
    weights = saxe.layers("gaussian", 4, seed=0, width=5)
    target = saxe.teacher(0, 5)
    leaves = [w.clone().requires_grad_() for w in weights]
    (saxe.end_to_end(leaves) - target).square().sum().div(2).backward()
    saxe.steps_to_threshold(weights, target, lr=0.1, cap=1)  # one step, in place
    for w, leaf in zip(weights, leaves):
        torch.testing.assert_close(w, leaf.detach() - 0.1 * leaf.grad)


def test_quick_run_orthogonal_flat_gaussian_slows_with_depth(quick):
    result = quick("saxe")
    data = result.outcome.data
    fixed = saxe.PROTOCOLS[0]
    orth, gauss = (
        data["times"][f"{fixed}, orthogonal"][0],
        data["times"][f"{fixed}, Gaussian N(0, 1/N)"][0],
    )
    assert all(math.isfinite(t) for t in orth)  # reached at every depth
    assert orth[-1] <= 2 * orth[0]
    assert math.isinf(gauss[-1]) or gauss[-1] >= 10 * gauss[0]
    # the mechanism at the deepest depth: the Gaussian product's median singular value collapses
    assert data["median_singular_value"]["Gaussian N(0, 1/N)"][0][-1] < 1e-3
    torch.testing.assert_close(data["median_singular_value"]["orthogonal"][0][-1], 1.0)
    assert result.outcome.holds
