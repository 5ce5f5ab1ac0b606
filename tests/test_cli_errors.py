"""The command line's user errors: one line on stderr, exit status 2, no traceback, nothing
written and no work done; real bugs keep their traceback. And ``plan --data``."""

import importlib.metadata
import json
import pickle
import re
import subprocess
import sys

import numpy as np
import pytest
import torch

import weightinit as wi
from weightinit.commands.cli import load_factory, main
from weightinit.commands.demo import EXTRA

FACTORY = """
import pathlib
import torch.nn as nn

BUILT = pathlib.Path(__file__).with_name("built")  # touched whenever a model is built


def mlp():
    BUILT.touch()
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))


def lm():
    BUILT.touch()
    return nn.Sequential(nn.Embedding(50, 8), nn.Linear(8, 8), nn.Tanh())


def sized(width):
    return nn.Linear(width, width)


def not_a_module():
    return 3


def broken():
    raise RuntimeError("a bug in the factory")
"""


@pytest.fixture
def zoo(tmp_path):
    file = tmp_path / "zoo.py"
    file.write_text(FACTORY)
    return file


def run(argv, capsys):
    """(exit status, stdout, stderr) of ``weightinit argv``, in process."""
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exit:  # argparse's errors and --help
        code = exit.code
    out, err = capsys.readouterr()
    return code, out, err


def assert_usage_error(code, err, *fragments):
    """Exit status 2 and exactly one line on stderr, containing every fragment."""
    assert code == 2, err
    assert err.endswith("\n") and err.count("\n") == 1, err
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in err, (fragment, err)


def test_a_syntax_error_in_the_factory_file_names_the_file_and_line(tmp_path, capsys):
    file = tmp_path / "model.py"
    file.write_text("import torch\n\ndef make(:\n    pass\n")
    code, _, err = run(["plan", f"{file}:make"], capsys)
    assert_usage_error(code, err, "syntax error", str(file), "line 3")


@pytest.mark.parametrize(
    "argv",
    [
        ["plan", "{zoo}:mlp", "--input-shape", "2,5"],
        ["plan", "{zoo}:mlp", "--input-shape", "2,5", "--scheme", "auto"],
        ["diagnose", "{zoo}:mlp", "--input-shape", "2,5", "--schemes", "he", "--out", "{out}"],
        ["diagnose", "{zoo}:mlp", "--input-shape", "2,5", "--schemes", "torch", "--out", "{out}"],
    ],
)
def test_an_input_shape_the_model_does_not_take_is_one_line_naming_it(argv, zoo, tmp_path, capsys):
    out = tmp_path / "report"
    code, _, err = run([a.format(zoo=zoo, out=out) for a in argv], capsys)
    assert_usage_error(code, err)
    assert re.search(r"2,5|\(2, 5\)", err), err  # the shape given, as the user wrote it or not
    assert not out.exists()  # diagnose failed before writing anything


@pytest.mark.parametrize("command", ["plan", "diagnose"])
@pytest.mark.parametrize("high", ["-3", "0", "ten"])
def test_input_int_must_be_a_positive_integer(command, high, zoo, capsys):
    argv = [command, f"{zoo}:lm", "--input-shape", "2,5", "--input-int", high]
    code, _, err = run(argv, capsys)
    assert_usage_error(code, err, "--input-int", f"got '{high}'")
    assert not (zoo.parent / "built").exists()


def test_input_int_without_an_input_shape_is_refused(zoo, capsys):
    code, _, err = run(["plan", f"{zoo}:lm", "--input-int", "50"], capsys)
    assert_usage_error(code, err, "--input-int", "pass --input-shape")
    assert not (zoo.parent / "built").exists()


def test_input_int_draws_token_ids_below_high(zoo, capsys):
    code, out, err = run(["plan", f"{zoo}:lm", "--input-shape", "2,5", "--input-int", "50"], capsys)
    assert code == 0, err
    assert "embedding" in out


@pytest.mark.parametrize(
    ("schemes", "message"),
    [
        (",", "name at least one scheme"),
        (" , ", "name at least one scheme"),
        ("", "name at least one scheme"),
        ("he,kaiming", "'he' more than once"),  # an alias is the same scheme
        ("he,kaimng", "unknown scheme 'kaimng'. Did you mean 'kaiming'"),
    ],
)
def test_schemes_must_name_each_scheme_once(schemes, message, zoo, tmp_path, capsys):
    argv = ["diagnose", f"{zoo}:mlp", "--input-shape", "2,4", "--schemes", schemes]
    code, _, err = run([*argv, "--out", tmp_path / "report"], capsys)
    assert_usage_error(code, err, "--schemes", message)


