"""The one-way layer architecture: the import-linter contracts of pyproject.toml hold for the
package, and they fail on a copy of the package with one back-arrow or one import cycle injected
(so a new back-arrow fails CI); the simulation engine never reaches torch."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import grimp
import pytest

ROOT = Path(__file__).resolve().parents[1]
LINT = Path(sys.executable).with_name("lint-imports")


def _lint(root: Path) -> subprocess.CompletedProcess:
    """``lint-imports`` on the package under ``root`` with ``root/pyproject.toml``'s contracts."""
    if not LINT.exists():
        pytest.skip(f"lint-imports not installed next to {sys.executable}")
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run([str(LINT), "--no-cache", "--no-logo"], cwd=root, env=env, capture_output=True,
                          text=True, timeout=120)


@pytest.fixture()
def package_copy(tmp_path) -> Path:
    """A throw-away copy of the package and its contracts to inject imports into."""
    shutil.copytree(ROOT / "organoid_sim", tmp_path / "organoid_sim",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def _append(path: Path, text: str) -> None:
    path.write_text(path.read_text(encoding="utf-8") + "\n" + text + "\n", encoding="utf-8")


def test_contracts_hold():
    out = _lint(ROOT)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "0 broken" in out.stdout


def test_the_models_fit_circle_is_gone():
    """fit works on modules and tensors: nothing under fit/ or nn/ imports the estimators."""
    g = grimp.build_graph("organoid_sim", exclude_type_checking_imports=True)
    for low in ("organoid_sim.fit", "organoid_sim.nn"):
        assert not g.chain_exists(importer=low, imported="organoid_sim.models", as_packages=True), low
    assert not g.chain_exists(importer="organoid_sim.neo_bridge", imported="organoid_sim.recording")
    assert not g.chain_exists(importer="organoid_sim.si_bridge", imported="organoid_sim.recording")


@pytest.mark.parametrize("target, line, contract", [
    # a function-level back-arrow from the torch modules to the estimators
    ("nn/neurons.py", "def _back():\n    from ..models import base  # noqa: F401", "Layers"),
    # the readers reaching for the models
    ("io/csvfile.py", "from ..models import base  # noqa: F401", "Readers and writers"),
    # the core reaching up to the readers
    ("events.py", "def _back():\n    from . import io  # noqa: F401", "The core"),
    # a cycle inside one layer: models.base importing its own subclass
    ("models/base.py", "def _registry_by_import():\n    from . import network  # noqa: F401", "No import cycle"),
])
def test_an_injected_back_arrow_breaks_a_contract(package_copy, target, line, contract):
    _append(package_copy / "organoid_sim" / target, line)
    out = _lint(package_copy)
    assert out.returncode != 0
    broken = [ln for ln in out.stdout.splitlines() if ln.startswith(contract)]
    assert broken, out.stdout
    # the contract names wrap over two lines in the report; its verdict is on the last of them
    report = out.stdout[out.stdout.index(broken[0]):]
    assert "BROKEN" in report.split("KEPT")[0], out.stdout


def test_an_engine_that_reaches_torch_breaks_the_contract(package_copy):
    engine = package_copy / "organoid_sim" / "engine"
    engine.mkdir(exist_ok=True)
    (engine / "__init__.py").touch()
    (engine / "leak.py").write_text("from ..tensor import bin_index  # noqa: F401\n", encoding="utf-8")
    out = _lint(package_copy)
    assert out.returncode != 0
    assert "torch" in out.stdout and "organoid_sim.engine.leak" in out.stdout, out.stdout


def test_engine_package_never_reaches_torch():
    """The engine's own ``__init__`` (which the contract's wildcard does not match) either."""
    if not (ROOT / "organoid_sim" / "engine" / "__init__.py").exists():
        pytest.skip("organoid_sim.engine does not exist yet")
    g = grimp.build_graph("organoid_sim", include_external_packages=True, exclude_type_checking_imports=True)
    assert not g.chain_exists(importer="organoid_sim.engine", imported="torch", as_packages=True)
