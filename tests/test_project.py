"""The project's promises about itself: the README's commands, the CI script and the CLI."""

import re
import subprocess
import sys
from pathlib import Path

import weightinit as wi
from weightinit.commands.cli import main

ROOT = Path(__file__).resolve().parent.parent


def readme_commands():
    return re.findall(r"```bash\n#[^\n]*\n([^\n]+)\n```", (ROOT / "README.md").read_text())


def test_readme_opens_with_the_main_job_and_the_test_command():
    main_job, tests = readme_commands()[:2]
    assert main_job.endswith("weightinit demo") and '".[demo]"' in main_job
    assert "constraints.txt" in main_job and "constraints.txt" in tests
    assert tests.endswith("python -m pytest")


def test_ci_runs_exactly_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert readme_commands()[1] in ci


def test_constraints_pin_torch():
    assert "torch==2.13.0" in (ROOT / "constraints.txt").read_text().split()


def test_cli_list_prints_every_initializer_with_its_columns(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    header = out.splitlines()[0].split()
    assert header[:3] == ["name", "aliases", "formula"] and "paper" in header
    for entry in wi.catalog():
        assert re.search(rf"^{entry.name}\s", out, re.MULTILINE), entry.name


def test_cli_list_json(capsys):
    import json

    assert main(["list", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in rows] == [e.name for e in wi.catalog()]
    assert all(wi.get(r["function"].split(".")[1]) for r in rows)


def test_console_script_and_python_dash_m_are_the_same_command():
    script = Path(sys.executable).parent / "weightinit"  # installed by pip beside python
    a = subprocess.run(
        [sys.executable, "-m", "weightinit", "list"], capture_output=True, text=True, check=True
    )
    b = subprocess.run([str(script), "list"], capture_output=True, text=True, check=True)
    assert a.stdout == b.stdout and "he_normal" in a.stdout


def test_cli_without_a_command_exits_with_usage():
    proc = subprocess.run(
        [sys.executable, "-m", "weightinit"], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 2 and "required: COMMAND" in proc.stderr
    assert "`weightinit --help`" in proc.stderr


FACTORY = """
import torch.nn as nn

def cnn():
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                         nn.Flatten(), nn.Linear(8 * 4 * 4, 10))

def lm():
    return nn.Sequential(nn.Embedding(50, 8), nn.Linear(8, 8), nn.Tanh())

NOT_A_MODULE = 3
"""


def test_cli_plan_prints_the_table_and_json(tmp_path, capsys):
    import json

    file = tmp_path / "zoo.py"
    file.write_text(FACTORY)
    assert main(["plan", f"{file}:cnn", "--input-shape", "2,3,4,4"]) == 0
    out = capsys.readouterr().out
    assert "activations from the execution trace" in out
    assert re.search(r"^0\.weight .*followed by relu \(through BatchNorm2d\)", out, re.MULTILINE)
    assert main(["plan", f"{file}:lm", "--input-shape", "2,5", "--input-int", "50", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)["rows"]
    assert rows[0]["role"] == "embedding" and "tanh" in rows[1]["reason"]
    assert main(["plan", f"{file}:cnn", "--scheme", "torch"]) == 0
    assert "torch default" in capsys.readouterr().out


def test_cli_plan_errors(tmp_path):
    file = tmp_path / "zoo.py"
    file.write_text(FACTORY)
    for spec, message in [
        (f"{file}:missing", "defines no callable 'missing'"),
        (f"{tmp_path}/nope.py:cnn", "no such file"),
        (str(file), "expected path/to/file.py:factory"),
    ]:
        proc = subprocess.run(
            [sys.executable, "-m", "weightinit", "plan", spec],
            capture_output=True,
            text=True,
            check=False,
        )
        assert proc.returncode == 2 and message in proc.stderr, proc.stderr


def test_cli_schemes_lists_every_registered_scheme(capsys):
    import json

    assert main(["schemes"]) == 0
    out = capsys.readouterr().out
    for name in wi.schemes():
        assert re.search(rf"^{re.escape(name)}\s", out, re.MULTILINE), name
    assert main(["schemes", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == wi.schemes()


RESIDUAL = """
import torch
from torch import nn

class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(8, 8), nn.Linear(8, 8)

    def forward(self, x):  # a residual sum that is not an add: tracing cannot see it
        return torch.stack([x, self.fc2(torch.relu(self.fc1(x)))]).sum(0)

def net():
    return nn.Sequential(nn.Linear(4, 8), Block(), Block(), nn.Linear(8, 2))
"""


def test_cli_plan_passes_scheme_options_read_as_json(tmp_path, capsys):
    import json

    file = tmp_path / "res.py"
    file.write_text(RESIDUAL)
    argv = ["plan", f"{file}:net", "--scheme", "fixup", "--json"]
    assert main([*argv, "--option", 'branches=["1", "2"]']) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["notes"]["L"] == 2 and plan["options"] == {"branches": ["1", "2"]}
    rows = {r["name"]: r for r in plan["rows"]}
    assert rows["1.fc2.weight"]["init"] == "zeros" and rows["3.weight"]["init"] == "zeros"
    argv = ["plan", f"{file}:net", "--scheme", "critical", "--json", "--option", "q_star=0.01"]
    assert main(argv) == 0
    assert json.loads(capsys.readouterr().out)["notes"]["relu"]["q_star"] == 0.01
    argv = ["plan", f"{file}:net", "--json", "--option", "distribution=uniform"]  # not JSON: text
    assert main(argv) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["rows"][0]["args"]["distribution"] == "uniform"
    for option, message in [
        ("q_star", "expected name=value"),  # no value
        ("q_star=-1", "scheme 'critical': option `q_star`"),  # the scheme's own check
        ("bogus=1", "unknown scheme option(s) bogus"),
    ]:
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "weightinit",
                "plan",
                f"{file}:net",
                "--scheme",
                "critical",
                "--option",
                option,
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        assert proc.returncode != 0 and message in proc.stderr, proc.stderr