def test_a_runtime_error_from_running_the_model_on_the_input_names_the_input(
    zoo, monkeypatch, capsys
):
    """What torch raises on an input that does not fit (where the library does not word it
    itself): one line naming the option; with no input of the user's it stays a bug."""

    def fails(*args, **kwargs):
        raise RuntimeError("mat1 and mat2 shapes cannot be multiplied (2x5 and 4x8)")

    monkeypatch.setattr("weightinit.commands.cli.plan", fails)
    code, _, err = run(["plan", f"{zoo}:mlp", "--input-shape", "2,5"], capsys)
    assert_usage_error(code, err, "the model failed on --input-shape 2,5", "(2x5 and 4x8)")
    with pytest.raises(RuntimeError, match="cannot be multiplied"):
        main(["plan", f"{zoo}:mlp"])


@pytest.mark.parametrize(
    "command", [["diagnose", "{zoo}:mlp", "--input-shape", "2,4"], ["demo", "--quick"]]
)
@pytest.mark.parametrize(
    ("where", "message"), [("a_file/sub", "Not a directory"), ("a_file", "is a file")]
)
def test_an_unwritable_out_is_refused_before_any_work(command, where, message, zoo, capsys):
    (zoo.parent / "a_file").write_text("not a folder")
    out = zoo.parent / where
    code, _, err = run([*(a.format(zoo=zoo) for a in command), "--out", out], capsys)
    assert_usage_error(code, err, "--out", str(out), message)
    assert not (zoo.parent / "built").exists()  # no model was built
    assert (zoo.parent / "a_file").read_text() == "not a folder"


def test_checking_out_leaves_no_folder_behind_when_the_command_then_fails(zoo, capsys):
    out = zoo.parent / "new" / "report"
    argv = ["diagnose", f"{zoo}:mlp", "--input-shape", "2,5", "--schemes", "he", "--out", out]
    code, _, err = run(argv, capsys)
    assert_usage_error(code, err)
    assert not (zoo.parent / "new").exists()
    assert (zoo.parent / "built").exists()  # the check passed and the work began


def test_diagnose_writes_into_an_out_folder_that_did_not_exist(zoo, capsys):
    out = zoo.parent / "new" / "report"
    argv = ["diagnose", f"{zoo}:mlp", "--input-shape", "8,4", "--schemes", "he", "--out", out]
    code, _, err = run(argv, capsys)
    assert code == 0, err
    assert {p.name for p in out.iterdir()} == {"signal.png", "index.html", "report.json"}


# --data


def test_plan_lsuv_calibrates_on_data_from_a_torch_file(zoo, capsys):
    batch = torch.randn(64, 4, generator=torch.Generator().manual_seed(1))
    torch.save(batch, zoo.parent / "batch.pt")
    argv = ["plan", f"{zoo}:mlp", "--scheme", "LSUV", "--data", zoo.parent / "batch.pt", "--json"]
    code, out, err = run(argv, capsys)
    assert code == 0, err
    expected = wi.plan(load_factory(f"{zoo}:mlp")(), "lsuv", data=batch)
    assert json.loads(out) == json.loads(expected.to_json())
    assert all(row["scale"] is not None for row in json.loads(out)["rows"])


@pytest.mark.parametrize("rng", [None, "torch", "philox-v1"])
def test_plan_records_the_seed_and_the_generator(rng, zoo, capsys):
    argv = ["plan", f"{zoo}:mlp", "--seed", "3", *(["--rng", rng] if rng else []), "--json"]
    code, out, err = run(argv, capsys)
    assert code == 0, err
    expected = wi.plan(load_factory(f"{zoo}:mlp")(), "he", seed=3, rng=rng)
    assert json.loads(out) == json.loads(expected.to_json())
    assert json.loads(out)["rng"] == (rng or "philox-v1")
    assert json.loads(out)["options"]["seed"] == 3


def test_plan_data_from_npy_is_cast_to_the_models_dtype(zoo, capsys):
    batch = np.random.default_rng(2).standard_normal((64, 4))  # float64, as numpy saves it
    np.save(zoo.parent / "batch.npy", batch)
    argv = ["plan", f"{zoo}:mlp", "--scheme", "lsuv", "--data", zoo.parent / "batch.npy"]
    code, out, err = run([*argv, "--json"], capsys)
    assert code == 0, err
    model = load_factory(f"{zoo}:mlp")()
    expected = wi.plan(model, "lsuv", data=torch.from_numpy(batch).float())
    assert json.loads(out) == json.loads(expected.to_json())


