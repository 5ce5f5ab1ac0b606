"""LSUV: layer-sequential unit-variance initialization (Mishkin & Matas 2016, "All you need is
a good init"), calibrated inside the forward pass.

The rule: pre-initialize every weight orthonormal, then for each layer in order, with y its
output on a batch of real data, repeat

    W <- W * t / std(y),   b <- b * t / std(y)

until |std(y) - t| <= tol * t, for the target std t (``target_std``, or sqrt(``target_var``)).
The first sweep corrects every layer, also those already within tolerance (it costs nothing and
leaves them exact); later sweeps correct the layers outside it. Options:

- ``center=True`` first subtracts the output mean through the bias, b <- b - mean(y), so the
  output is centred and then scaled: W <- s W, b <- s (b - mean(y)) with s = t / std(y).
  Layers without a (calibrated) bias are not centred.
- ``per_channel=True`` does both per output channel c (dim 1 of a conv's output, the last dim
  of a Linear's or an Embedding's): W_c <- W_c * t / std(y_c), with std(y_c) over the batch and
  positions.
- A module called several times in one forward pass is calibrated on its uses pooled: every
  use is rescaled with the sweep's scale (found at its first use), and the gain update comes
  from the statistics of all its uses together.
- MultiheadAttention's output is linear in its output projection's weight and bias, so it is
  calibrated like a Linear layer through them (``out_proj``).
- RNN, LSTM and GRU layers (and their cells) are not linear in their weights, so their *gate
  pre-activations* are calibrated: per layer and direction, a_t = W_ih x_t + b_ih + W_hh h_{t-1}
  + b_hh (for a GRU's candidate gate the argument of its tanh, W_in x_t + b_in + r_t * (W_hn
  h_{t-1} + b_hn)), recomputed from the layer's input and its hidden states by
  :func:`~weightinit.understanding.recurrent.recurrent_preactivations`. Each sweep multiplies that layer's W_ih and W_hh by
  t / std(a), the std over every gate, step and sample; gate biases (the LSTM forget bias 1)
  count in std(a) but are never changed, and neither centring nor per-channel scales apply.

The classic implementation runs a forward pass per layer and correction. Here each linear
layer is corrected *in the forward hook that sees its output*, which returns the corrected
output, so the layers after it see calibrated inputs in the same pass: one sweep corrects every
layer exactly in one forward pass, and a second pass (a sweep that changes nothing) verifies.
Shared modules and RNNs converge over a few more sweeps. Calibration runs on a copy of the model
with dropout off and norm layers on batch statistics (train mode, as in training), whatever
mode the model is in; the model's parameters, buffers, modes and hooks and the global RNG are
left as they were, and a model in eval mode gets the same plan as in train mode (but for
norm layers the plan keeps, below).

Norm layers with running statistics (BatchNorm, SyncBatchNorm, InstanceNorm with
``track_running_stats``) would give eval mode their old statistics (fresh: mean 0, variance 1),
which do not describe the calibrated network: eval-mode output std 40 for 1 on
MobileNetV3-Large's blocks with 32 images of 112 x 112 (benchmarks/lsuv_batchnorm.py). So
their statistics are re-estimated on the calibration batch, as
``torch.optim.swa_utils.update_bn`` does: reset, ``momentum=None`` (a cumulative average), one
forward pass of the final network (the verifying sweep's, or one more), which leaves
running_mean and running_var at the batch mean and unbiased variance of each layer's input
and num_batches_tracked at 1. The plan records them in ``plan.buffers`` (JSON too) and
:meth:`~weightinit.Plan.apply` writes them with the parameters, so the plan applied to another
instance of the model, or read back from JSON, writes the statistics that go with the weights
it writes (as its gains, they were measured with the parameters the plan does not write). On
the calibration batch eval mode then gives what train mode gives up to torch's unbiased
running variance, n / (n - 1) for n values per channel (eval-mode std 0.98 for 1 on
tests/test_lsuv_batchnorm.py's MobileNetV3 with 128 images of 32 x 32: 512 values per channel
in its last layers); on new data it carries the sampling error of one batch's statistics
(docs/automatic.md). A norm layer whose parameters the plan does not write (skipped, frozen,
kept from a checkpoint) keeps its statistics, and calibration runs it as the model does: in
eval mode on those statistics. The momentum and modes of the model's layers are never changed.

The result is a :class:`~weightinit.Plan` whose calibrated rows carry their gains (and shifts)
as ``Row.scale`` and ``Row.shift``, applied after the base initializer with its seed, so the
plan, also read back from JSON, writes exactly the calibrated values; ``plan.calibration``
records each layer (see :class:`~weightinit.frontends.torch.calibration.Calibration`). The
sweeps run in the model's front end (torch: :mod:`weightinit.frontends.torch.calibration`);
this module holds the scheme: its options, their checks, the pre-initialization.

Example:
    >>> import torch, weightinit
    >>> net = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.Tanh(), torch.nn.Linear(32, 4))
    >>> batch = torch.randn(64, 16, generator=torch.Generator().manual_seed(0))
    >>> p = weightinit.init(net, "lsuv", data=batch, seed=0, target_var=4.0, center=True)
    >>> round(net[:1](batch).std().item(), 3), round(net(batch).std().item(), 3)
    (2.0, 2.0)
    >>> abs(p.calibration[1]["mean"]) < 1e-6
    True

With BatchNorm, eval mode gives the calibrated network too (n = 64 values per channel here):

    >>> bn = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.BatchNorm1d(32),
    ...                          torch.nn.ReLU(), torch.nn.Linear(32, 4))
    >>> p = weightinit.init(bn, "lsuv", data=batch, seed=0)
    >>> sorted(p.buffers)
    ['1.num_batches_tracked', '1.running_mean', '1.running_var']
    >>> round(bn.eval()(batch).std().item(), 3), round(bn.train()(batch).std().item(), 3)
    (0.992, 1.0)
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from dataclasses import dataclass
from typing import Any

from weightinit.plans.plan import Plan
from weightinit.scheme.protocol import DATA, GRAPH, Choice, Options, Param, Scheme, Survey
from weightinit.scheme.registry import get_scheme, register_scheme
from weightinit.understanding.knowledge import Roles

__all__ = ["LSUVOptions", "check_settings"]


def check_settings(target_std, target_var, tol, max_iter, center, per_channel) -> float:
    """Validate the calibration options; the target std."""
    for name, value in (("target_std", target_std), ("target_var", target_var), ("tol", tol)):
        if (value is not None or name == "tol") and not _is_number(value):
            raise TypeError(f"option `{name}` must be a number, got {value!r}")
    if target_std is not None and target_var is not None:
        raise ValueError("pass option `target_std` or `target_var`, not both")
    if target_var is not None:
        if not 0 < target_var < math.inf:
            raise ValueError(f"option `target_var` must be positive and finite, got {target_var}")
        target_std = math.sqrt(target_var)
    target = 1.0 if target_std is None else float(target_std)
    if not 0 < target < math.inf:
        raise ValueError(f"option `target_std` must be positive and finite, got {target_std}")
    if not 0 < tol < 1:
        raise ValueError(f"option `tol` must satisfy 0 < tol < 1, got {tol}")
    if isinstance(max_iter, bool) or not isinstance(max_iter, int) or max_iter < 1:
        raise ValueError(f"option `max_iter` must be an int >= 1, got {max_iter!r}")
    for name, value in (("center", center), ("per_channel", per_channel)):
        if not isinstance(value, bool):
            raise TypeError(f"option `{name}` must be True or False, got {value!r}")
    return target


@dataclass(frozen=True)
class LSUVOptions:
    """Options of the "lsuv" scheme: the target (``target_std``, default 1, or
    ``target_var``), the tolerance ``tol`` on each layer's output std, at most ``max_iter``
    sweeps, ``center`` (subtract each output's mean through the bias), ``per_channel`` (one
    gain per output channel) and ``orthonormal`` (the pre-initialization: orthonormal weights,
    as in the paper; False: activation-aware He). The shared scheme options shape the
    pre-initialization."""

    target_std: float | None = None
    target_var: float | None = None
    tol: float = 0.05
    max_iter: int = 10
    center: bool = False
    per_channel: bool = False
    orthonormal: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.orthonormal, bool):
            raise TypeError(f"option `orthonormal` must be True or False, got {self.orthonormal!r}")
        self.settings()

    def settings(self) -> dict[str, Any]:
        """The calibration's keyword arguments, validated, the target as a std."""
        target = check_settings(
            self.target_std, self.target_var, self.tol, self.max_iter, self.center,
            self.per_channel,
        )  # fmt: skip
        return {
            "target_std": target,
            "tol": self.tol,
            "max_iter": self.max_iter,
            "center": self.center,
            "per_channel": self.per_channel,
        }

    def recorded(self) -> dict[str, Any]:
        """What the plan records (and :func:`weightinit.calibrate` reads back)."""
        return {**self.settings(), "orthonormal": self.orthonormal}


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


