"""10. Recurrent recipes: the adding problem's statistics and the two initializations."""

import math

import pytest
import torch

import weightinit as wi
from weightinit.reproduce.papers.recurrent import BASELINE, MODELS, Adder, adding


def test_adding_problem_has_one_marker_per_half_and_the_marked_sum_as_target():
    length = 12
    x, y = adding(500, length, torch.Generator().manual_seed(0))
    assert x.shape == (500, length, 2) and y.shape == (500, 1)
    numbers, markers = x[..., 0], x[..., 1]
    assert 0 <= numbers.min() and numbers.max() < 1
    assert set(markers.unique().tolist()) == {0.0, 1.0}
    for i in range(len(x)):
        marked = markers[i].nonzero().flatten().tolist()
        assert len(marked) == 2
        assert marked[0] < length // 2 <= marked[1]
        assert y[i, 0].item() == pytest.approx(sum(numbers[i, j].item() for j in marked))


def test_predicting_one_gives_mse_one_sixth():
    # target u1 + u2 with u ~ U[0, 1]: mean 1, variance 2/12; the MSE of the constant 1 is an
    # average of (y - 1)^2, whose variance is E[(y-1)^4] - (1/6)^2 = 1/15 - 1/36 (triangular)
    n = 20_000
    _, y = adding(n, 20, torch.Generator().manual_seed(1))
    assert BASELINE == pytest.approx(1 / 6)
    se = math.sqrt((1 / 15 - 1 / 36) / n)
    assert (y - 1).square().mean().item() == pytest.approx(1 / 6, abs=4 * se)
    assert y.mean().item() == pytest.approx(1.0, abs=4 * math.sqrt(1 / 6 / n))


def test_irnn_gives_the_relu_rnn_identity_recurrence_small_inputs_and_zero_biases():
    cell, scheme, options = MODELS["ReLU RNN, IRNN"]
    model = Adder(cell, 16)
    wi.init(model, scheme, seed=0, **options)
    assert torch.equal(model.rnn.weight_hh_l0, torch.eye(16))
    assert torch.equal(model.rnn.bias_ih_l0, torch.zeros(16))
    assert torch.equal(model.rnn.bias_hh_l0, torch.zeros(16))
    assert model.rnn.weight_ih_l0.abs().max().item() < 0.001 * 5  # N(0, 0.001^2), 32 draws
    # the mechanism: with positive state and no input, the state is carried unchanged
    h = torch.rand(1, 1, 16)
    _, carried = model.rnn(torch.zeros(1, 40, 2), h)
    torch.testing.assert_close(carried, h)


@pytest.mark.parametrize(("label", "forget"), [("LSTM, forget bias 1", 1.0),
                                               ("LSTM, forget bias 0", 0.0)])  # fmt: skip
def test_lstm_forget_gate_bias_slice(label, forget):
    cell, scheme, options = MODELS[label]
    hidden = 8
    model = Adder(cell, hidden)
    wi.init(model, scheme, seed=0, **options)
    # torch packs the gates as (input, forget, cell, output), hidden rows each
    total = (model.rnn.bias_ih_l0 + model.rnn.bias_hh_l0).detach()
    i, f, g, o = total.split(hidden)
    assert torch.equal(f, torch.full((hidden,), forget))
    assert not (i.any() or g.any() or o.any())


def test_quick_run(quick):
    result = quick("recurrent")
    test = {label: [r["test"] for r in runs] for label, runs in result.outcome.data["runs"].items()}
    # the tanh RNN with torch's init does not beat the constant prediction
    assert min(test["tanh RNN, torch default"]) > 0.8 * BASELINE
    # the LSTM with forget bias 1 learns: its MSE at most a third of the baseline's
    assert max(test["LSTM, forget bias 1"]) < BASELINE / 3
