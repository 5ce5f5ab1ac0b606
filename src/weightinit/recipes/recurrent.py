"""Recurrent recipes: "irnn" (identity recurrence for ReLU RNNs) and "unitary" (norm-keeping
recurrent weights per gate). Every scheme, these included, gives an LSTM's forget gate a bias of
``forget_bias`` (1 by default, Jozefowicz, Zaremba & Sutskever 2015) through the shared options.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from weightinit._checks import positive
from weightinit.scheme.classic import FOLLOWERS, HE, classic
from weightinit.scheme.protocol import Choice, Options, Param, Scheme, Survey
from weightinit.scheme.registry import register_scheme
from weightinit.understanding.knowledge import Kinds, Roles

__all__ = ["IRNNOptions"]

_he = classic(HE)


@dataclass(frozen=True)
class IRNNOptions:
    """The options of the "irnn" scheme (Le, Jaitly & Hinton 2015).

    identity_scale: the recurrent weights of ReLU RNNs are ``identity_scale * I``. The paper
    uses I (1.0) for its long-range tasks and proposes a scaled identity ("iRNN", 0.01 I in its
    speech experiments) for tasks with short dependencies, so that the state forgets.
    input_std: the std of the Gaussian input (non-recurrent) weights of ReLU RNNs; the paper's
    0.001.

    Example:
        >>> IRNNOptions(identity_scale=0.01).input_std
        0.001
    """

    identity_scale: float = 1.0
    input_std: float = 0.001

    def __post_init__(self):
        positive("", "identity_scale", self.identity_scale)
        positive("", "input_std", self.input_std)


def _is_relu_rnn(p: Param) -> bool:
    """A parameter of an RNN / RNNCell with nonlinearity="relu" (LSTM and GRU have none)."""
    return p.kind == Kinds.RECURRENT and p.info.nonlinearity == "relu"


def _irnn_survey(s: Survey) -> dict[str, Choice]:
    """The ReLU RNNs' weights as the paper sets them; everything else falls back to He."""
    choices: dict[str, Choice] = {}
    relu, other = [], []
    for p in s.params:
        if p.kind != Kinds.RECURRENT:
            continue
        (relu if _is_relu_rnn(p) else other).append(p.module)
        if not _is_relu_rnn(p):
            continue
        if p.info.role == Roles.RECURRENT:
            scale = s.extra.identity_scale
            reason = f"ReLU RNN: recurrent weights {scale:g} I (IRNN, Le, Jaitly & Hinton 2015)"
            choices[p.name] = Choice("identity", {"gain": scale}, reason)
        elif p.info.role == Roles.WEIGHT:
            std = s.extra.input_std
            reason = f"ReLU RNN: input weights N(0, {std:g}^2) (IRNN, Le, Jaitly & Hinton 2015)"
            choices[p.name] = Choice("normal", {"std": std}, reason)
    s.notes["relu_rnns"] = sorted(set(relu))
    s.notes["other_rnns"] = sorted(set(other))  # tanh RNNs, LSTMs, GRUs: orthogonal recurrence
    s.notes["identity_scale"] = s.extra.identity_scale
    return choices


register_scheme(
    Scheme(
        "irnn",
        "IRNN (Le, Jaitly & Hinton 2015): ReLU RNNs get identity recurrent weights, N(0, 0.001^2) "
        "input weights, zero biases; other RNNs orthogonal recurrence, other layers He",
        _he,
        needs=FOLLOWERS,
        survey=_irnn_survey,
        extra=IRNNOptions,
    )
)


def _unitary_survey(s: Survey) -> dict[str, Choice]:
    """Checks that the options agree with the scheme and notes the recurrent weights."""
    if s.options.recurrent not in ("orthogonal", "unitary"):
        raise ValueError(
            f"scheme 'unitary' makes recurrent weights unitary, but recurrent="
            f"{s.options.recurrent!r} was passed; use scheme 'he' with recurrent="
            f"{s.options.recurrent!r} instead"
        )
    recurrent = [p for p in s.params if p.info.role == Roles.RECURRENT]
    s.notes["unitary_recurrent_weights"] = [p.name for p in recurrent]
    s.notes["complex"] = [p.name for p in recurrent if p.is_complex]
    return {}


def _unitary(p: Param, o: Options) -> Choice:
    return _he(p, dataclasses.replace(o, recurrent="unitary"))


register_scheme(
    Scheme(
        "unitary",
        "recurrent weights Haar unitary per gate (orthogonal when real) (Arjovsky, Shah & Bengio "
        "2016; Henaff, Szlam & LeCun 2016); other weights He, LSTM forget bias 1",
        _unitary,
        needs=FOLLOWERS,
        survey=_unitary_survey,
    )
)
