"""organoid-sim: load MEA/organoid spike recordings, describe them, fit spiking network models and
run virtual stimulation experiments on the fitted models.

Times are seconds unless a name says otherwise (``bin_ms``); positions are micrometres.

Heavy parts (readers, statistics, models) are imported on first use, so ``import organoid_sim``
stays fast: ``organoid_sim.load``, ``organoid_sim.save``, ``organoid_sim.load_model``,
``organoid_sim.evaluate`` and the sub-packages ``stats``, ``plot``, ``models``, ``stimulation``,
``synthetic`` all work straight after ``import organoid_sim``.
"""

from importlib import import_module

from .events import StimEvents
from .recording import Electrodes, SpikeRecording

__version__ = "0.1.0"

# public name -> (module, attribute or None for the module itself)
_LAZY = {
    "load": ("organoid_sim.io", "load"),
    "save": ("organoid_sim.io", "save"),
    "list_wells": ("organoid_sim.io", "list_wells"),
    "load_model": ("organoid_sim.models", "load_model"),
    "evaluate": ("organoid_sim.evaluation", "evaluate"),
    "io": ("organoid_sim.io", None),
    "stats": ("organoid_sim.stats", None),
    "plot": ("organoid_sim.plot", None),
    "models": ("organoid_sim.models", None),
    "stimulation": ("organoid_sim.stimulation", None),
    "synthetic": ("organoid_sim.synthetic", None),
}

__all__ = ["SpikeRecording", "StimEvents", "Electrodes", "__version__", *_LAZY]


def __getattr__(name: str):
    try:
        module, attr = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'organoid_sim' has no attribute {name!r}") from None
    mod = import_module(module)
    return mod if attr is None else getattr(mod, attr)
