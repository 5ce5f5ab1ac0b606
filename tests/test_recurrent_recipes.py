"""Recurrent recipes: "irnn" (Le, Jaitly & Hinton 2015), "unitary" (Arjovsky, Shah & Bengio
2016; Henaff, Szlam & LeCun 2016), and the LSTM forget-gate bias of 1 (Jozefowicz, Zaremba &
Sutskever 2015) under every registered scheme."""

import math

import pytest
import torch
from conftest import var_tolerance
from torch import nn

import weightinit as wi
from weightinit.recipes import IRNNOptions, add_residual_gains

torch.set_num_threads(1)

# --- irnn ------------------------------------------------------------------------------------


def test_irnn_relu_rnn_identity_recurrence_zero_biases_and_the_papers_input_std():
    rnn = nn.RNN(256, 512, nonlinearity="relu", num_layers=2)
    plan = wi.init(rnn, "irnn", seed=0)
    for layer, fan_in in (("l0", 256), ("l1", 512)):
        assert torch.equal(getattr(rnn, f"weight_hh_{layer}"), torch.eye(512))
        for bias in ("bias_ih", "bias_hh"):
            assert torch.equal(getattr(rnn, f"{bias}_{layer}"), torch.zeros(512))
        w = getattr(rnn, f"weight_ih_{layer}")
        # the paper: non-recurrent weights ~ N(0, 0.001^2); 5 standard errors of the variance
        n = w.numel()
        assert abs(w.var().item() - 1e-6) < var_tolerance(1e-6, n)
        assert abs(w.mean().item()) < 5 * 1e-3 / math.sqrt(n)
        assert plan[f"weight_ih_{layer}"].args == {"std": 0.001}
    assert plan.notes["relu_rnns"] == [""] and plan.notes["other_rnns"] == []


def test_irnn_cell_and_scaled_identity_option():
    cell = nn.RNNCell(6, 10, nonlinearity="relu")
    plan = wi.init(cell, "irnn", identity_scale=0.01, input_std=0.002, seed=0)
    assert torch.equal(cell.weight_hh, 0.01 * torch.eye(10))
    assert plan["weight_ih"].args == {"std": 0.002} and plan.notes["identity_scale"] == 0.01


def _relu_rnn_trajectory(scheme: str, inputs: torch.Tensor, **options) -> torch.Tensor:
    """Hidden-state norms of a ReLU RNN (64 units) over the time steps of ``inputs``."""
    rnn = nn.RNN(8, 64, nonlinearity="relu").double()
    wi.init(rnn, scheme, seed=0, **options)
    with torch.no_grad():
        out, _ = rnn(inputs)
    return out[:, 0].norm(dim=-1)


