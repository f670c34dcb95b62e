"""Spiking models of MEA recordings, all with ``fit`` / ``score`` / ``simulate`` / ``save``.

* :class:`PoissonModel`: homogeneous Poisson per unit (the baseline);
* :class:`CoupledGLM`: coupled point-process GLM (Pillow et al. 2008) on a raised-cosine basis;
* :class:`SpikingNetworkModel`: recurrent stochastic LIF network (``torch.nn.Module``).

:func:`load_model` reloads any of them from a directory written by ``model.save(dir)``.
"""

from __future__ import annotations

from ..nn.observation import BernoulliObservation, PoissonObservation
from ..nn.surrogate import ATan, FastSigmoid, StraightThrough, Triangle
from .base import ModelFileError, load_model
from .glm import CoupledGLM
from .network import SpikingNetworkModel
from .poisson import PoissonModel

__all__ = ["PoissonModel", "CoupledGLM", "SpikingNetworkModel", "load_model", "ModelFileError", "PoissonObservation",
           "BernoulliObservation", "FastSigmoid", "ATan", "Triangle", "StraightThrough"]
