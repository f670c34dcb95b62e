"""Stimulation events: one row per delivered pulse (or pulse train element).

A :class:`StimEvents` table is part of every :class:`~organoid_sim.recording.SpikeRecording`.
Columns (all 1-D arrays of equal length, sorted by ``time``):

``time``         float64, seconds: onset of the pulse (start of its first phase).
``electrode``    int64, the stimulating electrode id (same id space as the recording's electrodes).
``amplitude``    float64, amplitude of the first phase in ``amplitude_unit`` (``"uA"`` for
                 current-mode rigs, ``"mV"`` for voltage-mode rigs). The sign is the polarity of
                 the first phase; later phases alternate.
``phase_us``     float64, duration of one phase in microseconds.
``n_phases``     int64, number of phases (1 monophasic, 2 biphasic, 3 triphasic).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

COLUMNS = ("time", "electrode", "amplitude", "phase_us", "n_phases")
_DTYPES = {"time": np.float64, "electrode": np.int64, "amplitude": np.float64,
           "phase_us": np.float64, "n_phases": np.int64}
AMPLITUDE_UNITS = ("uA", "mV")


def _frozen(a: np.ndarray) -> np.ndarray:
    a = np.ascontiguousarray(a)
    if a.flags.writeable and a.base is not None:
        a = a.copy()
    a.flags.writeable = False
    return a


def _whole_ids(electrode) -> np.ndarray:
    """Electrode ids as int64; float columns (a CSV's ``3.0``) only when every value is a whole
    number, so ``3.7`` or NaN is refused rather than cut to 3 or a huge negative id."""
    a = np.asarray(electrode)
    if a.dtype.kind == "f":
        bad = a[~(np.isfinite(a) & (a == np.round(a)))].ravel()
        if len(bad):
            raise ValueError(f"stimulation events: electrode ids must be whole numbers, got {bad[:5].tolist()}")
    return a.astype(np.int64)


@dataclass(frozen=True, eq=False)
class StimEvents:
    """Table of stimulation pulses (see module docstring for the columns and units)."""

    time: np.ndarray
    electrode: np.ndarray
    amplitude: np.ndarray
    phase_us: np.ndarray
    n_phases: np.ndarray
    amplitude_unit: str = "uA"

    def __post_init__(self) -> None:
        n = None
        for name in COLUMNS:
            raw = np.asarray(getattr(self, name))
            if raw.ndim != 1:
                raise ValueError(f"stimulation events: column {name!r} must be 1-D, got shape {raw.shape}")
            try:
                col = raw.astype(_DTYPES[name], casting="same_kind" if raw.size and name != "n_phases" else "unsafe")
            except TypeError as exc:
                raise ValueError(f"stimulation events: column {name!r} has dtype {raw.dtype}, "
                                 f"expected {np.dtype(_DTYPES[name])}") from exc
            if n is None:
                n = len(col)
            elif len(col) != n:
                raise ValueError(f"stimulation events: column {name!r} has {len(col)} rows, "
                                 f"expected {n} like 'time'")
            object.__setattr__(self, name, _frozen(col))
        if not np.all(np.isfinite(self.time)) or np.any(self.time < 0):
            raise ValueError("stimulation events: 'time' must be finite and >= 0 seconds")
        if np.any(np.diff(self.time) < 0):
            raise ValueError("stimulation events: 'time' must be sorted in increasing order")
        if not np.all(np.isfinite(self.amplitude)):
            raise ValueError("stimulation events: 'amplitude' must be finite")
        if np.any(~np.isfinite(self.phase_us)) or np.any(self.phase_us < 0):
            raise ValueError("stimulation events: 'phase_us' must be finite and >= 0 microseconds")
        if np.any(self.n_phases < 1):
            raise ValueError("stimulation events: 'n_phases' must be >= 1")
        if self.amplitude_unit not in AMPLITUDE_UNITS:
            raise ValueError(f"stimulation events: amplitude_unit must be one of {AMPLITUDE_UNITS}, "
                             f"got {self.amplitude_unit!r}")

    # construction -----------------------------------------------------------------------------
    @classmethod
    def empty(cls, amplitude_unit: str = "uA") -> "StimEvents":
        """An empty table."""
        z = np.zeros(0)
        return cls(z, z.astype(np.int64), z, z, z.astype(np.int64), amplitude_unit)

    @classmethod
    def from_columns(cls, time, electrode, amplitude=None, phase_us=None, n_phases=None,
                     amplitude_unit: str = "uA", sort: bool = True) -> "StimEvents":
        """Build from columns; missing ``amplitude`` is NaN-free 0, ``phase_us`` 0, ``n_phases`` 2.

        ``time`` in seconds, ``amplitude`` in ``amplitude_unit``, ``phase_us`` in microseconds.
        With ``sort=True`` rows are ordered by time (stable).
        """
        time = np.asarray(time, dtype=np.float64)
        n = len(time)
        electrode = np.broadcast_to(_whole_ids(electrode), (n,))
        amplitude = np.zeros(n) if amplitude is None else np.broadcast_to(np.asarray(amplitude, float), (n,))
        phase_us = np.zeros(n) if phase_us is None else np.broadcast_to(np.asarray(phase_us, float), (n,))
        n_phases = (np.full(n, 2, np.int64) if n_phases is None
                    else np.broadcast_to(np.asarray(n_phases, np.int64), (n,)))
        order = np.argsort(time, kind="stable") if sort else np.arange(n)
        return cls(time[order], electrode[order], amplitude[order], phase_us[order],
                   n_phases[order], amplitude_unit)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "StimEvents":
        """Inverse of :meth:`to_dict`."""
        return cls(*(np.asarray(d[c]) for c in COLUMNS), amplitude_unit=d.get("amplitude_unit", "uA"))

    # access ----------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.time)

    @property
    def duration(self) -> np.ndarray:
        """Duration of each pulse in seconds (``n_phases * phase_us``)."""
        return self.n_phases * self.phase_us * 1e-6

    def to_dict(self) -> dict:
        """Columns as plain lists plus ``amplitude_unit`` (JSON-serialisable)."""
        d = {c: getattr(self, c).tolist() for c in COLUMNS}
        d["amplitude_unit"] = self.amplitude_unit
        return d

    def take(self, index) -> "StimEvents":
        """Rows selected by a boolean mask or integer index array (order kept)."""
        return StimEvents(*(getattr(self, c)[index] for c in COLUMNS), amplitude_unit=self.amplitude_unit)

    def time_slice(self, t0: float, t1: float) -> "StimEvents":
        """Events with ``t0 <= time < t1`` (seconds)."""
        return self.take((self.time >= t0) & (self.time < t1))

    def reaching_steps(self, lo: int, hi: int, dt_s: float, t0: float, span_s: float) -> "StimEvents":
        """Events whose input, lasting ``span_s`` seconds from onset, can reach steps ``lo..hi-1``
        of a grid ``t0 + j * dt_s`` (s); one extra step of slack covers the binning tolerance.

        Parameters
        ----------
        lo, hi : int
            First and one-past-last step.
        dt_s, t0, span_s : float
            Step (s), start of step 0 (s) and how long an event's input lasts (s).

        Returns
        -------
        StimEvents
            The events that feed at least one of those steps (order kept).
        """
        return self.take((self.time >= t0 + (lo - 2) * dt_s - span_s) & (self.time < t0 + hi * dt_s))

    def shifted(self, dt: float) -> "StimEvents":
        """The same events ``dt`` seconds later."""
        cols = [getattr(self, c) for c in COLUMNS]
        cols[0] = cols[0] + dt
        return StimEvents(*cols, amplitude_unit=self.amplitude_unit)

    @staticmethod
    def concat(tables: "list[StimEvents]") -> "StimEvents":
        """Concatenate tables that are already in time order relative to each other."""
        units = {t.amplitude_unit for t in tables if len(t)}
        if len(units) > 1:
            raise ValueError(f"cannot concatenate stimulation events in different units {sorted(units)}")
        unit = units.pop() if units else (tables[0].amplitude_unit if tables else "uA")
        if not tables:
            return StimEvents.empty(unit)
        return StimEvents(*(np.concatenate([getattr(t, c) for t in tables]) for c in COLUMNS),
                          amplitude_unit=unit)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, StimEvents):
            return NotImplemented
        return self.amplitude_unit == other.amplitude_unit and all(
            np.array_equal(getattr(self, c), getattr(other, c)) for c in COLUMNS)

    def __repr__(self) -> str:
        if not len(self):
            return "StimEvents(empty)"
        return (f"StimEvents({len(self)} pulses on {len(np.unique(self.electrode))} electrodes, "
                f"{self.time[0]:.3f}-{self.time[-1]:.3f} s, amplitude "
                f"{self.amplitude.min():g}..{self.amplitude.max():g} {self.amplitude_unit})")


def step_rows(n_steps: int, dt_s: float, rows, owner: str) -> tuple[int, int]:
    """``(lo, hi)``: the steps ``rows=(lo, hi)`` of an ``n_steps`` grid (all of it for None), clipped
    to the grid; checks ``n_steps >= 0`` and ``dt_s > 0`` (s), naming ``owner`` in the error.

    Parameters
    ----------
    n_steps : int
        Steps in the whole grid.
    dt_s : float
        Step (s).
    rows : tuple of int, optional
        Requested step range.
    owner : str
        Who asks (for the error message).

    Returns
    -------
    tuple of int
        ``(lo, hi)``.
    """
    n_steps = int(n_steps)
    if n_steps < 0 or not dt_s > 0:
        raise ValueError(f"{owner}: need n_steps >= 0 and dt_s > 0 s, got {n_steps}, {dt_s}")
    return (0, n_steps) if rows is None else (max(int(rows[0]), 0), min(int(rows[1]), n_steps))
