"""NUMBA_DISABLE_JIT=1 must still run everything: the kernels then run as plain Python.

The flag is read when numba is imported, so the check runs in a fresh interpreter.
"""
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SCRIPT = textwrap.dedent("""
    import json, numpy as np
    from pyode import nn, odeint, odeint_adjoint
    f = nn.MLP([2, 6, 2], activation="tanh", time_input=True, seed=4)
    y0 = np.array([[0.3, -0.2], [1.0, 0.5]])
    t = np.array([0.0, 0.2, 0.5])
    out = {}
    for backend in ("numba", "numpy"):
        ys, vjp = odeint_adjoint(f, y0, t, backend=backend, rtol=1e-8, atol=1e-10)
        g = vjp(np.ones_like(ys))
        out[backend] = [ys.tolist(), g.params.tolist(), g.t.tolist()]
    import numba
    out["jit_disabled"] = bool(numba.config.DISABLE_JIT)
    print(json.dumps(out))
""")


@pytest.mark.parametrize("where", ["elsewhere", "repository root"])
def test_everything_runs_with_jit_disabled(where, tmp_path):
    # From the repository root, ``import pyode`` finds the source folder before the installed
    # package; pyode.kernels must still be found (pyode/__init__.py attaches kernels/).
    cwd = ROOT if where == "repository root" else str(tmp_path)
    env = dict(os.environ, NUMBA_DISABLE_JIT="1")
    res = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True,
                         text=True, timeout=300, cwd=cwd)
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert out["jit_disabled"]
    for k in range(3):   # the kernels as plain Python against the NumPy path
        np.testing.assert_allclose(out["numba"][k], out["numpy"][k], rtol=1e-10, atol=1e-12)