def test_irnn_keeps_a_pulse_exactly_and_integrates_a_constant_input_where_orthogonal_forgets():
    steps = 100
    x = torch.randn(8, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    pulse = torch.zeros(steps, 1, 8, dtype=torch.float64)
    pulse[0, 0] = x
    constant = x.expand(steps, 1, 8)
    # IRNN with zero biases: h_t = relu(h_{t-1} + 0) = h_1 for t > 1, and with a constant
    # input u = W_ih x: h_t = relu(h_{t-1} + u) = t relu(u) (induction: h_{t-1} >= 0)
    kept = _relu_rnn_trajectory("irnn", pulse)
    assert kept[0] > 0 and torch.allclose(kept, kept[0].expand(steps), rtol=1e-12)
    grown = _relu_rnn_trajectory("irnn", constant)
    t = torch.arange(1, steps + 1, dtype=torch.float64)
    assert torch.allclose(grown, t * grown[0], rtol=1e-10)
    # orthogonal recurrence (He's default) and He-scaled recurrence: each ReLU step halves the
    # state's energy on average, so a pulse is gone after 100 steps (expected 2^-50)
    for options in ({}, {"recurrent": "scheme"}):
        lost = _relu_rnn_trajectory("he", pulse, **options)
        assert lost[-1] < 1e-6 * lost[0]
    # the scaled identity (the paper's iRNN, 0.01 I) forgets on purpose: h_t = 0.01^(t-1) h_1
    fading = _relu_rnn_trajectory("irnn", pulse, identity_scale=0.01)
    assert torch.allclose(fading[:5], fading[0] * 0.01 ** torch.arange(5.0).double(), rtol=1e-9)


def test_irnn_leaves_tanh_rnns_lstms_grus_orthogonal_and_other_layers_he():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.relu_rnn = nn.RNN(4, 8, nonlinearity="relu")
            self.tanh_rnn = nn.RNN(8, 8)
            self.gru = nn.GRU(8, 8)
            self.lstm = nn.LSTM(8, 8)
            self.head = nn.Linear(8, 3)

        def forward(self, x):
            for rnn in (self.relu_rnn, self.tanh_rnn, self.gru, self.lstm):
                x, _ = rnn(x)
            return self.head(torch.relu(x))

    plan = wi.plan(Net(), "irnn")
    assert plan["relu_rnn.weight_hh_l0"].init == "identity"
    for rnn in ("tanh_rnn", "gru", "lstm"):
        assert plan[f"{rnn}.weight_hh_l0"].init == "orthogonal"
        assert plan[f"{rnn}.weight_ih_l0"].init == "variance_scaling"
    assert plan["head.weight"].init == "variance_scaling"
    assert plan["lstm.bias_ih_l0"].args == {"values": [0.0, 1.0, 0.0, 0.0]}
    assert plan.notes["relu_rnns"] == ["relu_rnn"]
    assert plan.notes["other_rnns"] == ["gru", "lstm", "tanh_rnn"]


@pytest.mark.parametrize("bad", [{"identity_scale": 0.0}, {"input_std": -1.0},
                                 {"input_std": float("nan")}, {"identity_scale": True}])  # fmt: skip
def test_irnn_bad_options_name_the_option_and_leave_the_model(bad):
    rnn = nn.RNN(3, 4, nonlinearity="relu")
    before = [p.clone() for p in rnn.parameters()]
    with pytest.raises(ValueError, match=next(iter(bad))):
        wi.init(rnn, "irnn", **bad)
    assert all(torch.equal(a, b) for a, b in zip(before, rnn.parameters()))
    with pytest.raises(ValueError, match="identity_scale"):
        IRNNOptions(identity_scale=-2.0)


# --- unitary -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("make", "gates"), [(lambda: nn.LSTM(12, 16, num_layers=2), 4),
                                             (lambda: nn.GRU(12, 16), 3),
                                             (lambda: nn.RNN(12, 16), 1),
                                             (lambda: nn.LSTMCell(12, 16), 4)])  # fmt: skip
def test_unitary_recurrent_weights_are_orthogonal_per_gate(make, gates):
    rnn = make().double()
    plan = wi.init(rnn, "unitary", seed=0)
    names = [n for n, _ in rnn.named_parameters() if n.startswith("weight_hh")]
    assert names and plan.notes["unitary_recurrent_weights"] == names
    for name in names:
        assert plan[name].init == "unitary"
        w = getattr(rnn, name)
        for gate in w.split(16):  # W W^T = I for each gate's block
            assert gate.shape == (16, 16)
            assert torch.allclose(gate @ gate.T, torch.eye(16, dtype=torch.float64), atol=1e-12)
        assert len(w.split(16)) == gates


