"""A compiled, torch-free simulation engine for fitted spiking networks.

``load_network(model_dir)`` reads a saved :class:`~organoid_sim.models.SpikingNetworkModel`
(``weights.safetensors`` + ``model.json``) into a :class:`NetworkSpec` of NumPy arrays (outgoing
synapses as CSR per synapse type); :class:`Simulator` runs it forward tick by tick with state
carried over, ``batch`` trajectories side by side, in a numba-compiled loop (float32 state,
event-driven synapses, escape noise with the torch step's distribution). Only NumPy, numba and
safetensors are needed: the engine imports no torch, so a saved model runs on a rig's control PC
or inside another tool's Python.

>>> from organoid_sim.engine import Simulator, load_network
>>> sim = Simulator(load_network("model_dir"), seed=0)        # doctest: +SKIP
>>> events = sim.run(1000)       # (step, trajectory, neuron, count) rows  # doctest: +SKIP
"""

from .simulator import Simulator, input_rows
from .spec import NetworkSpec, load_network, spec_from_arrays

__all__ = ["NetworkSpec", "Simulator", "load_network", "spec_from_arrays", "input_rows"]
