"""The example scripts run end to end (a few iterations) and write what they promise."""
import json
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _run(args, tmp_path, timeout=600):
    res = subprocess.run([sys.executable, *args], cwd=tmp_path, capture_output=True, text=True,
                         timeout=timeout, env=None)
    assert res.returncode == 0, res.stderr[-3000:]
    return res


@pytest.mark.parametrize("script, png", [("spiral.py", "spiral.png"),
                                         ("lynx_hare.py", "lynx_hare.png")])
def test_training_example_writes_its_plot(script, png, tmp_path):
    pytest.importorskip("matplotlib")
    out = tmp_path / "out"
    res = _run([str(ROOT / "examples" / script), "--iters", "3", "--seed", "1", "--out",
                str(out)], tmp_path)
    target = out / png
    assert target.is_file() and target.stat().st_size > 10_000
    assert str(target) in res.stdout


def test_benchmark_prints_json(tmp_path):
    res = _run([str(ROOT / "examples" / "benchmarks" / "spiral_step.py"), "--repeats", "3",
                "--warm-iters", "2"], tmp_path)
    report = json.loads(res.stdout)
    text = json.dumps(report)
    assert "step_ms" in text and "forward_ms" in text


# -- the paper's experiments (issue 11) --------------------------------------------------------


def test_odenet_digits_writes_its_tables(tmp_path):
    pytest.importorskip("sklearn")
    pytest.importorskip("matplotlib")
    out = tmp_path / "out"
    res = _run([str(ROOT / "examples" / "odenet_digits.py"), "--epochs", "1", "--subset", "128",
                "--seed", "1", "--out", str(out)], tmp_path)
    report = json.loads((out / "odenet_digits.json").read_text())
    rows = {r["model"]: r for r in report["rows"]}
    assert list(rows) == ["mlp", "resnet", "rknet", "odenet"]
    assert rows["rknet"]["params"] == rows["odenet"]["params"]       # the same architecture
    assert rows["rknet"]["nfe_forward"] == 16.0                      # 4 RK4 steps × 4 stages
    assert rows["mlp"]["nfe_forward"] is None and rows["odenet"]["nfe_forward"] >= 14
    assert all(r["peak_kib"] > 0 and 0 <= r["test_error"] <= 1 for r in rows.values())
    resnet = [s["peak_kib"] for s in report["scaling"] if s["model"] == "resnet"]
    assert resnet == sorted(resnet) and resnet[0] < resnet[-1]      # O(L): grows with depth
    for name in ("odenet_digits.txt", "odenet_digits.png"):
        assert str(out / name) in res.stdout
    assert (out / "odenet_digits.png").stat().st_size > 10_000
    assert "ODE-Net" in (out / "odenet_digits.txt").read_text()


def test_odenet_digits_ctrl_c_writes_the_models_so_far(tmp_path, monkeypatch):
    pytest.importorskip("sklearn")
    pytest.importorskip("matplotlib")
    import importlib.util
    spec = importlib.util.spec_from_file_location("example_odenet_digits",
                                                  ROOT / "examples" / "odenet_digits.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)

    def interrupt(kind, epoch):
        if kind == "resnet":
            raise KeyboardInterrupt

    with pytest.raises(SystemExit) as info:
        module.main(["--epochs", "2", "--subset", "64", "--models", "mlp", "resnet", "odenet",
                     "--out", str(tmp_path)], on_epoch=interrupt)
    assert info.value.code == 130
    table = (tmp_path / "odenet_digits.txt").read_text()
    assert "1-layer MLP" in table and "ResNet (stopped after epoch 1)" in table
    assert "ODE-Net" not in table.split("paper")[1]
    assert (tmp_path / "odenet_digits.png").is_file()


def test_nfe_figures_writes_its_figure(tmp_path):
    pytest.importorskip("sklearn")
    pytest.importorskip("matplotlib")
    out = tmp_path / "out"
    res = _run([str(ROOT / "examples" / "nfe_figures.py"), "--epochs", "2", "--subset", "128",
                "--tolerances", "1e-2", "1e-4", "1e-6", "--out", str(out)], tmp_path)
    report = json.loads((out / "nfe_figures.json").read_text())
    points = report["points"]
    assert [p["tol"] for p in points] == [1e-2, 1e-4, 1e-6]
    nfe = [p["nfe_forward"] for p in points]
    assert nfe == sorted(nfe) and nfe[0] < nfe[-1]         # tighter tolerance, more steps
    assert points[-1]["error"] < points[0]["error"]
    assert len(report["history"]["nfe_forward"]) == 2
    assert "slopes" in res.stdout and str(out / "nfe_figures.png") in res.stdout
    assert (out / "nfe_figures.png").stat().st_size > 10_000


def test_augmented_circles_writes_its_figure(tmp_path):
    pytest.importorskip("matplotlib")
    out = tmp_path / "out"
    res = _run([str(ROOT / "examples" / "augmented_circles.py"), "--epochs", "2",
                "--n-points", "64", "--out", str(out)], tmp_path)
    rows = json.loads((out / "augmented_circles.json").read_text())["rows"]
    assert [r["model"] for r in rows] == ["plain", "augmented"]
    assert all(r["nfe_forward"] > 0 and 0 <= r["test_accuracy"] <= 1 for r in rows)
    assert "augmented" in res.stdout and str(out / "augmented_circles.png") in res.stdout
    assert (out / "augmented_circles.png").stat().st_size > 10_000


def _load_example(name):
    import importlib.util
    spec = importlib.util.spec_from_file_location(f"example_{name}",
                                                  ROOT / "examples" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_augmented_circles_swallowed_ctrl_c_and_failed_figure(tmp_path, monkeypatch, capsys):
    """A Ctrl-C whose KeyboardInterrupt is swallowed (as in a Numba ctypes callback) still
    stops training at the next batch; a figure that then fails is named in the one line, the
    JSON is written and the status is 130."""
    pytest.importorskip("matplotlib")
    import os
    import signal
    import time
    module = _load_example("augmented_circles")

    def swallowed(kind, epoch):
        if epoch == 1:
            try:
                os.kill(os.getpid(), signal.SIGINT)
                time.sleep(5)
            except KeyboardInterrupt:
                pass

    def broken_plot(*args):
        raise AttributeError("module 'numba' has no attribute 'core'")

    monkeypatch.setattr(module, "plot", broken_plot)
    try:
        with pytest.raises(SystemExit) as info:
            module.main(["--epochs", "3", "--n-points", "64", "--out", str(tmp_path)],
                        on_epoch=swallowed)
    except KeyboardInterrupt:
        pytest.fail("KeyboardInterrupt escaped main(): the interrupt was not handled")
    assert info.value.code == 130
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if "interrupted" in line]
    assert len(lines) == 1 and "Traceback" not in err, err
    assert "interrupted (Ctrl-C) during plain" in lines[0]
    assert "could not write the figure" in lines[0] and "AttributeError" in lines[0]
    rows = json.loads((tmp_path / "augmented_circles.json").read_text())["rows"]
    assert [(r["model"], r["epochs"], r["interrupted"]) for r in rows] == [("plain", 1, True)]