# --- the "lsuv" scheme ----------------------------------------------------------------------


def _needs(options: Options, extra: LSUVOptions) -> dict[str, str]:
    needs = {DATA: "calibrates every layer's output std on data"}
    if not extra.orthonormal or options.relu_bias is not None:
        needs[GRAPH] = "pre-initializes by the activation after each layer (He, or relu_bias)"
    return needs


def _base(extra: LSUVOptions, options: Options) -> str:
    """The scheme whose choices LSUV starts from: He without orthonormalization, orthogonal
    when ``relu_bias`` must find the ReLUs, else LeCun (it needs no trace)."""
    if not extra.orthonormal:
        return "he"
    return "orthogonal" if options.relu_bias is not None else "lecun"


def _survey(s: Survey) -> dict[str, Choice]:
    """The pre-initialization: the base scheme's choices, every weight it scales made
    orthonormal (orthogonal, gain 1, per block: group, gate) unless ``orthonormal=False``."""
    choose = get_scheme(_base(s.extra, s.options)).choose
    choices = {}
    for p in s.params:
        choice = choose(p, s.options)
        if s.extra.orthonormal and _orthonormalized(p, choice):
            choice = Choice("orthogonal", {}, "orthonormal pre-initialization (LSUV)")
        choices[p.name] = choice
    return choices


