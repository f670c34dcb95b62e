"""Torch building blocks of the models, with no knowledge of estimators or recordings files.

* :mod:`.neurons`: the LIF network's state and one-step dynamics (:func:`~.neurons.lif_step`);
* :mod:`.free_run`: many steps without input, differentiable through a hand-written adjoint
  (:func:`~.free_run.free_run`, free-running refinement's workhorse);
* :mod:`.surrogate`: surrogate gradients of the spike nonlinearity;
* :mod:`.observation`: observation models (Poisson, Bernoulli) and bits/spike;
* :mod:`.filters`: the exponential filters of the teacher-forced design;
* :mod:`.stim_coupling`: how electrode pulses reach the neurons (:class:`~.stim_coupling.StimulusCoupling`);
* :mod:`.serialization`: safetensors files of named tensors.

Layer: imports only the core (``recording``, ``events``, ``tensor``, ``atomic``); ``fit`` and
``models`` build on it.
"""

from .free_run import free_run
from .neurons import NetworkState, StepParams, lif_step, saturate
from .observation import BernoulliObservation, PoissonObservation, bits_per_spike, get_observation
from .serialization import load_tensors, save_tensors
from .stim_coupling import StimulusCoupling
from .surrogate import ATan, FastSigmoid, StraightThrough, Triangle, get_surrogate

__all__ = ["NetworkState", "StepParams", "lif_step", "free_run", "saturate", "PoissonObservation",
           "BernoulliObservation", "bits_per_spike", "get_observation", "load_tensors", "save_tensors",
           "StimulusCoupling", "ATan", "FastSigmoid", "StraightThrough", "Triangle", "get_surrogate"]
