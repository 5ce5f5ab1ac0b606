"""6. Delta-orthogonal CNNs: the Jacobian helper, the two kernels, and the quick run's gap."""

import math

import numpy as np
import torch
import torch.nn.functional as F

from weightinit.reproduce.papers.critical_cnn import (
    INITS,
    Q_STAR,
    _initialize,
    conv_stack,
    critical_gaussian,
    jacobian_singular_values,
)


def _tanh_sigma_w2(q: float) -> float:
    # chi_1 = sigma_w^2 E[tanh'(sqrt(q) z)^2] = 1, by Gauss-Hermite quadrature (independent)
    z, w = np.polynomial.hermite_e.hermegauss(101)
    return 1.0 / float(w @ np.cosh(math.sqrt(q) * z) ** -4 / w.sum())


def test_delta_orthogonal_conv_scales_every_input_norm_by_sqrt_sigma_w2():
    stack = conv_stack(1, 8)
    _initialize(stack, INITS[0], seed=0)
    conv = stack[0]
    x = torch.randn(16, 8, 20, dtype=torch.float64)
    y = F.conv1d(F.pad(x, (1, 1), mode="circular"), conv.weight.double())  # the linear part
    ratio = y.norm(dim=(1, 2)) / x.norm(dim=(1, 2))
    expected = torch.full_like(ratio, math.sqrt(_tanh_sigma_w2(Q_STAR)))
    torch.testing.assert_close(ratio, expected, rtol=1e-5, atol=0)  # every x, not on average
    assert conv.weight[:, :, [0, 2]].abs().max() == 0  # only the centre tap


def test_critical_gaussian_draws_every_tap_at_sigma_w2_over_fan_in():
    stack = conv_stack(1, 64)
    critical_gaussian(stack, Q_STAR, seed=0)
    w = stack[0].weight.double()
    var, n = w.var().item(), w.numel()
    expected = _tanh_sigma_w2(Q_STAR) / (64 * 3)
    assert abs(var / expected - 1) < 4 * math.sqrt(2 / n)  # 4 standard errors of a variance
    assert w[:, :, 0].abs().min() > 0  # off-centre taps are drawn too


def test_jacobian_singular_values_match_autograd():
    torch.manual_seed(0)
    stack = conv_stack(3, 3).double()
    x = torch.randn(3, 7, dtype=torch.float64)
    got = jacobian_singular_values(stack, x, {2, 3})
    for depth in (2, 3):
        head = stack[: 2 * depth]
        jac = torch.autograd.functional.jacobian(lambda v, f=head: f(v[None])[0], x)
        expected = torch.linalg.svdvals(jac.reshape(21, 21))
        torch.testing.assert_close(got[depth], expected)


def test_quick_run_delta_orthogonal_is_isometric_and_trains(quick):
    data = quick("critical-cnn").outcome.data
    fraction = data["fraction_in_band"]
    assert fraction[INITS[0]][0][-1] > 0.8  # depth 1000: most singular values in [0.5, 2]
    assert fraction[INITS[1]][0][-1] < 0.2 and fraction[INITS[2]][0][-1] < 0.2
    stds = data["log_sv_std"]
    assert stds[INITS[1]][0][-1] > 2 * stds[INITS[0]][0][-1]
    accuracy = data["accuracy"]
    depth = data["depths_training"][-1]
    assert accuracy[INITS[0]][depth][0] > accuracy[INITS[2]][depth][0] + 0.05
    assert accuracy[INITS[0]][depth][0] > 0.15  # chance is 0.1