def test_plan_auto_takes_data_as_its_input_and_sweep(zoo, capsys):
    batch = torch.randn(64, 4, generator=torch.Generator().manual_seed(3)) * 3 + 1
    torch.save(batch, zoo.parent / "batch.pt")
    argv = ["plan", f"{zoo}:mlp", "--scheme", "auto", "--data", zoo.parent / "batch.pt"]
    code, out, err = run([*argv, "--json"], capsys)
    assert code == 0, err
    expected = wi.plan(load_factory(f"{zoo}:mlp")(), "auto", data=batch)
    assert json.loads(out) == json.loads(expected.to_json())


@pytest.mark.parametrize(
    ("scheme", "wanted"), [("lsuv", "pass --data PATH"), ("auto", "pass --input-shape")]
)
def test_a_scheme_that_needs_data_or_input_says_which_option_to_pass(scheme, wanted, zoo, capsys):
    code, _, err = run(["plan", f"{zoo}:mlp", "--scheme", scheme], capsys)
    assert_usage_error(code, err, f"scheme '{scheme}'", wanted)
    assert not (zoo.parent / "built").exists()


def test_data_for_a_scheme_that_does_not_calibrate_is_refused(zoo, capsys):
    torch.save(torch.randn(8, 4), zoo.parent / "batch.pt")
    argv = ["plan", f"{zoo}:mlp", "--scheme", "he", "--data", zoo.parent / "batch.pt"]
    code, _, err = run(argv, capsys)
    assert_usage_error(code, err, "--data", "scheme 'he' does not calibrate", "lsuv", "auto")
    assert not (zoo.parent / "built").exists()


