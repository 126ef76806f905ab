"""The example scripts' command lines: every mistake is one line naming the option, the value
and the fix, with status 2 (argparse's ``parser.error``), before any training; a missing
matplotlib is refused at startup with the pip command.

The scripts run in this process (``main(argv)``): a parse error costs no training, and no
compile.
"""
import configparser
import importlib.util
import pathlib
import re
import sys

import pytest

from pyode import nn

ROOT = pathlib.Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
PROG = pathlib.Path(sys.argv[0]).name       # what argparse calls the program here
SCRIPTS = ("spiral", "lynx_hare", "odenet_digits", "nfe_figures", "augmented_circles",
           "gradient_methods")

pytest.importorskip("matplotlib")


@pytest.fixture(scope="module")
def examples():
    """The example scripts as modules (nfe_figures imports odenet_digits from their folder)."""
    sys.path.insert(0, str(EXAMPLES))
    try:
        modules = {}
        for name in SCRIPTS:
            spec = importlib.util.spec_from_file_location(f"cli_example_{name}",
                                                          EXAMPLES / f"{name}.py")
            modules[name] = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(modules[name])
        yield modules
    finally:
        sys.path.remove(str(EXAMPLES))


def _usage_error(module, argv, capsys):
    """Run ``main(argv)``; it must stop with status 2. Returns the ``error:`` line."""
    with pytest.raises(SystemExit) as info:
        module.main(argv)
    err = capsys.readouterr().err
    assert info.value.code == 2, err
    assert "Traceback" not in err
    errors = [line for line in err.splitlines() if line.startswith(f"{PROG}: error: ")]
    assert len(errors) == 1, err
    return errors[0][len(f"{PROG}: error: "):]


@pytest.fixture
def a_file(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("not a directory\n")
    return path


BAD_NUMBERS = [("--lr", "inf"), ("--lr", "nan"), ("--lr", "-0.001"), ("--lr", "0"),
               ("--seed", "-1"), ("--iters", "0"), ("--save-every", "-2")]


@pytest.mark.parametrize("flag, value", BAD_NUMBERS)
@pytest.mark.parametrize("name", ["spiral", "lynx_hare"])
def test_bad_numbers_are_refused_while_parsing(examples, name, flag, value, capsys):
    message = _usage_error(examples[name], [flag, value], capsys)
    assert message.startswith(f"argument {flag}: must be ")
    assert repr(value) in message


@pytest.mark.parametrize("name", ["odenet_digits", "nfe_figures", "augmented_circles"])
def test_paper_experiments_refuse_bad_numbers(examples, name, capsys):
    assert _usage_error(examples[name], ["--seed", "-1"], capsys).startswith(
        "argument --seed: must be an integer >= 0")
    assert _usage_error(examples[name], ["--epochs", "0"], capsys).startswith(
        "argument --epochs: must be a positive integer")


@pytest.mark.parametrize("name", SCRIPTS)
def test_out_that_is_a_file_or_cannot_be_created(examples, name, a_file, capsys):
    message = _usage_error(examples[name], ["--out", str(a_file)], capsys)
    assert message.startswith(f"argument --out: {a_file} is a file, not a directory; pass a "
                              "directory")
    below = a_file / "sub"
    message = _usage_error(examples[name], ["--out", str(below)], capsys)
    assert message.startswith(f"argument --out: cannot write to {below} ({a_file} is a file)")


@pytest.mark.parametrize("name", ["spiral", "lynx_hare"])
def test_resume_and_evaluate_paths(examples, name, tmp_path, capsys):
    message = _usage_error(examples[name], ["--resume", str(tmp_path)], capsys)
    assert message == (f"argument --resume: {tmp_path} is a directory; pass the file "
                       f"({name}_checkpoint.npz) inside it")
    (tmp_path / f"{name}_checkpoint.npz").write_bytes(b"")
    message = _usage_error(examples[name], ["--resume", str(tmp_path)], capsys)
    assert message.endswith(f"pass {tmp_path / f'{name}_checkpoint.npz'}")
    missing = tmp_path / "nope.npz"
    message = _usage_error(examples[name], ["--evaluate", str(missing)], capsys)
    assert message.startswith(f"argument --evaluate: no file {missing}; pass an existing")


def test_spiral_evaluate_says_what_it_accepts(examples, tmp_path, capsys):
    picture = tmp_path / "spiral.png"
    picture.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(64))
    message = _usage_error(examples["spiral"], ["--evaluate", str(picture)], capsys)
    assert message.startswith(f"argument --evaluate: {picture}: not a pyode file")
    assert "a model file (OUT/spiral_best.npz or OUT/spiral_final.npz) or a training " \
           "checkpoint (OUT/spiral_checkpoint.npz)" in message
    assert "f.save(path)" not in message and "pyode." not in message.split(";")[-1]


def test_lynx_hare_evaluate_names_the_option_not_library_code(examples, tmp_path, capsys):
    model_file = tmp_path / "field.npz"
    nn.MLP([2, 4, 2]).save(model_file)
    message = _usage_error(examples["lynx_hare"], ["--evaluate", str(model_file)], capsys)
    assert message.startswith(f"argument --evaluate: {model_file} is a model file with the "
                              "field alone")
    assert "lynx_hare_best.npz" in message
    assert not re.search(r"pyode\.(nn\.load|load_checkpoint)\(", message)


@pytest.mark.parametrize("name", SCRIPTS)
def test_without_matplotlib_the_scripts_refuse_at_startup(examples, name, tmp_path, capsys,
                                                          monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)       # import matplotlib now fails
    out = tmp_path / "out"
    message = _usage_error(examples[name], ["--out", str(out)], capsys)
    assert "pip install 'pyode[plot]'" in message
    assert not out.exists()                                    # refused before any work


def test_examples_readme_installs_extras_that_exist():
    """examples/README.md installs the figures and the bar (extras plot and progress), and the
    scikit-learn ones with the extra examples; every extra it names exists in setup.cfg."""
    readme = (EXAMPLES / "README.md").read_text(encoding="utf-8")
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg", encoding="utf-8")
    extras = set(cfg["options.extras_require"])
    named = re.findall(r"pip install -e '\.\[([a-z,]+)\]'", readme)
    assert "plot,progress" in named and "examples" in named
    assert {extra for group in named for extra in group.split(",")} <= extras
    assert "pip install -e .[" not in readme          # unquoted: zsh globs the brackets
