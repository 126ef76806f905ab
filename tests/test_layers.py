"""The package's layers: ``kernels/`` is the bottom one and imports nothing of ``pyode``.

The kernels are compiled arithmetic; validation, dispatch and exceptions live above them in
``pyode`` (``pyode.backends`` holds the wrappers). An import of ``pyode`` from a kernel module
would reintroduce the cycle the layering removes, so the source is checked here.
"""
import ast
import pathlib

import pytest

KERNELS = pathlib.Path(__file__).resolve().parents[1] / "kernels"
ALLOWED = {"math", "os", "numpy", "numba"}


def _imports(path):
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:                                   # relative: inside kernels/
                continue
            yield node.module, node.lineno


@pytest.mark.parametrize("path", sorted(KERNELS.glob("*.py")), ids=lambda p: p.name)
def test_kernel_modules_import_only_numpy_numba_and_each_other(path):
    bad = [(name, line) for name, line in _imports(path)
           if name.split(".")[0] not in ALLOWED]
    assert not bad, f"{path.name} imports {bad}: kernels/ must not depend on pyode"


def test_the_check_sees_an_import_of_pyode(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text("import numpy as np\nfrom pyode.errors import SolverError\n")
    assert [name for name, _ in _imports(probe)] == ["numpy", "pyode.errors"]
