"""13. Layer-wise DAE pre-training: the trainer, the hand-over to fine-tuning, the quick run."""

import torch
from torch import nn

from weightinit.reproduce.papers.pretraining import (
    DATA_FREE,
    PRETRAIN,
    pretrain,
    pretrained_net,
    reconstruction_loss,
)


def _data(n: int, seed: int) -> torch.Tensor:
    # low-rank data: an autoencoder narrower than the input can still reconstruct it
    g = torch.Generator().manual_seed(seed)
    return (
        torch.randn(n, 4, generator=g)
        @ torch.randn(4, 12, generator=torch.Generator().manual_seed(0))
        / 2
    )


def test_each_layer_reconstructs_its_held_out_codes_better_than_their_mean():
    torch.manual_seed(0)
    encoders = [nn.Linear(12, 8), nn.Linear(8, 8), nn.Linear(8, 8)]
    x, held_out = _data(2048, 1), _data(256, 2)
    losses = pretrain(encoders, x, held_out, epochs=5, seed=0)
    assert len(losses) == 3
    codes = held_out
    for encoder, (before, after) in zip(encoders, losses, strict=True):
        # the oracle: the best constant reconstruction has the codes' per-feature variance
        variance = codes.var(0, unbiased=False).mean().item()
        assert after < 0.5 * before
        assert after < 0.5 * variance
        with torch.no_grad():
            codes = torch.tanh(encoder(codes))


def test_reconstruction_loss_is_the_mse_of_the_clean_reconstruction():
    torch.manual_seed(0)
    enc, dec, h = nn.Linear(5, 3), nn.Linear(3, 5), torch.randn(20, 5)
    expected = ((dec(torch.tanh(enc(h))) - h) ** 2).mean().item()
    assert abs(reconstruction_loss(enc, dec, h) - expected) < 1e-6


def test_fine_tuning_starts_from_exact_copies_of_the_pretrained_encoders():
    torch.manual_seed(0)
    encoders = [nn.Linear(12, 8), nn.Linear(8, 8)]
    pretrain(encoders, _data(128, 1), _data(32, 2), epochs=1, seed=0)
    net = pretrained_net(encoders, 10)
    linears = [m for m in net if isinstance(m, nn.Linear)]
    assert len(linears) == 3 and linears[-1].out_features == 10
    for layer, encoder in zip(linears, encoders, strict=False):
        assert torch.equal(layer.weight, encoder.weight) and torch.equal(layer.bias, encoder.bias)
        assert layer.weight.data_ptr() != encoder.weight.data_ptr()  # a copy, not shared
    assert all(isinstance(m, nn.Tanh) for m in net[1::2])
    x = torch.randn(4, 12)
    with torch.no_grad():
        h = torch.tanh(encoders[1](torch.tanh(encoders[0](x))))
        torch.testing.assert_close(net(x), linears[-1](h))


def test_torch_default_init_is_pytorchs_own_reset():
    torch.manual_seed(3)
    a = nn.Sequential(nn.Linear(6, 4), nn.Tanh(), nn.Linear(4, 2))
    torch.manual_seed(3)
    b = nn.Sequential(nn.Linear(6, 4), nn.Tanh(), nn.Linear(4, 2))
    DATA_FREE["torch default"](b, torch.randn(2, 6), 0)
    assert not torch.equal(a[0].weight, b[0].weight)  # re-drawn...
    bound = 1 / 6**0.5  # ...from U(±1/sqrt(fan_in)), as nn.Linear does
    assert b[0].weight.abs().max() <= bound and b[0].weight.abs().max() > 0.8 * bound


def test_quick_run_data_free_init_matches_pretraining_at_a_fraction_of_the_cost(quick):
    result = quick("pretraining")
    data = result.outcome.data
    [acc] = data["accuracy"].values()
    # pre-training does reduce the held-out reconstruction loss of every layer
    assert all(after < before for run in data["dae_losses"] for before, after in run)
    # a modern data-free init is at least as good as pre-training (within 2 points) ...
    best = max(acc["auto"][0], acc["lsuv"][0])
    assert best >= acc[PRETRAIN][0] - 0.02
    # ... and every method trains well above chance (10 classes)
    assert all(a[0] > 0.25 for a in acc.values())
    # ... in a small fraction of pre-training's time
    assert max(data["init_seconds"]["auto"]) < 0.1 * data["init_seconds"][PRETRAIN][0]
    assert result.outcome.holds
