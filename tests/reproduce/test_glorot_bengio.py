"""3. Glorot & Bengio: the measured per-layer variances against the variance algebra and a
mean-field iteration computed here by Gauss-Hermite quadrature."""

import numpy as np
import pytest
import torch

from weightinit.reproduce.data import mnist1d
from weightinit.reproduce.papers import glorot_bengio as gb
from weightinit.reproduce.papers.glorot_bengio import HIDDEN, WIDTH, layer_statistics

NODES, WEIGHTS = np.polynomial.hermite_e.hermegauss(80)
WEIGHTS = WEIGHTS / WEIGHTS.sum()  # E[f(xi)], xi ~ N(0, 1)


def _gauss(f, q: float) -> float:
    return float((WEIGHTS * f(np.sqrt(q) * NODES)).sum())


def _mean_field(q1: float, gain: float) -> tuple[list[float], list[float]]:
    """Var(tanh(z_k)) going up and Var(dL/dz_k) relative to the top layer going down, for
    z_1 ~ N(0, q1) and n Var(W) = gain in every later layer."""
    q, acts, slopes = q1, [], []
    for _ in range(HIDDEN):
        acts.append(_gauss(lambda z: np.tanh(z) ** 2, q))
        slopes.append(_gauss(lambda z: (1 - np.tanh(z) ** 2) ** 2, q))
        q = gain * acts[-1]
    grads = [1.0]
    for k in range(HIDDEN - 2, -1, -1):
        grads.insert(0, grads[0] * gain * slopes[k])
    return acts, grads


@pytest.fixture(scope="module")
def measured():
    task = mnist1d()
    x, y = task.x[:1000], task.y[:1000]
    out = {}
    for name, initialize in (("standard", gb.standard_init), ("normalized", gb.normalized_init)):
        torch.manual_seed(0)
        net = gb.tanh_net(task.features)
        initialize(net, 0)
        out[name] = layer_statistics(net, x, y)
    return x, out


def test_standard_weights_scale_the_second_moment_by_one_third_per_layer(measured):
    # E[z_{k+1}^2] = n Var(W) E[h_k^2] with Var(W) = (2 / sqrt(n))^2 / 12 = 1 / (3n)
    x, out = measured
    s = out["standard"]
    assert s["pre"][0] == pytest.approx(x.square().mean().item() / 3, rel=0.1)
    for k in range(1, HIDDEN):  # tanh is odd: E[tanh(z)] ≈ 0, so its Var ≈ its second moment
        assert s["pre"][k] / s["act"][k - 1] == pytest.approx(1 / 3, rel=0.1)
    # deep in the linear regime the activation variance itself falls by 1/3 per layer
    assert s["act"][-1] / s["act"][-2] == pytest.approx(1 / 3, rel=0.1)


def test_normalized_weights_preserve_the_second_moment_of_square_layers(measured):
    _, out = measured
    n = out["normalized"]
    for k in range(1, HIDDEN):  # 2 / (n_in + n_out) * n_in = 1 for WIDTH -> WIDTH
        assert n["pre"][k] / n["act"][k - 1] == pytest.approx(1.0, rel=0.1)


@pytest.mark.parametrize("name", ["standard", "normalized"])
def test_variances_follow_the_mean_field_iteration(measured, name):
    x, out = measured
    n_in = x.shape[1]
    var_w = 1 / (3 * n_in) if name == "standard" else 2 / (n_in + WIDTH)
    q1 = n_in * var_w * x.square().mean().item()
    acts, grads = _mean_field(q1, 1 / 3 if name == "standard" else 1.0)
    s = out[name]
    np.testing.assert_allclose(s["act"], acts, rtol=0.15)
    np.testing.assert_allclose(np.array(s["grad"]) / s["grad"][-1], grads, rtol=0.15)


def test_quick_run_shows_the_gap_between_the_two_inits(quick):
    result = quick("glorot-bengio")
    stats = result.outcome.data["stats"]
    standard, normalized = stats["standard U(±1/√n)"], stats["normalized (Glorot)"]
    # standard: about two orders of magnitude over 5 layers (3^4 = 81), both directions
    assert standard["act"][0][-1] / standard["act"][0][0] < 0.03
    assert standard["grad"][0][0] / standard["grad"][0][-1] < 0.03
    # normalized: within a factor 3 across the same layers
    assert normalized["act"][0][-1] / normalized["act"][0][0] > 1 / 3
    assert normalized["grad"][0][0] / normalized["grad"][0][-1] > 1 / 3
    assert result.outcome.holds
