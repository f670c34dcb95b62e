"""Public functions of the model layers, the core helpers and the spike-train statistics document their
parameters and results in numpydoc sections."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest

import organoid_sim

PACKAGES = ("organoid_sim.nn", "organoid_sim.engine", "organoid_sim.fit", "organoid_sim.models")
MODULES = ("organoid_sim.evaluation", "organoid_sim.atomic", "organoid_sim.jsonable", "organoid_sim.model_files", "organoid_sim.stats.single_unit",
           "organoid_sim.stats.pairwise", "organoid_sim.stats.bursts", "organoid_sim.stats.avalanches")


def _modules():
    names = list(MODULES)
    for pkg in PACKAGES:
        mod = importlib.import_module(pkg)
        names += [m.name for m in pkgutil.walk_packages(mod.__path__, pkg + ".")]
    return names


def _public_functions():
    for name in _modules():
        mod = importlib.import_module(name)
        for attr in getattr(mod, "__all__", ()):
            obj = getattr(mod, attr, None)
            if inspect.isfunction(obj) and obj.__module__ == name and inspect.signature(obj).parameters:
                yield f"{name}.{attr}", obj
    for meth in ("get_params", "set_params", "score", "log_likelihood", "binned", "set_provenance"):
        yield f"ModelBase.{meth}", getattr(organoid_sim.models.base.ModelBase, meth)


@pytest.mark.parametrize("name, fn", list(_public_functions()), ids=lambda x: x if isinstance(x, str) else "")
def test_numpydoc_sections(name, fn):
    doc = inspect.getdoc(fn) or ""
    assert "Parameters\n----------" in doc, f"{name}: no numpydoc Parameters section"
    assert "Returns\n-------" in doc or "Yields\n------" in doc, f"{name}: no numpydoc Returns section"