class _Payload:
    """A pickle that would create a file if the data file's code ran."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def _write_bad_data(folder):
    """name -> (file, what the error says about it)."""
    (folder / "folder.pt").mkdir()
    (folder / "garbage.pt").write_bytes(b"not a tensor at all")
    (folder / "empty.pt").write_bytes(b"")
    torch.save({"x": "text"}, folder / "dict.pt")
    torch.save([torch.randn(2, 4)], folder / "list.pt")
    torch.save(torch.randn(8, 5), folder / "wide.pt")
    (folder / "code.pt").write_bytes(pickle.dumps(_Payload(folder / "ran")))
    np.save(folder / "objects.npy", np.array([{"a": 1}], dtype=object))
    np.save(folder / "text.npy", np.array(["a", "b"]))
    (folder / "garbage.npy").write_bytes(b"not numpy")
    return {
        "missing.pt": "cannot read",
        "folder.pt": "cannot read",
        "garbage.pt": "is not a tensor saved with torch.save",
        "empty.pt": "is not a tensor saved with torch.save",
        "code.pt": "is not a tensor saved with torch.save",
        "dict.pt": "holds a dict with 'x': a str",
        "list.pt": "holds a list, not a tensor or a dict of tensors",
        "objects.npy": "is not a .npy array",
        "garbage.npy": "is not a .npy array",
        "text.npy": "not numbers",
    }


def test_a_bad_data_file_is_one_line_naming_it_and_runs_nothing(zoo, capsys):
    for name, message in _write_bad_data(zoo.parent).items():
        path = zoo.parent / name
        code, _, err = run(["plan", f"{zoo}:mlp", "--scheme", "lsuv", "--data", path], capsys)
        assert_usage_error(code, err, "--data:", repr(str(path)), message)
    assert not (zoo.parent / "built").exists()  # every file was refused before the model
    assert not (zoo.parent / "ran").exists()  # weights_only: nothing in a file runs


def test_data_the_model_does_not_take_is_one_line(zoo, capsys):
    _write_bad_data(zoo.parent)
    for scheme in ("auto", "lsuv"):
        argv = ["plan", f"{zoo}:mlp", "--scheme", scheme, "--data", zoo.parent / "wide.pt"]
        code, _, err = run(argv, capsys)
        assert_usage_error(code, err)
        assert "8x5" in err or "(8, 5)" in err, err  # the batch's shape


# what the library says about what it was given, and the factory spec


@pytest.mark.parametrize(
    ("argv", "fragments"),
    [
        (["--scheme", "hee"], ["--scheme", "unknown scheme 'hee'", "Did you mean 'he'"]),
        (["--option", "bogus=1"], ["unknown scheme option(s) bogus"]),
        (["--option", "mode=sideways"], ["option `mode`", "'sideways'"]),
        (["--option", "mode"], ["--option", "expected name=value"]),
        (["--input-shape", "2,x"], ["--input-shape", "comma-separated sizes"]),
        (["--input-shape", "2,0"], ["--input-shape", "sizes must be positive"]),
        (["--rng", "philox"], ["--rng", "invalid choice: 'philox'"]),
        (["--scheme", "torch", "--rng", "philox-v1"], ["scheme 'torch' draws from the 'torch'"]),
        (["--seed", "x"], ["--seed", "invalid int value"]),
    ],
)
def test_library_and_argument_errors_are_one_line(argv, fragments, zoo, capsys):
    code, _, err = run(["plan", f"{zoo}:mlp", *argv], capsys)
    assert_usage_error(code, err, *fragments)


@pytest.mark.parametrize(
    ("spec", "fragments"),
    [
        ("{zoo}:missing", ["defines no callable 'missing'"]),
        ("{dir}/nope.py:mlp", ["no such file"]),
        ("{zoo}", ["expected path/to/file.py:factory"]),
        ("{dir}/zoo.txt:mlp", ["is not a Python file"]),
        ("{zoo}:sized", ["sized(width) takes arguments"]),
        ("{zoo}:not_a_module", ["returned int, not a torch.nn.Module"]),
    ],
)
def test_a_bad_factory_is_one_line(spec, fragments, zoo, capsys):
    (zoo.parent / "zoo.txt").write_text(FACTORY)
    code, _, err = run(["plan", spec.format(zoo=zoo, dir=zoo.parent)], capsys)
    assert_usage_error(code, err, *fragments)


def test_a_bug_in_the_users_code_keeps_its_traceback(zoo):
    with pytest.raises(RuntimeError, match="a bug in the factory"):
        main(["plan", f"{zoo}:broken"])
    proc = subprocess.run(
        [sys.executable, "-m", "weightinit", "plan", f"{zoo}:broken"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 1 and "Traceback" in proc.stderr


def test_the_installed_command_prints_one_line_and_exits_with_2(tmp_path):
    file = tmp_path / "model.py"
    file.write_text("def make(:\n")
    proc = subprocess.run(
        [sys.executable, "-m", "weightinit", "plan", f"{file}:make"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.startswith("weightinit: syntax error") and proc.stderr.count("\n") == 1


@pytest.mark.parametrize("command", [[], ["list"], ["schemes"], ["plan"], ["diagnose"], ["demo"]])
def test_every_command_has_help(command, capsys):
    code, out, _ = run([*command, "--help"], capsys)
    assert code == 0 and out.startswith(f"usage: weightinit {' '.join(command)}".rstrip())
    if command == ["plan"]:
        assert "--data PATH" in out


# the demo's extra


def test_demo_without_its_extra_says_how_to_install_it(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "rich", None)  # as if rich were not installed
    out = tmp_path / "demo"
    code, stdout, err = run(["demo", "--quick", "--out", out], capsys)
    assert_usage_error(code, err, "rich", 'pip install "weightinit[demo]"')
    assert stdout == "" and not out.exists()


def test_the_demo_checks_every_module_of_its_extra():
    demo = [
        re.match(r"[A-Za-z0-9_.-]+", requirement).group()
        for requirement in importlib.metadata.requires("weightinit")
        if re.search(r"""extra\s*==\s*["']demo["']""", requirement)
    ]
    assert sorted(EXTRA) == sorted(demo)


def test_diagnose_without_matplotlib_says_how_to_install_it_before_any_work(
    zoo, tmp_path, monkeypatch, capsys
):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as if it were not installed
    out = tmp_path / "report"
    code, stdout, err = run(
        ["diagnose", f"{zoo}:mlp", "--input-shape", "16,4", "--out", out], capsys
    )
    assert_usage_error(code, err, "matplotlib", 'pip install "weightinit[demo]"')
    assert stdout == "" and not (zoo.parent / "built").exists()


def test_data_as_a_dict_is_the_models_keyword_arguments(zoo, capsys):
    """--data may hold a dict of tensors, passed as model(**batch) (Hugging Face models take
    input_ids= so): nn.Sequential's forward(input) gives the plan of the bare tensor."""
    batch = torch.randn(64, 4, generator=torch.Generator().manual_seed(0))
    torch.save(batch, zoo.parent / "tensor.pt")
    torch.save({"input": batch}, zoo.parent / "kwargs.pt")
    plans = []
    for name in ("tensor.pt", "kwargs.pt"):
        argv = ["plan", f"{zoo}:mlp", "--scheme", "lsuv", "--data", zoo.parent / name, "--json"]
        code, out, err = run(argv, capsys)
        assert code == 0, err
        plans.append(json.loads(out))
    assert plans[0] == plans[1]
    assert all("LSUV gain" in row["reason"] for row in plans[0]["rows"] if row["role"] == "weight")
