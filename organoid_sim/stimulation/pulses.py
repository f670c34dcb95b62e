"""Pulse shapes: one stimulation pulse as a sequence of rectangular phases.

A :class:`PulseDesign` lists each phase's duration (microseconds) and amplitude (microamperes for
current-mode rigs, millivolts for voltage-mode rigs). Real rigs deliver charge-balanced pulses whose
phases alternate in polarity (cathodic-first biphasic is the usual default): the helpers
:meth:`PulseDesign.biphasic` and :meth:`PulseDesign.triphasic` build those. Whether a design is
allowed on a given rig is decided by a :class:`~organoid_sim.stimulation.devices.DeviceProfile`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

AMPLITUDE_UNITS = ("uA", "mV")


def _numbers(values, key: str, what: str) -> tuple[float, ...]:
    """``values`` as a tuple of floats; a clear error naming ``key`` when one is not a number."""
    try:
        flat = np.atleast_1d(np.asarray(values, dtype=object)).ravel().tolist()
        # text and booleans are no durations or amplitudes, even where float() would take them
        if any(isinstance(v, (str, bytes, bool)) for v in flat):
            raise TypeError
        return tuple(float(v) for v in flat)
    except (TypeError, ValueError):
        raise ValueError(f"pulse design: {key} must be numbers ({what}), got {values!r}") from None


@dataclass(frozen=True)
class PulseDesign:
    """One pulse: ``phase_us[i]`` microseconds at ``amplitudes[i]`` (``unit``: ``"uA"`` or ``"mV"``).

    The sign of an amplitude is the polarity of that phase (negative = cathodic).
    """

    phase_us: tuple[float, ...]
    amplitudes: tuple[float, ...]
    unit: str = "uA"

    def __post_init__(self) -> None:
        ph = _numbers(self.phase_us, "phase_us", "phase durations in us")
        am = _numbers(self.amplitudes, "amplitudes", f"amplitudes in {self.unit}")
        if len(ph) != len(am) or not ph:
            raise ValueError(f"pulse design: {len(ph)} phase durations but {len(am)} amplitudes "
                             "(need one amplitude per phase, at least one phase)")
        if not all(np.isfinite(ph)) or min(ph) <= 0:
            raise ValueError(f"pulse design: phase durations must be finite and > 0 us, got {ph}")
        if not all(np.isfinite(am)):
            raise ValueError(f"pulse design: amplitudes must be finite, got {am}")
        if self.unit not in AMPLITUDE_UNITS:
            raise ValueError(f"pulse design: unit must be one of {AMPLITUDE_UNITS}, got {self.unit!r}")
        object.__setattr__(self, "phase_us", ph)
        object.__setattr__(self, "amplitudes", am)

    @classmethod
    def biphasic(cls, amplitude: float, phase_us: float = 200.0, *, cathodic_first: bool = True,
                 unit: str = "uA") -> "PulseDesign":
        """Symmetric charge-balanced biphasic pulse: ``|amplitude|`` for ``phase_us`` us, then reversed."""
        a = -abs(amplitude) if cathodic_first else abs(amplitude)
        return cls((phase_us, phase_us), (a, -a), unit)

    @classmethod
    def triphasic(cls, amplitude: float, phase_us: float = 200.0, *, cathodic_first: bool = True,
                  unit: str = "uA") -> "PulseDesign":
        """Charge-balanced triphasic pulse: half amplitude, full reversed, half again (``phase_us`` each)."""
        a = -abs(amplitude) if cathodic_first else abs(amplitude)
        return cls((phase_us,) * 3, (a / 2, -a, a / 2), unit)

    @property
    def n_phases(self) -> int:
        """Number of phases."""
        return len(self.phase_us)

    @property
    def duration_s(self) -> float:
        """Total pulse duration in seconds."""
        return sum(self.phase_us) * 1e-6

    @property
    def peak_amplitude(self) -> float:
        """Largest ``|amplitude|`` over the phases (``unit``)."""
        return max(abs(a) for a in self.amplitudes)

    def phase_charges_nC(self) -> np.ndarray:
        """Signed charge of each phase in nC (``amplitude uA * phase us * 1e-3``); current mode only."""
        if self.unit != "uA":
            raise ValueError("pulse design: charge is defined for current-mode pulses (uA) only")
        return np.asarray(self.amplitudes) * np.asarray(self.phase_us) * 1e-3

    def event_fields(self) -> tuple[float, float, int]:
        """``(amplitude, phase_us, n_phases)`` as stored in a StimEvents row.

        StimEvents keep the first phase's amplitude and the longest phase duration, so the
        recorded charge per phase (|amplitude| * phase_us) is an upper bound of the true one.
        """
        return self.amplitudes[0], max(self.phase_us), self.n_phases

    def to_dict(self) -> dict:
        """Plain dict (YAML/JSON)."""
        return {"phase_us": list(self.phase_us), "amplitudes": list(self.amplitudes), "unit": self.unit}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "PulseDesign":
        """Inverse of :meth:`to_dict`; a missing key raises ``ValueError`` naming it."""
        for key in ("phase_us", "amplitudes"):
            if key not in d:
                raise ValueError(f"pulse design: missing key {key!r} (have {sorted(d)})")
        return cls(tuple(d["phase_us"]), tuple(d["amplitudes"]), d.get("unit", "uA"))
