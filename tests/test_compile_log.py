"""The compile log of the Numba batch kernels and ``python -m pyode.precompile``.

The log's logic is tested on a tiny ``@njit(cache=True)`` function written to a temporary file
(a cold compile of it takes a fraction of a second); a second import of the same file stands
for a later process, which finds it in Numba's disk cache. The real kernels are exercised
through ``odeint`` and the precompile command, which only load them when the cache is warm.
"""
import importlib.util
import logging
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from pyode import nn, odeint
from pyode.backends import numba_cpu as rk
from pyode.precompile import KERNELS, main, summary

REPO = pathlib.Path(__file__).resolve().parents[1]

TINY_KERNEL = '''
from numba import njit


@njit(cache=True)
def doubled(x, out):
    for i in range(x.shape[0]):
        out[i] = 2 * x[i]
'''


@pytest.fixture
def fresh_first_calls(monkeypatch):
    """An empty FIRST_CALLS: every kernel's next call counts as its first in the process."""
    calls = {}
    monkeypatch.setattr(rk, "FIRST_CALLS", calls)
    return calls


def _import_tiny(path):
    """A fresh module object (and dispatcher) from the file: as a new process would see it."""
    spec = importlib.util.spec_from_file_location("pyode_test_tiny_kernel", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _pyode_records(caplog, level=logging.INFO):
    return [r for r in caplog.records if r.name == "pyode" and r.levelno >= level]


def test_cold_compile_logs_once_and_disk_cache_hit_is_quiet(tmp_path, fresh_first_calls,
                                                            caplog):
    path = tmp_path / "tiny_kernel.py"
    path.write_text(TINY_KERNEL)
    caplog.set_level(logging.DEBUG, logger="pyode")
    x = np.arange(3.0)
    out = np.empty_like(x)

    first = _import_tiny(path).doubled
    rk.call_with_compile_log(first, x.dtype, x, out)
    np.testing.assert_array_equal(out, 2 * x)
    info = _pyode_records(caplog)
    assert len(info) >= 1
    assert "compiling the Numba kernel doubled for float64" in info[0].getMessage()
    assert fresh_first_calls[first, x.dtype].source == "compile"

    caplog.clear()                                  # later calls: nothing logged at all
    rk.call_with_compile_log(first, x.dtype, x, out)
    assert _pyode_records(caplog, logging.DEBUG) == []

    second = _import_tiny(path).doubled              # a new dispatcher, the same cache
    rk.call_with_compile_log(second, x.dtype, x, out)
    assert fresh_first_calls[second, x.dtype].source == "disk cache"
    assert _pyode_records(caplog) == [], [r.getMessage() for r in caplog.records]
    assert "disk cache" in _pyode_records(caplog, logging.DEBUG)[0].getMessage()

    x32 = x.astype(np.float32)                        # another dtype compiles again
    rk.call_with_compile_log(second, x32.dtype, x32, out.astype(np.float32))
    assert fresh_first_calls[second, x32.dtype].source == "compile"
    assert "for float32" in _pyode_records(caplog)[0].getMessage()


def test_slow_first_call_is_logged_with_its_duration(fresh_first_calls, monkeypatch, caplog):
    monkeypatch.setattr(rk, "SLOW_FIRST_CALL_S", -1.0)      # every first call counts as slow
    caplog.set_level(logging.INFO, logger="pyode")
    f = nn.MLP([2, 4, 2], activation="tanh", seed=0)
    odeint(f, np.array([[1.0, 0.5]]), np.array([0.0, 0.1]), backend="numba")
    messages = [r.getMessage() for r in _pyode_records(caplog)]
    assert any("first call of the Numba kernel forward_batch for float64 took" in m
               for m in messages), messages
    assert len(fresh_first_calls) == 1


def test_first_use_of_a_real_kernel_logs_once_per_dtype(fresh_first_calls, caplog):
    caplog.set_level(logging.DEBUG, logger="pyode")
    f = nn.MLP([2, 4, 2], activation="tanh", seed=0)
    y0, t = np.array([[1.0, 0.5]]), np.array([0.0, 0.1])
    odeint(f, y0, t, backend="numba")
    n_first = len(_pyode_records(caplog, logging.DEBUG))
    assert n_first >= 1
    assert all("forward_batch for float64" in r.getMessage()
               for r in _pyode_records(caplog, logging.DEBUG))
    odeint(f, y0, t, backend="numba")
    assert len(_pyode_records(caplog, logging.DEBUG)) == n_first
    (call,) = fresh_first_calls.values()
    assert (call.kernel, call.dtype) == ("forward_batch", "float64")
    assert call.source in ("compile", "disk cache", "process")


def test_plain_python_function_is_called_without_a_log(fresh_first_calls, caplog):
    caplog.set_level(logging.INFO, logger="pyode")
    assert rk.call_with_compile_log(lambda a, b: a + b, np.dtype(np.float64), 1, 2) == 3
    assert _pyode_records(caplog) == []
    assert [c.source for c in fresh_first_calls.values()] == ["no JIT"]


def test_summary_says_what_compiled_and_how_long():
    calls = [rk.FirstCall("forward_batch", "float64", "compile", 14.2),
             rk.FirstCall("adjoint_batch", "float64", "disk cache", 0.3)]
    line = summary({"kernels": calls, "seconds": 14.6})
    assert "\n" not in line
    assert "forward_batch, adjoint_batch for float64 ready in 14.6 s" in line
    assert line.endswith("; 1 compiled in 14.2 s, 1 loaded from Numba's disk cache")


def test_precompile_rejects_an_unknown_dtype(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--dtype", "float16"])
    assert exc.value.code == 2
    assert "float16" in capsys.readouterr().err


def test_precompile_command_compiles_every_kernel():
    """``python -m pyode.precompile --dtype float64`` from the checkout (loads the kernels when
    the disk cache is warm; compiles them, about a minute, when it is not)."""
    proc = subprocess.run([sys.executable, "-m", "pyode.precompile", "--dtype", "float64",
                           "--no-bar"], cwd=REPO, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr
    (line,) = proc.stdout.splitlines()
    assert line.startswith("pyode.precompile: " + ", ".join(KERNELS) + " for float64 ready in")
    assert "float32" not in line
    assert "precompile: 4/4" in proc.stderr          # the progress, as log lines off a terminal


def test_precompile_with_the_jit_disabled_says_so():
    proc = subprocess.run([sys.executable, "-m", "pyode.precompile", "--no-bar"], cwd=REPO,
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, "NUMBA_DISABLE_JIT": "1"})
    assert proc.returncode == 1
    assert "NUMBA_DISABLE_JIT=1" in proc.stderr and proc.stdout == ""


ROW_MAPS_SCRIPT = """
import logging
import numpy as np
import pyode
logging.basicConfig(level=logging.INFO)
ys = pyode.odeint(lambda t, y: -y, np.ones(2), np.array([0.0, 1.0]))
print(repr(float(ys[-1, 0])))
"""


def test_row_maps_of_python_fields_log_their_cold_compile_once(tmp_path):
    """A Python field's first solve compiles kernels/rows.py: logged when Numba compiles them,
    silent when a later process finds them in the disk cache (so the probe's signature is the
    one the driver really calls)."""
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path), PYTHONPATH=str(REPO))
    env.pop("NUMBA_DISABLE_JIT", None)
    runs = [subprocess.run([sys.executable, "-c", ROW_MAPS_SCRIPT], env=env, cwd=tmp_path,
                           capture_output=True, text=True, timeout=300) for _ in range(2)]
    for proc in runs:
        assert proc.returncode == 0, proc.stderr
        assert float(proc.stdout) == pytest.approx(np.exp(-1.0), rel=1e-6)
    message = "compiling pyode's step formulas for Python fields"
    assert runs[0].stderr.count(message) == 1, runs[0].stderr
    assert message not in runs[1].stderr, runs[1].stderr
