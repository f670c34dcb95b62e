"""Spiking models of MEA recordings, all with ``fit`` / ``score`` / ``simulate`` / ``save``.

* :class:`PoissonModel`: homogeneous Poisson per unit (the baseline);
* :class:`CoupledGLM`: coupled point-process GLM (Pillow et al. 2008) on a raised-cosine basis;
* :class:`SpikingNetworkModel`: recurrent stochastic LIF network (``torch.nn.Module``).

:func:`load_model` reloads any of them from a directory written by ``model.save(dir)``.
"""

from __future__ import annotations

from importlib import import_module

from .base import ModelFileError, load_model
from .network import SpikingNetworkModel
from .observation import BernoulliObservation, PoissonObservation
from .surrogate import ATan, FastSigmoid, StraightThrough, Triangle

__all__ = ["PoissonModel", "CoupledGLM", "SpikingNetworkModel", "load_model", "ModelFileError", "PoissonObservation",
           "BernoulliObservation", "FastSigmoid", "ATan", "Triangle", "StraightThrough"]

_LAZY = {"PoissonModel": ".poisson", "CoupledGLM": ".glm"}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module 'organoid_sim.models' has no attribute {name!r}")
