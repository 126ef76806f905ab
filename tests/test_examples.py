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