def test_unitary_linear_recurrence_keeps_the_hidden_state_norm():
    rnn = nn.RNN(4, 32, bias=False).double()
    wi.init(rnn, "unitary", seed=0)
    h = torch.randn(32, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    norm = h.norm()
    for _ in range(200):  # h_t = W h_{t-1}, the recurrence without input and nonlinearity
        h = rnn.weight_hh_l0 @ h
    assert torch.allclose(h.norm(), norm, rtol=1e-10)


def test_complex_recurrent_weights_of_own_modules_get_a_unitary_matrix_by_rule():
    class ComplexCell(nn.Module):
        def __init__(self):
            super().__init__()
            self.w_rec = nn.Parameter(torch.zeros(16, 16, dtype=torch.complex128))
            self.inp = nn.Linear(3, 16)

        def forward(self, x, h):
            return self.w_rec @ h + self.inp(x).to(h.dtype)

    net = nn.Sequential()
    net.add_module("cell", ComplexCell())
    wi.init(net, "unitary", rules={"*.w_rec": "unitary"}, seed=0)
    u = net.cell.w_rec.detach()
    assert u.imag.abs().max() > 0.1  # a complex draw, not a real orthogonal one
    assert torch.allclose(u @ u.conj().T, torch.eye(16, dtype=torch.complex128), atol=1e-12)
    h = torch.randn(16, dtype=torch.complex128, generator=torch.Generator().manual_seed(4))
    assert torch.allclose((torch.linalg.matrix_power(u, 100) @ h).norm(), h.norm(), rtol=1e-10)


def test_unitary_rejects_a_contradicting_recurrent_option_and_the_shared_option_exists():
    with pytest.raises(ValueError, match="recurrent='identity'"):
        wi.plan(nn.LSTM(3, 4), "unitary", recurrent="identity")
    plan = wi.plan(nn.GRU(3, 4), "he", recurrent="unitary")  # the shared option
    assert plan["weight_hh_l0"].init == "unitary"
    with pytest.raises(ValueError, match="unitary"):
        wi.plan(nn.GRU(3, 4), "he", recurrent="unitarian")


def test_auto_honours_the_unitary_recurrent_option():
    plan = wi.plan(nn.LSTM(3, 4), "auto", example_input=torch.randn(5, 2, 3), recurrent="unitary")
    assert plan["weight_hh_l0"].init == "unitary"


# --- the forget-gate bias under every scheme ---------------------------------------------------

HIDDEN = 8


class _Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.f = nn.Sequential(nn.Linear(HIDDEN, HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, HIDDEN))

    def forward(self, x):
        return x + self.f(x)


class _Recurrent(nn.Module):
    """A residual block (for the residual recipes), a 2-layer LSTM and an LSTMCell."""

    def __init__(self):
        super().__init__()
        self.inp = nn.Linear(4, HIDDEN)
        self.block = _Block()
        self.lstm = nn.LSTM(HIDDEN, HIDDEN, num_layers=2)
        self.cell = nn.LSTMCell(HIDDEN, HIDDEN)
        self.head = nn.Linear(HIDDEN, 2)

    def forward(self, x):
        h, _ = self.lstm(self.block(torch.tanh(self.inp(x))))
        h, _ = self.cell(h[-1])
        return self.head(h)


#: the forget-gate bias (bias_ih + bias_hh) each scheme documents; every scheme not listed: 1
DOCUMENTED_FORGET = {"torch": None}  # "torch" reproduces torch's U(-1/sqrt(h), 1/sqrt(h))
#: what a scheme needs done to a model before it applies (its documented preparation)
PREPARE = {"skipinit": add_residual_gains, "rezero": add_residual_gains}


def _forget_sums(model: nn.Module) -> list[torch.Tensor]:
    pairs = [(model.lstm, "_l0"), (model.lstm, "_l1"), (model.cell, "")]
    return [
        (getattr(m, "bias_ih" + s) + getattr(m, "bias_hh" + s))[HIDDEN : 2 * HIDDEN].detach()
        for m, s in pairs
    ]


@pytest.mark.parametrize("scheme", sorted(wi.schemes()))
def test_every_scheme_gives_lstms_the_forget_gate_bias(scheme):
    torch.manual_seed(0)
    model = _Recurrent()
    x = torch.randn(5, 3, 4)
    if scheme in PREPARE:
        PREPARE[scheme](model)
    data = {"data": x} if scheme == "lsuv" else {}
    wi.init(model, scheme, example_input=x, seed=0, **data)
    sums = _forget_sums(model)
    expected = DOCUMENTED_FORGET.get(scheme, 1.0)
    if expected is None:  # torch's default: uniform draws in +-2/sqrt(h) for the sum
        bound = 2 / math.sqrt(HIDDEN)
        assert all(s.abs().max() <= bound and s.std() > 0 for s in sums)
        return
    for s in sums:
        assert torch.allclose(s, torch.full_like(s, expected)), (scheme, s)


@pytest.mark.parametrize("scheme", ["he", "irnn", "unitary", "sparse", "random_walk", "auto"])
def test_the_forget_bias_option_sets_the_sum(scheme):
    model = _Recurrent()
    x = torch.randn(5, 3, 4)
    wi.init(model, scheme, example_input=x, seed=0, forget_bias=2.5)
    assert all(torch.allclose(s, torch.full_like(s, 2.5)) for s in _forget_sums(model))
