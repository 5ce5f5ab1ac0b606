"""Figures, pages, compare(), the diagnose CLI and the demo, as a user would meet them."""

import json
import re
import struct
import subprocess
import sys

import torch
from torch import nn

import weightinit as wi
from weightinit.commands.cli import main
from weightinit.commands.demo import SCHEMES


def png_size(path):
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    return struct.unpack(">II", data[16:24])


def factory():
    return nn.Sequential(
        *[m for _ in range(20) for m in (nn.Linear(32, 32), nn.Tanh())], nn.Linear(32, 4)
    )


def test_compare_tells_torch_from_he_on_a_deep_tanh_mlp(tmp_path):
    result = wi.compare(factory, ["torch", "he"], torch.randn(64, 32))
    assert result["torch"].verdict == "collapsed" and result["he"].verdict == "healthy"
    assert re.search(r"^torch\s+collapsed", str(result), re.MULTILINE)
    width, height = png_size(result.plot(tmp_path / "cmp.png"))
    assert width > 1500 and height > 300
    html = result.to_html(tmp_path / "cmp.html").read_text()
    assert "data:image/png;base64," in html and html.count("<table>") == 2
    assert "class='v collapsed'" in html and "Checked in this order" in html
    data = json.loads(result.to_json())
    assert set(data) == {"torch", "he"} and len(data["he"]["samples"]) == 2


def test_single_report_plot_and_page(tmp_path):
    report = wi.diagnose(factory(), torch.randn(16, 32))
    assert png_size(report.plot(tmp_path / "r.png"))[0] > 1000
    page = report.to_html(tmp_path / "r.html").read_text()
    assert f"class='v {report.verdict}'" in page
    assert all(f"<td>{layer.name}</td>" in page for layer in report.layers)


def test_cli_diagnose_writes_png_html_json(tmp_path, capsys):
    file = tmp_path / "zoo.py"
    file.write_text(
        "import torch.nn as nn\n"
        "def mlp():\n"
        "    return nn.Sequential(*[m for _ in range(10) for m in (nn.Linear(40, 40), nn.ReLU())])\n"
    )
    out = tmp_path / "report"
    assert (
        main(
            [
                "diagnose",
                f"{file}:mlp",
                "--input-shape",
                "64,40",
                "--schemes",
                "torch,he,orthogonal",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    text = capsys.readouterr().out
    assert (
        "== he ==" in text
        and "verdict:" in text
        and re.search(r"^he\s+healthy", text, re.MULTILINE)
    )
    assert png_size(out / "signal.png")[0] > 1000
    assert set(json.loads((out / "report.json").read_text())) == {"torch", "he", "orthogonal"}
    assert (out / "index.html").read_text().count("<table>") == 3


def test_cli_diagnose_rejects_unknown_schemes(tmp_path):
    file = tmp_path / "zoo.py"
    file.write_text("import torch.nn as nn\ndef mlp():\n    return nn.Linear(4, 4)\n")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "weightinit",
            "diagnose",
            f"{file}:mlp",
            "--input-shape",
            "2,4",
            "--schemes",
            "he,kaimng",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2
    assert "--schemes: unknown scheme 'kaimng'. Did you mean 'kaiming'" in proc.stderr


def test_demo_quick_runs_and_writes_its_page(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    proc = subprocess.run(
        [sys.executable, "-m", "weightinit", "demo", "--quick", "--out", str(tmp_path / "demo")],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert (
        "test accuracy" in proc.stdout and "collapsed" in proc.stdout and "healthy" in proc.stdout
    )
    assert (tmp_path / "cache" / "weightinit" / "mnist1d.npz").exists()  # generated, then cached
    page = (tmp_path / "demo" / "index.html").read_text()
    assert page.count("data:image/png;base64,") == 2
    assert {"torch", "he", "auto", "lsuv"} <= set(SCHEMES)
    for scheme in SCHEMES:  # one table row per activation and scheme, in the terminal and the page
        assert len(re.findall(rf"(ReLU|tanh)\W+{scheme}\W", proc.stdout)) == 2
        assert page.count(f"<td>{scheme}</td>") == 2
    for name in ("relu", "tanh"):
        report = json.loads((tmp_path / "demo" / f"report_{name}.json").read_text())
        assert list(report) == list(SCHEMES)
    for name in ("signal_relu.png", "signal_tanh.png", "report_relu.json", "report_tanh.json"):
        assert (tmp_path / "demo" / name).exists()


def test_cli_output_into_a_closed_pipe_is_not_an_error():
    """`weightinit schemes | head -1`: the reader goes away, the command ends quietly."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "weightinit", "schemes"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    proc.stdout.close()
    assert proc.wait(timeout=60) == 0
    assert "BrokenPipeError" not in proc.stderr.read().decode()
