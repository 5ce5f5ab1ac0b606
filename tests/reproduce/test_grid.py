"""``weightinit bench``: the grid's bookkeeping (best learning rate, targets, resuming) on
records made by hand, a tiny real grid, the architectures it trains, and the command line."""

from __future__ import annotations

import json

import pytest
import torch

from weightinit.commands.cli import main
from weightinit.reproduce import grid as bench
from weightinit.reproduce.architectures import ARCHITECTURES, PEER, initialize
from weightinit.reproduce.grid import QUICK, Grid, best, targets

TINY = Grid(("mlp-relu",), (2, 3), seeds=2, train=256, validation=64, schemes=("he", "auto"),
            epochs=1, lrs=(0.01, 0.03))  # fmt: skip


def _run(accuracy: float, diverged: bool = False) -> dict:
    return {"accuracy": accuracy, "loss": 1.0, "diverged": diverged}


def test_best_chooses_the_learning_rate_on_validation_and_reports_test_accuracy():
    runs = {"m/4/he/0.1/0": {**_run(0.9), "validation": 0.5},  # best test, worse validation
            "m/4/he/0.01/0": {**_run(0.6), "validation": 0.7}}  # fmt: skip
    cell = best({"runs": runs})["m", 4, "he"]
    assert cell["lr"] == 0.01 and cell["mean"] == pytest.approx(0.6)


def test_best_takes_the_learning_rate_with_the_best_mean_over_seeds():
    runs = {"m/4/he/0.1/0": _run(0.9), "m/4/he/0.1/1": _run(0.1, diverged=True),  # mean 0.5
            "m/4/he/0.01/0": _run(0.6), "m/4/he/0.01/1": _run(0.6),  # mean 0.6
            "m/4/fixup/0.1/0": {"refused": "no residual branches"}}  # fmt: skip
    cells = best({"runs": runs})
    assert cells["m", 4, "he"]["lr"] == 0.01
    assert cells["m", 4, "he"]["mean"] == pytest.approx(0.6)
    assert cells["m", 4, "he"]["std"] == pytest.approx(0.0)
    assert cells["m", 4, "he"]["diverged"] == 0
    assert cells["m", 4, "fixup"] == {"refused": "no residual branches"}


def test_targets_name_exactly_the_cells_that_miss_them():
    def cell(mean):
        return {"mean": mean, "std": 0.0, "lr": 0.01, "seeds": 1, "diverged": 0}

    cells = {("m", 4, "auto"): cell(0.80), ("m", 4, "he"): cell(0.805),  # auto 0.5 pt behind
             ("m", 30, "auto"): cell(0.70), ("m", 30, "he"): cell(0.78),  # 8 points behind
             ("m", 30, "torch"): cell(0.10), ("m", 4, "torch"): cell(0.8)}  # fmt: skip
    found = targets(cells)
    [missed_auto] = found["auto within 1 point of the best"]
    assert missed_auto.startswith("m depth 30: auto 70.0%, he 78.0%")
    # auto 0.70 < 0.95 * 0.80; he 0.78 >= 0.95 * 0.805; torch is not activation-aware
    assert found["activation-aware at depth 30 >= 95% of depth 4"] == [
        "m auto: 70.0% at depth 30, 80.0% at depth 4"
    ]


def test_runs_interleave_schemes_and_add_the_peer_to_plain_sgd_nets():
    runs = TINY.runs(peer=True)
    assert len(runs) == 2 * 2 * 2 * 3  # depths x seeds x lrs x (he, auto, peer)
    assert [r[2] for r in runs[:3]] == ["he", "auto", PEER]
    assert all(r[2] != PEER for r in Grid(("residual-mlp",), (2,), 1).runs(peer=True))


