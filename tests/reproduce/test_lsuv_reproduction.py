"""5. LSUV: the calibration it relies on, measured independently, and the quick run's result."""

import torch
from torch import nn

import weightinit as wi
from weightinit.reproduce.data import mnist1d
from weightinit.reproduce.papers.lsuv import DEPTH, WIDTH, thin_net
from weightinit.scheme.lsuv import LSUVOptions


def test_thin_net_is_deep_and_thin():
    net = thin_net("tanh")
    linears = [m for m in net if isinstance(m, nn.Linear)]
    assert len(linears) == DEPTH
    assert [(m.in_features, m.out_features) for m in linears] == (
        [(40, WIDTH)] + [(WIDTH, WIDTH)] * (DEPTH - 2) + [(WIDTH, 10)]
    )
    assert sum(isinstance(m, nn.Tanh) for m in net) == DEPTH - 1


def test_lsuv_gives_every_layer_unit_output_std_on_the_calibration_batch():
    tol = LSUVOptions().tol  # the scheme's own tolerance, 0.05
    batch = mnist1d().x[:256]
    for act in ("tanh", "relu"):
        torch.manual_seed(0)
        net = thin_net(act)
        stds: list[float] = []
        wi.init(net, "lsuv", data=batch, seed=0)
        hooks = [m.register_forward_hook(lambda m, i, o, stds=stds: stds.append(o.std().item()))
                 for m in net if isinstance(m, nn.Linear)]  # fmt: skip
        with torch.no_grad():
            net(batch)
        for h in hooks:
            h.remove()
        assert len(stds) == DEPTH
        assert all(abs(s - 1) <= tol for s in stds), (act, stds)
        # without LSUV the same net's default init shrinks the signal far outside the tolerance
        torch.manual_seed(0)
        plain = thin_net(act)
        with torch.no_grad():
            assert plain(batch).std().item() < 0.5


def test_quick_run_lsuv_trains_and_is_near_the_best(quick):
    result = quick("lsuv")
    accuracy = result.outcome.data["accuracy"]
    for act, by in accuracy.items():
        lsuv = by["LSUV"][0]
        assert lsuv > 0.2  # far above chance (10%) after a few epochs
        assert by["torch default"][0] < 0.15  # the default init does not train at depth 20
        best = max(v[0] for k, v in by.items() if k != "LSUV")
        assert lsuv >= best - 0.05, (act, by)
