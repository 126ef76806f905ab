"""What a regular (non-editable) install ships: every package, the kernels, the type marker.

The suite runs on an editable install, which imports from the checkout and would not notice a
package missing from the wheel; these tests read the packaging metadata instead, and one builds
the wheel and looks inside.
"""
import configparser
import pathlib
import subprocess
import sys
import zipfile

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _declared_packages():
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    return {line.strip() for line in cfg["options"]["packages"].splitlines() if line.strip()}


def _source_packages():
    """Dotted names of the folders with an __init__.py under pyode/ (and kernels/)."""
    found = {"pyode.kernels"} if (ROOT / "kernels" / "__init__.py").is_file() else set()
    for init in (ROOT / "pyode").rglob("__init__.py"):
        rel = init.parent.relative_to(ROOT)
        found.add(".".join(rel.parts))
    return found


def test_every_package_of_the_source_is_declared():
    missing = _source_packages() - _declared_packages()
    assert not missing, f"setup.cfg [options] packages lacks {sorted(missing)}"


def test_the_check_finds_packages_below_pyode():
    assert {"pyode", "pyode.backends", "pyode.kernels"} <= _source_packages()


def test_built_wheel_holds_every_module(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w",
                    str(tmp_path), str(ROOT)], check=True)
    wheel = next(tmp_path.glob("pyode-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    for path in list((ROOT / "pyode").rglob("*.py")) + list((ROOT / "kernels").glob("*.py")):
        rel = path.relative_to(ROOT)
        inside = ("pyode/kernels/" + rel.name) if rel.parts[0] == "kernels" else str(rel)
        assert inside in names, f"{inside} is not in the wheel"
    assert "pyode/py.typed" in names
