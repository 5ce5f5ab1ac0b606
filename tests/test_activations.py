"""Gains and Gaussian moments against scipy's adaptive quadrature, closed forms and torch."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st
from scipy import integrate, special
from torch import nn

import weightinit as wi

NUMPY_ACTIVATIONS = {
    "linear": lambda x: x,
    "relu": lambda x: np.maximum(x, 0.0),
    "tanh": np.tanh,
    "sigmoid": special.expit,
    "selu": lambda x: (
        1.0507009873554804934193349852946
        * np.where(x > 0, x, 1.6732632423543772848170429916717 * np.expm1(x))
    ),
    "elu": lambda x: np.where(x > 0, x, np.expm1(x)),
    "gelu": lambda x: x * special.ndtr(x),
    "silu": lambda x: x * special.expit(x),
    "softplus": lambda x: np.logaddexp(0.0, x),
    "mish": lambda x: x * np.tanh(np.logaddexp(0.0, x)),
    "hardtanh": lambda x: np.clip(x, -1.0, 1.0),
    "lecun_tanh": lambda x: 1.7159 * np.tanh(2.0 * x / 3.0),
    "relu6": lambda x: np.clip(x, 0.0, 6.0),
}


def gaussian_expectation(f, mean=0.0, std=1.0):
    """E[f(z)], z ~ N(mean, std^2), by scipy's adaptive quadrature (an independent method)."""
    density = lambda x: math.exp(-0.5 * ((x - mean) / std) ** 2) / (std * math.sqrt(2 * math.pi))
    lo, hi = mean - 15 * std, mean + 15 * std
    points = [p for p in (-1.0, 0.0, 1.0, 6.0) if lo < p < hi]
    value, _ = integrate.quad(
        lambda x: f(x) * density(x), lo, hi, points=points, limit=200, epsabs=1e-13
    )
    return value


@pytest.mark.parametrize("name", sorted(NUMPY_ACTIVATIONS))
def test_gain_matches_independent_quadrature(name):
    f = NUMPY_ACTIVATIONS[name]
    expected = 1 / math.sqrt(gaussian_expectation(lambda x: float(f(np.float64(x))) ** 2))
    assert wi.gain(name) == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize(
    "name, param",
    [
        ("linear", None),
        ("relu", None),
        ("leaky_relu", None),
        ("leaky_relu", 0.2),
        ("conv2d", None),
        ("conv_transpose1d", None),
    ],
)
def test_gain_equals_torch_where_the_conventions_agree(name, param):
    assert wi.gain(name, param) == pytest.approx(nn.init.calculate_gain(name, param), rel=1e-12)


def test_documented_differences_from_torch():
    assert wi.gain("selu") == 1.0  # Klambauer et al.'s fixed point; torch says 3/4
    assert wi.gain("tanh") == pytest.approx(1.5925374, rel=1e-7)  # torch's empirical 5/3
    assert wi.gain("sigmoid") == pytest.approx(1.8462285, rel=1e-7)  # torch says 1


def test_selu_closed_form_agrees_with_quadrature():
    assert wi.moments("selu").second_moment == pytest.approx(1.0, abs=1e-9)
    assert wi.moments("selu").mean == pytest.approx(0.0, abs=1e-9)


def test_hardtanh_closed_form_agrees_with_quadrature():
    assert wi.gain("hardtanh") == pytest.approx(
        1 / math.sqrt(wi.moments(F.hardtanh).second_moment), rel=1e-12
    )


@pytest.mark.parametrize(
    "spec, name",
    [
        (nn.ReLU(), "relu"),
        (F.relu, "relu"),
        (torch.relu, "relu"),
        (nn.LeakyReLU(0.3), "leaky_relu"),
        (nn.Tanh(), "tanh"),
        (torch.tanh, "tanh"),
        (nn.SELU(), "selu"),
        (nn.Identity(), "linear"),
        ("Swish", "silu"),
        ("identity", "linear"),
    ],
)
def test_modules_functions_and_aliases_resolve_to_names(spec, name):
    assert wi.activation(spec).name == name


@pytest.mark.parametrize(
    "module, name, param",
    [
        (nn.GELU(), "gelu", None),
        (nn.GELU(approximate="tanh"), "gelu_tanh", None),
        (nn.SiLU(), "silu", None),
        (nn.Mish(), "mish", None),
        (nn.ELU(alpha=0.5), "elu", 0.5),
        (nn.Softplus(beta=2.0), "softplus", 2.0),
        (nn.Hardtanh(), "hardtanh", None),
        (nn.LeakyReLU(0.3), "leaky_relu", 0.3),
        (nn.Sigmoid(), "sigmoid", None),
    ],
)
def test_module_gain_equals_named_gain(module, name, param):
    assert wi.gain(module) == pytest.approx(wi.gain(name, param), rel=1e-9)