def _orthonormalized(p: Param, choice: Choice) -> bool:
    weight = p.role in (Roles.WEIGHT, Roles.PROJECTION) and p.info.norm_of is None
    return weight and choice.init in ("variance_scaling", "orthogonal")


def _calibrate(plan: Plan, s: Survey) -> Plan:
    """LSUV on ``s.data``; without data the analytic plan, marked as awaiting calibration."""
    if s.data is None:
        return dataclasses.replace(plan, pending_calibration=True)
    seed = 0 if s.seed is None else s.seed
    settings = s.extra.settings()
    made = s.frontend.calibrate(s.model, plan, s.data, seed=seed, **settings)
    # recorded: the pre-initialization's options, the seed, the calibration's settings
    shared = {k: v for k, v in made.options.items() if k not in {*settings, "seed", "orthonormal"}}
    made.options = {**shared, "seed": seed, **settings, "orthonormal": s.extra.orthonormal}
    return made


register_scheme(
    Scheme(
        "lsuv",
        "data-dependent LSUV (Mishkin & Matas 2016): orthonormal, then each layer's output "
        "scaled to unit std on data=batch, calibrated inside one forward pass per sweep",
        None,  # the survey chooses every parameter
        needs=_needs,
        survey=_survey,
        calibrate=_calibrate,
        extra=LSUVOptions,
    )
)