def test_a_tiny_grid_runs_stores_every_run_and_resumes_without_redoing_any(tmp_path, monkeypatch):
    record = bench.run(TINY, tmp_path, peer=False)
    assert len(record["runs"]) == len(TINY.runs(peer=False)) == 16
    assert all(0.0 <= r["accuracy"] <= 1.0 for r in record["runs"].values())
    assert all(0.0 <= r["validation"] <= 1.0 for r in record["runs"].values())
    table = (tmp_path / "bench.md").read_text()
    assert "**mlp-relu**" in table and "| he |" in table and "| auto |" in table
    assert (tmp_path / "bench.png").read_bytes()[:4] == b"\x89PNG"

    def no_work(*args, **kwargs):
        raise AssertionError("a stored run was run again")

    monkeypatch.setattr(bench, "measure", no_work)
    assert bench.run(TINY, tmp_path, peer=False)["runs"] == record["runs"]

    # interrupted: the summary says so, and two runs missing from the file are the only ones run
    stored = json.loads((tmp_path / "bench.json").read_text())
    del stored["runs"][min(stored["runs"])]
    assert "- partial: 15 of 16 runs so far" in bench.summarize(stored, tmp_path)
    assert "(1 of 2 seeds)" in bench.summarize(stored, tmp_path)
    stored = json.loads((tmp_path / "bench.json").read_text())
    missing = sorted(stored["runs"])[:2]
    for key in missing:
        del stored["runs"][key]
    (tmp_path / "bench.json").write_text(json.dumps(stored))
    done = []
    monkeypatch.setattr(bench, "measure", lambda *r, **kw: done.append(r) or _run(0.5))
    bench.run(TINY, tmp_path, peer=False)
    assert sorted(bench._key(*r[:5]) for r in done) == missing


def test_worker_processes_store_the_same_results_as_one_process(tmp_path):
    tiny = Grid(("mlp-tanh",), (2,), seeds=1, train=128, validation=32, schemes=("he", "lsuv"),
                epochs=1, lrs=(0.01,))  # fmt: skip
    alone = bench.run(tiny, tmp_path / "one", peer=False)["runs"]
    pooled = bench.run(tiny, tmp_path / "two", jobs=2, peer=False)["runs"]
    assert alone.keys() == pooled.keys()
    for key in alone:
        assert alone[key]["accuracy"] == pooled[key]["accuracy"], key
        assert alone[key]["loss"] == pooled[key]["loss"], key


def test_a_grid_holds_out_fewer_examples_than_it_trains_on():
    with pytest.raises(ValueError, match="validation"):
        Grid(("mlp-relu",), (2,), seeds=1, train=500, validation=500)


def test_another_grids_file_is_refused_naming_the_folder(tmp_path):
    (tmp_path / "bench.json").write_text(json.dumps({"config": {"seeds": 9}, "runs": {}}))
    with pytest.raises(
        ValueError, match=r"another grid \(it differs in .*seeds.*\); name another --out"
    ):
        bench.run(TINY, tmp_path, peer=False)


@pytest.mark.parametrize("name", list(ARCHITECTURES))
def test_every_architecture_classifies_mnist1d_and_every_scheme_it_lists_initializes_it(name):
    arch = ARCHITECTURES[name]
    x = torch.randn(16, 1, 40) if arch.channels else torch.randn(16, 40)
    for scheme in arch.schemes:
        torch.manual_seed(0)
        model = arch.build(3)
        before = {k: v.clone() for k, v in model.state_dict().items()}
        initialize(model, scheme, x, seed=0)
        out = model(x)
        assert out.shape == (16, 10) and torch.isfinite(out).all(), scheme
        changed = [k for k, v in model.state_dict().items() if k in before
                   and not torch.equal(v, before[k])]  # fmt: skip
        assert changed or scheme == "torch", f"{scheme} wrote nothing"


def test_cli_quick_bench_writes_the_table_for_the_quick_slice(tmp_path, capsys):
    assert main(["bench", "--quick", "--out", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    for name in QUICK.architectures:
        assert f"**{name}**" in printed
    stored = json.loads((tmp_path / "bench.json").read_text())
    assert {k.split("/")[2] for k in stored["runs"]} >= set(QUICK.schemes) - {"fixup"}
    assert "target, auto within 1 point of the best" in printed
