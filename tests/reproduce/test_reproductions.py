"""What every reproduction owes its reader, checked on its quick run: the paper and the claim,
measured numbers, a figure, a JSON result that reads back, and the command line around them."""

from __future__ import annotations

import json
import math
import sys

import pytest

from weightinit.commands.cli import main
from weightinit.reproduce.catalog import get, modules, reproductions

NAMES = [r.name for r in reproductions()]


def test_every_module_is_listed_once_and_numbers_are_the_issue_order():
    found = reproductions()
    assert len(found) == len(modules())
    assert len({r.name for r in found}) == len(found)
    numbers = [r.number for r in found]
    assert numbers == sorted(set(numbers))


@pytest.mark.parametrize("name", NAMES)
def test_quick_run_states_claim_numbers_figure_and_json(name, quick):
    result = quick(name)
    r = result.reproduction
    assert r.paper and r.claim and r.setup and r.title
    assert result.outcome.measures, "a reproduction measures something"
    assert any(math.isfinite(m.mean) for m in result.outcome.measures)
    assert result.outcome.verdict
    assert result.outcome.figures
    for path in result.outcome.figures:
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    written = json.loads((result.outcome.figures[0].parent / f"{name}.json").read_text())
    assert written["name"] == name and written["quick"] is True
    assert written["holds"] == result.outcome.holds
    assert [m["label"] for m in written["measures"]] == [m.label for m in result.outcome.measures]


def test_get_by_number_and_unknown_name():
    assert get("1").name == NAMES[0]
    with pytest.raises(ValueError, match="known: symmetry"):
        get("nope")


def test_cli_lists_and_runs(tmp_path, capsys):
    assert main(["reproduce", "--list"]) == 0
    listed = capsys.readouterr().out
    assert all(name in listed for name in NAMES)
    assert main(["reproduce", "--list", "--json"]) == 0
    assert [e["name"] for e in json.loads(capsys.readouterr().out)] == NAMES
    assert main(["reproduce", "symmetry", "--quick", "--out", str(tmp_path)]) == 0
    assert "1 of 1 claims hold here" in capsys.readouterr().out
    assert (tmp_path / "symmetry.json").exists() and (tmp_path / "symmetry.png").exists()


def test_the_page_shows_every_result_in_the_folder_with_its_command(tmp_path, capsys):
    out = tmp_path / "results"
    assert main(["reproduce", "symmetry", "he-xavier", "--quick", "--out", str(out)]) == 0
    readme = (out / "README.md").read_text()
    page = tmp_path / "docs" / "page.md"
    assert main(["reproduce", "--out", str(out), "--page", str(page)]) == 0  # page alone
    text = page.read_text()
    assert text.index("## 1. ") < text.index("## 2. ")
    assert "![He vs Xavier on a 30-layer ReLU net](../results/he-xavier.png)" in text
    assert f"weightinit reproduce he-xavier --quick --out {out}" in text
    written = json.loads((out / "symmetry.json").read_text())
    for m in written["measures"]:
        assert f"| {m['label']} | {m['text']} | {m['expected']} |" in text
    assert "tanh(0) = 0" in text  # the module's explanation, not only numbers
    assert "![He vs Xavier on a 30-layer ReLU net](./he-xavier.png)" in readme  # beside it


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["reproduce", "nope"], "unknown reproduction 'nope'; known: symmetry"),
        (["reproduce", "symmtery"], "unknown reproduction 'symmtery'; did you mean 'symmetry'?"),
        (["reproduce"], "name a reproduction"),
    ],
)
def test_cli_bad_input_is_one_clear_line(argv, message, tmp_path, capsys):
    assert main([*argv, "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_cli_seeds_must_be_positive(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["reproduce", "symmetry", "--seeds", "0"])
    assert exit_.value.code == 2
    assert "--seeds" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["reproduce", "symmetry"], ["bench", "--quick"]])
def test_without_the_reproduce_extra_the_command_says_how_to_install_it(
    argv, tmp_path, monkeypatch, capsys
):
    monkeypatch.setitem(sys.modules, "sklearn", None)  # import sklearn raises ImportError
    assert main([*argv, "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "needs sklearn" in err and 'pip install "weightinit[reproduce]"' in err
    out = tmp_path / "out"
    assert not out.exists() or not any(out.iterdir())  # nothing run, nothing written
