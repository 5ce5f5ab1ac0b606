"""Activation modules that some recipes are written for.

- :class:`LeCunTanh`: LeCun's scaled tanh, 1.7159 tanh(2x/3) (LeCun et al. 1998), the
  activation of the "lecun_tanh" scheme.
- :class:`CReLU`: the concatenated ReLU [relu(x), relu(-x)] (Shang et al. 2016), which
  the "looks_linear" scheme pairs with mirrored weights (Balduzzi et al. 2017).
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["CReLU", "LeCunTanh"]


class LeCunTanh(nn.Module):
    """f(x) = 1.7159 tanh(2x / 3), from LeCun, Bottou, Orr & Müller 1998, "Efficient BackProp".

    The constants make f(+-1) = +-1 and keep the variance of unit-variance Gaussian inputs
    near 1 (E[f(z)^2] = 0.750 for z ~ N(0, 1): gain 1.154), with the steepest second derivative
    at |x| = 1. weightinit resolves it to the "lecun_tanh" activation (its ``activation_name``).

    Example:
        >>> import torch
        >>> from weightinit.modules import LeCunTanh
        >>> round(LeCunTanh()(torch.tensor(1.0)).item(), 4)
        1.0
    """

    activation_name = "lecun_tanh"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 1.7159 * torch.tanh(x * (2.0 / 3.0))


class CReLU(nn.Module):
    """f(x) = [relu(x), relu(-x)], concatenated along ``dim``: twice the features, no unit is
    ever dead for both signs. From Shang, Sohn, Almeida & Lee 2016, "Understanding and Improving
    Convolutional Neural Networks via Concatenated Rectified Linear Units"; Balduzzi et al.
    2017 pair it with looks-linear weights W = [W0, -W0], so that W f(x) = W0 x at init.

    Args:
        dim: the feature axis to concatenate along (1 for channels-first convs, -1 for
            features-last inputs).

    Example:
        >>> import torch
        >>> from weightinit.modules import CReLU
        >>> CReLU()(torch.tensor([[1.0, -2.0]])).tolist()
        [[1.0, 0.0, 0.0, 2.0]]
    """

    def __init__(self, dim: int = -1):
        super().__init__()
        if isinstance(dim, bool) or not isinstance(dim, int):
            raise TypeError(f"CReLU: `dim` must be an int (the feature axis), got {dim!r}")
        self.dim = dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([torch.relu(x), torch.relu(-x)], dim=self.dim)

    def extra_repr(self) -> str:
        return f"dim={self.dim}"