def test_custom_callables_and_modules_get_a_gain_by_quadrature():
    square_plus = lambda x: 0.5 * (x + torch.sqrt(x * x + 4.0))
    f = lambda x: 0.5 * (x + math.sqrt(x * x + 4.0))
    assert wi.gain(square_plus) == pytest.approx(
        1 / math.sqrt(gaussian_expectation(lambda x: f(x) ** 2)), rel=1e-9
    )
    prelu = nn.PReLU(init=0.25)  # float32 parameters: evaluated in float32
    assert wi.gain(prelu) == pytest.approx(wi.gain("leaky_relu", 0.25), rel=1e-5)


@given(mean=st.floats(-3, 3), std=st.floats(0.05, 4))
def test_relu_moments_match_closed_form(mean, std):
    """E[relu] = m Phi + s phi, E[relu^2] = (m^2 + s^2) Phi + m s phi, E[relu'^2] = Phi,
    with Phi, phi at m / s: the kink sits anywhere relative to the quadrature panels."""
    a = mean / std
    cdf, pdf = special.ndtr(a), math.exp(-0.5 * a * a) / math.sqrt(2 * math.pi)
    m = wi.moments("relu", mean, std**2)
    assert m.mean == pytest.approx(mean * cdf + std * pdf, abs=1e-10)
    assert m.second_moment == pytest.approx((mean**2 + std**2) * cdf + mean * std * pdf, abs=1e-10)
    assert m.derivative_second_moment == pytest.approx(cdf, abs=1e-10)


@pytest.mark.parametrize("name", ["tanh", "gelu", "hardtanh", "elu", "relu6"])
@pytest.mark.parametrize("mean, var", [(0.0, 1.0), (0.7, 0.3), (-1.5, 4.0)])
def test_moments_match_independent_quadrature(name, mean, var):
    f = NUMPY_ACTIVATIONS[name]
    m = wi.moments(name, mean, var)
    std = math.sqrt(var)
    assert m.mean == pytest.approx(
        gaussian_expectation(lambda x: float(f(np.float64(x))), mean, std), abs=1e-10
    )
    assert m.second_moment == pytest.approx(
        gaussian_expectation(lambda x: float(f(np.float64(x))) ** 2, mean, std), abs=1e-10
    )
    assert m.var == pytest.approx(m.second_moment - m.mean**2)


def test_tanh_derivative_moment():
    expected = gaussian_expectation(lambda x: (1 - math.tanh(x) ** 2) ** 2, 0.2, 1.5)
    assert wi.moments("tanh", 0.2, 1.5**2).derivative_second_moment == pytest.approx(
        expected, abs=1e-10
    )


def test_zero_variance_is_the_point_value():
    m = wi.moments("tanh", 0.5, 0.0)
    assert m.mean == pytest.approx(math.tanh(0.5)) and m.var == pytest.approx(0.0, abs=1e-15)


def test_unknown_name_suggests_close_matches():
    with pytest.raises(ValueError, match="Did you mean 'relu'"):
        wi.gain("rleu")


def test_parameter_for_an_unparametrized_activation():
    with pytest.raises(ValueError, match="takes no parameter"):
        wi.gain("relu", 0.1)


def test_non_elementwise_callable():
    with pytest.raises(ValueError, match="not elementwise"):
        wi.gain(lambda x: x.sum())


def test_non_differentiable_callable_has_no_derivative_moment():
    with pytest.raises(ValueError, match="not differentiable"):
        wi.moments(lambda x: torch.sign(x).detach())


def test_activation_that_is_zero_has_no_gain():
    with pytest.raises(ValueError, match="no gain"):
        wi.gain(lambda x: x * 0.0)


@pytest.mark.parametrize("mean, var", [(float("nan"), 1.0), (0.0, -1.0), (0.0, float("inf"))])
def test_moments_argument_errors(mean, var):
    with pytest.raises(ValueError, match="finite"):
        wi.moments("relu", mean, var)


def test_activation_of_wrong_type():
    with pytest.raises(TypeError, match="`activation` must be"):
        wi.gain(3)
