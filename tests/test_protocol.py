"""``pyode.VectorField`` (a ``typing.Protocol``) and the packaging furniture around the types.

The protocol is checked at run time with ``isinstance`` (it is ``runtime_checkable``); no
static type checker is needed to run these tests.
"""
import configparser
import pathlib
import re

import numpy as np

import pyode
from pyode import VectorField, nn

REPO = pathlib.Path(__file__).resolve().parents[1]


def _readme_class(name):
    """The source of class ``name`` as the README's Python example writes it."""
    text = (REPO / "README.md").read_text()
    match = re.search(rf"^class {name}\b.*?(?=^\S)", text, flags=re.S | re.M)
    assert match, f"README.md has no class {name}"
    return match.group(0)


def test_nn_fields_satisfy_the_protocol():
    assert isinstance(nn.MLP([2, 8, 2], activation="tanh", seed=0), VectorField)
    assert isinstance(nn.MLP([2, 8, 2], activation="tanh", time_input=True, seed=0,
                             dtype=np.float32), VectorField)


def test_readme_user_field_satisfies_the_protocol():
    scope = {"np": np}
    exec(compile(_readme_class("LotkaVolterra"), "README.md", "exec"), scope)
    f = scope["LotkaVolterra"]([1.5, 1.0, 1.0, 3.0])
    assert isinstance(f, VectorField)
    assert pyode.odeint(f, np.array([1.0, 1.0]), np.linspace(0.0, 1.0, 3)).shape == (3, 2)


def test_objects_missing_a_member_do_not():
    class NoVjp:
        params = np.zeros(0)

        def __call__(self, t, y):
            return -y

        def jvp(self, t, y, u):
            return -u

    assert not isinstance(NoVjp(), VectorField)
    assert not isinstance(lambda t, y: -y, VectorField)   # a bare function: NumPy path only


def test_protocol_is_exported_and_the_package_is_typed():
    assert pyode.VectorField is pyode.protocol.VectorField
    assert "VectorField" in pyode.__all__
    assert (REPO / "pyode" / "py.typed").is_file()
    cfg = configparser.ConfigParser()
    cfg.read(REPO / "setup.cfg")
    assert "py.typed" in cfg["options.package_data"]["pyode"]


def test_license_metadata_is_an_spdx_expression():
    cfg = configparser.ConfigParser()
    cfg.read(REPO / "setup.cfg")
    meta = cfg["metadata"]
    assert meta["license_expression"] == "MIT"
    assert "LICENSE" in meta["license_files"].split()
    assert "license" not in meta                   # the pre-PEP 639 field
    assert not any(c.strip().startswith("License ::") for c in meta["classifiers"].splitlines())
    text = (REPO / "LICENSE").read_text()
    assert text.startswith("MIT License") and "2026 the pyode developers" in text
    build = re.search(r'"setuptools>=(\d+)', (REPO / "pyproject.toml").read_text())
    assert int(build.group(1)) >= 77               # setuptools learnt license_expression in 77
