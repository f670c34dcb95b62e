"""Device profiles: the hardware limits of real stimulation rigs, checked before a protocol runs.

``DeviceProfile.validate(protocol)`` walks every pulse and raises :class:`DeviceLimitError` at the
first one that the rig could not deliver, naming the pulse (train, index within the train, time,
electrode) and the limit. Profiles:

* ``CL1``: a Cortical Labs CL1-like 64-channel 8x8 array (200 um pitch), current mode: phases are
  positive multiples of 20 us, ``|I| <= 3 uA``, ``<= 3 nC`` per phase, at most 200 Hz per electrode,
  phases alternate in polarity and the pulse is charge balanced.
* ``MAXONE``: a MaxWell MaxOne-like HD-MEA (26,400 electrodes, 220 x 120 at 17.5 um), voltage mode:
  amplitudes are whole steps of the 2.9 mV stimulation DAC, ``|V| <= 1.48 V`` (+-512 steps), phases are
  multiples of the 50 us sample period (20 kHz), at most 32 electrodes at once (stimulation units),
  alternating polarity, at most 1 kHz per electrode.
* ``GENERIC`` / ``GENERIC_VOLTAGE``: any electrode id, pulses on one electrode may not overlap, and
  the physical limits of a generic MEA stimulator on 10-30 um electrodes (the upper ends of what
  commercial MEA stimulators deliver safely there, not one rig's datasheet): ``|I| <= 100 uA``,
  ``<= 100 nC`` per phase, ``|V| <= 3000 mV``, phases of at most 10 ms. A protocol that names no
  device is checked against these by default (:func:`default_profile`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..recording import Electrodes
from .protocol import Protocol

_TOL = 1e-9


class DeviceLimitError(ValueError):
    """A pulse the device cannot deliver; ``limit`` names the rule, ``pulse`` locates the pulse."""

    def __init__(self, device: str, limit: str, where: str, detail: str) -> None:
        self.device, self.limit, self.where = device, limit, where
        super().__init__(f"{device}: {where} breaks the {limit!r} limit: {detail}")


@dataclass(frozen=True)
class DeviceProfile:
    """Limits of one stimulation rig (``None`` = not limited). Amplitudes in uA (current mode) or mV
    (voltage mode); times in us; rates in Hz; charge in nC; grid pitch in um."""

    name: str
    unit: str                                # "uA" (current mode) or "mV" (voltage mode)
    n_rows: int | None = None                # electrode grid; ids are row-major 0..rows*cols-1
    n_cols: int | None = None
    pitch_um: float = 200.0
    phase_step_us: float | None = None       # phase durations must be whole multiples of this
    max_amplitude: float | None = None       # |amplitude| per phase, in `unit`
    dac_step: float | None = None            # amplitudes must be whole DAC steps, in `unit`
    max_charge_nC: float | None = None       # |charge| per phase
    max_frequency_hz: float | None = None    # pulses per second on one electrode
    alternating_polarity: bool = False
    charge_balanced: bool = False
    max_simultaneous: int | None = None      # electrodes pulsing at the same instant
    max_phase_us: float | None = None        # longest phase

    @property
    def n_electrodes(self) -> int | None:
        """Number of electrodes on the array (None: any id accepted)."""
        return None if self.n_rows is None else self.n_rows * self.n_cols

    def electrodes(self) -> Electrodes:
        """The array layout: ids row-major, positions in um (grid with ``pitch_um``)."""
        if self.n_rows is None:
            raise ValueError(f"{self.name}: the generic profile has no fixed electrode layout")
        ids = np.arange(self.n_rows * self.n_cols)
        return Electrodes(ids, (ids % self.n_cols) * self.pitch_um, (ids // self.n_cols) * self.pitch_um)

    # validation -----------------------------------------------------------------------------
    def validate(self, protocol: Protocol) -> Protocol:
        """Return ``protocol`` unchanged if every pulse is deliverable, else raise DeviceLimitError."""
        pulses = list(protocol.iter_pulses())
        checked_trains: set[int] = set()
        for ti, pi, t, e, design in pulses:
            where = f"pulse {pi} of train {ti} (t={t:.6f} s, electrode {e})"
            self._check_electrode(e, where)
            if ti not in checked_trains:
                self._check_design(design, where)
                checked_trains.add(ti)
        self._check_timing(pulses)
        return protocol

    def assign(self, protocol: Protocol) -> Protocol:
        """``protocol`` written for this device: validated (:class:`DeviceLimitError` if it does not
        fit) and returned as a copy whose ``device`` field names this profile, so a file saved
        from it says where it may run.

        Parameters
        ----------
        protocol : Protocol
            The protocol to check.

        Returns
        -------
        Protocol
            A copy with ``device`` set to this profile's lower-case name.
        """
        self.validate(protocol)
        return Protocol(protocol.trains, protocol.duration_s, protocol.name, self.name.lower(),
                        dict(protocol.metadata))

    def _fail(self, limit: str, where: str, detail: str) -> None:
        raise DeviceLimitError(self.name, limit, where, detail)

    def _check_electrode(self, e: int, where: str) -> None:
        n = self.n_electrodes
        if e < 0 or (n is not None and e >= n):
            self._fail("electrode id", where, f"electrode {e} is not on the array (ids 0..{(n or 0) - 1})"
                       if n is not None else f"electrode id {e} is negative")

    def _check_design(self, d, where: str) -> None:
        if d.unit != self.unit:
            mode = "current (uA)" if self.unit == "uA" else "voltage (mV)"
            self._fail("stimulation mode", where, f"pulse amplitudes are in {d.unit}, the device stimulates "
                       f"in {mode} mode")
        if self.phase_step_us:
            for k, p in enumerate(d.phase_us):
                steps = p / self.phase_step_us
                if abs(steps - round(steps)) > 1e-6 or round(steps) < 1:
                    self._fail("phase duration step", where, f"phase {k} lasts {p:g} us, not a positive "
                               f"multiple of {self.phase_step_us:g} us")
        if self.max_phase_us is not None:
            for k, p in enumerate(d.phase_us):
                if p > self.max_phase_us * (1 + _TOL):
                    self._fail("maximum phase duration", where, f"phase {k} lasts {p:g} us > "
                               f"{self.max_phase_us:g} us")
        if self.max_amplitude is not None:
            for k, a in enumerate(d.amplitudes):
                if abs(a) > self.max_amplitude * (1 + _TOL):
                    self._fail("maximum amplitude", where, f"phase {k} has |{a:g}| {d.unit} > "
                               f"{self.max_amplitude:g} {d.unit}")
        if self.dac_step:
            for k, a in enumerate(d.amplitudes):
                steps = a / self.dac_step
                if abs(steps - round(steps)) > 1e-6:
                    self._fail("DAC step", where, f"phase {k} amplitude {a:g} {d.unit} is not a whole number "
                               f"of {self.dac_step:g} {d.unit} DAC steps ({steps:.3f})")
        if self.max_charge_nC is not None:
            q = d.phase_charges_nC()
            k = int(np.argmax(np.abs(q)))
            if abs(q[k]) > self.max_charge_nC * (1 + _TOL):
                self._fail("maximum charge per phase", where, f"phase {k} carries {abs(q[k]):.4g} nC > "
                           f"{self.max_charge_nC:g} nC")
        if self.alternating_polarity:
            s = np.sign(d.amplitudes)
            bad = np.flatnonzero((s[1:] * s[:-1]) >= 0)
            if len(bad):
                self._fail("alternating polarity", where, f"phases {bad[0]} and {bad[0] + 1} have amplitudes "
                           f"{d.amplitudes[bad[0]]:g} and {d.amplitudes[bad[0] + 1]:g}: polarity must alternate")
        if self.charge_balanced:
            net = float(np.sum(d.phase_charges_nC()))
            if abs(net) > 1e-6 * max(1.0, float(np.abs(d.phase_charges_nC()).sum())):
                self._fail("charge balance", where, f"net charge {net:.4g} nC, must be 0")

    def _check_timing(self, pulses) -> None:
        if not pulses:
            return
        ti, pi, t, e, designs = zip(*pulses)
        t, e = np.asarray(t), np.asarray(e)
        dur = np.array([d.duration_s for d in designs])
        order = np.lexsort((t, e))
        same = e[order][1:] == e[order][:-1]
        gap = np.diff(t[order])
        min_gap = np.maximum(dur[order][:-1], 0.0)
        if self.max_frequency_hz:
            min_gap = np.maximum(min_gap, 1.0 / self.max_frequency_hz)
        bad = np.flatnonzero(same & (gap < min_gap - _TOL))
        if len(bad):
            j = order[bad[0] + 1]
            where = f"pulse {pi[j]} of train {ti[j]} (t={t[j]:.6f} s, electrode {e[j]})"
            rate = 1.0 / gap[bad[0]] if gap[bad[0]] > 0 else float("inf")
            if gap[bad[0]] < dur[order][bad[0]] - _TOL:
                self._fail("pulse overlap", where, f"starts {gap[bad[0]] * 1e6:.1f} us after the previous "
                           f"pulse on the same electrode, which lasts {dur[order][bad[0]] * 1e6:.1f} us")
            self._fail("maximum frequency", where, f"follows the previous pulse on electrode {e[j]} after "
                       f"{gap[bad[0]] * 1e3:.3f} ms ({rate:.1f} Hz > {self.max_frequency_hz:g} Hz)")
        if self.max_simultaneous:
            self._check_simultaneous(t, dur, ti, pi, e)

    def _check_simultaneous(self, t, dur, ti, pi, e) -> None:
        # sweep over pulse starts/ends: count electrodes active at once
        starts = np.argsort(t, kind="stable")
        ends = np.sort(t + dur)
        active_at_start = np.arange(1, len(t) + 1) - np.searchsorted(ends, t[starts], side="right")
        bad = np.flatnonzero(active_at_start > self.max_simultaneous)
        if len(bad):
            j = starts[bad[0]]
            where = f"pulse {pi[j]} of train {ti[j]} (t={t[j]:.6f} s, electrode {e[j]})"
            self._fail("simultaneous electrodes", where, f"{active_at_start[bad[0]]} electrodes pulse at once "
                       f"> {self.max_simultaneous} stimulation units")


CL1 = DeviceProfile("CL1", "uA", n_rows=8, n_cols=8, pitch_um=200.0, phase_step_us=20.0, max_amplitude=3.0,
                    max_charge_nC=3.0, max_frequency_hz=200.0, alternating_polarity=True, charge_balanced=True)
MAXONE = DeviceProfile("MaxOne", "mV", n_rows=120, n_cols=220, pitch_um=17.5, phase_step_us=50.0,
                       max_amplitude=512 * 2.9, dac_step=2.9, max_frequency_hz=1000.0,
                       alternating_polarity=True, max_simultaneous=32)
GENERIC = DeviceProfile("generic", "uA", max_amplitude=100.0, max_charge_nC=100.0, max_phase_us=10_000.0)
GENERIC_VOLTAGE = DeviceProfile("generic-voltage", "mV", max_amplitude=3000.0, max_phase_us=10_000.0)

PROFILES = {p.name.lower(): p for p in (CL1, MAXONE, GENERIC, GENERIC_VOLTAGE)}


def get_profile(name: str) -> DeviceProfile:
    """Profile by name (case-insensitive): ``cl1``, ``maxone``, ``generic``, ``generic-voltage``."""
    try:
        return PROFILES[name.lower()]
    except KeyError:
        raise ValueError(f"unknown device profile {name!r}; known: {sorted(PROFILES)}") from None


def default_profile(protocol: Protocol) -> DeviceProfile:
    """The profile a protocol is checked against when none is chosen: the one its ``device`` field
    names, else the generic profile of its amplitude unit (``GENERIC`` for uA, ``GENERIC_VOLTAGE``
    for mV), whose physical limits stop e.g. a 1000 uA pulse of 200 ms phases.

    Parameters
    ----------
    protocol : Protocol
        The protocol to run.

    Returns
    -------
    DeviceProfile
        The profile to validate it with.
    """
    if protocol.device:
        return get_profile(protocol.device)
    return GENERIC_VOLTAGE if protocol.unit == "mV" else GENERIC
