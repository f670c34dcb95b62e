"""Virtual stimulation experiments: pulse designs, protocols, device limits, builders, batched trials,
coupling calibration and a closed-loop virtual MEA.

Amplitudes are uA (current mode) or mV (voltage mode), phase durations us, times s, rates Hz.
``calibrate`` and ``VirtualMEA`` are imported on first use, so this package imports without torch
models being built.
"""

import sys
import types
from importlib import import_module

from .builders import amplitude_sweep, frequency_sweep, paired_pulse, poisson_stimulation, probe_electrodes
from .devices import (CL1, GENERIC, GENERIC_VOLTAGE, MAXONE, DeviceLimitError, DeviceProfile, default_profile,
                      get_profile)
from .protocol import Protocol, PulseTrain, as_events, merge
from .pulses import PulseDesign

# public name -> module that defines it (imported lazily: these pull in torch or the models)
_LAZY = {
    "calibrate": "organoid_sim.stimulation.calibrate",
    "run_trials": "organoid_sim.stimulation.trials",
    "concat_trials": "organoid_sim.stimulation.trials",
    "trial_seeds": "organoid_sim.stimulation.trials",
    "VirtualMEA": "organoid_sim.stimulation.virtual_mea",
    "ChannelSet": "organoid_sim.stimulation.virtual_mea",
    "StimDesign": "organoid_sim.stimulation.virtual_mea",
    "BurstDesign": "organoid_sim.stimulation.virtual_mea",
}

__all__ = ["PulseDesign", "PulseTrain", "Protocol", "as_events", "merge", "DeviceProfile",
           "DeviceLimitError", "CL1", "MAXONE", "GENERIC", "GENERIC_VOLTAGE", "get_profile", "default_profile",
           "probe_electrodes", "amplitude_sweep", "frequency_sweep", "paired_pulse", "poisson_stimulation",
           *_LAZY]


def __getattr__(name: str):
    try:
        module = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'organoid_sim.stimulation' has no attribute {name!r}") from None
    try:
        mod = import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name == module:
            raise ImportError(f"organoid_sim.stimulation.{name} is not available: {module} is not "
                              "installed in this version of organoid-sim") from exc
        raise
    return getattr(mod, name)


class _StimulationPackage(types.ModuleType):
    """``calibrate`` is both a submodule and the function it defines. Importing a submodule makes the
    import system set the package attribute to the module, which would shadow the function; this
    property keeps ``organoid_sim.stimulation.calibrate`` the function whatever was imported first."""

    @property
    def calibrate(self):
        return __getattr__("calibrate")

    @calibrate.setter
    def calibrate(self, value) -> None:  # the submodule stays reachable in sys.modules
        pass


sys.modules[__name__].__class__ = _StimulationPackage
