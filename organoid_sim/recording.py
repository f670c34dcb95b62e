"""`SpikeRecording`: the one object every part of organoid-sim reads and writes.

A recording holds, for ``N`` units (sorted units or electrode channels, both called units here):

* spike times in **seconds**, float64, sorted within each unit. They are stored flat
  (``times``, all units one after the other) with ``offsets`` (``N + 1`` int64) marking where each
  unit starts, so readers, tensors and statistics work on whole arrays without Python loops;
* ``unit_ids`` (int64 or str), unique;
* per unit the recording electrode id (int64, ``-1`` unknown) and position ``(x, y)`` in **um**
  (NaN unknown);
* the electrode layout (all electrodes of the array, including those without units or used only to
  stimulate): ids and positions in um;
* ``t_start`` / ``t_stop`` in seconds (every spike lies in ``[t_start, t_stop]``), the sampling
  rate in Hz where known, stimulation events (:class:`~organoid_sim.events.StimEvents`) and a
  JSON-serialisable ``metadata`` dict.

Recordings are immutable: arrays are read-only and every method returns a new object.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

import numpy as np

from .events import StimEvents
from .jsonable import json_default
from .neo_bridge import neo_fields, recording_to_neo
from .si_bridge import DEFAULT_RESOLUTION_S, recording_to_spikeinterface, spike_time_resolution, spikeinterface_fields

__all__ = ["SpikeRecording", "Electrodes", "index_of"]


def _readonly(a: np.ndarray) -> np.ndarray:
    a = np.array(a, copy=True) if (a.base is not None or a.flags.writeable is False) else a
    a = np.ascontiguousarray(a)
    a.flags.writeable = False
    return a


def index_of(ids: np.ndarray, wanted: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Row of each ``wanted`` id in ``ids`` (ids unique, any order; one sorted search).

    Parameters
    ----------
    ids : np.ndarray
        The ids of the rows (unique).
    wanted : np.ndarray
        Ids to look up.

    Returns
    -------
    rows : np.ndarray
        int64 row in ``ids`` of each wanted id (0 where it is missing).
    found : np.ndarray
        bool, whether each wanted id is in ``ids``.
    """
    ids, wanted = np.asarray(ids), np.asarray(wanted)
    if len(ids) == 0:
        return np.zeros(len(wanted), np.int64), np.zeros(len(wanted), bool)
    order = np.argsort(ids, kind="stable")
    pos = np.clip(np.searchsorted(ids, wanted, sorter=order), 0, len(ids) - 1)
    rows = order[pos].astype(np.int64)
    return rows, ids[rows] == wanted


def _normalise_metadata(md: Mapping[str, Any] | None) -> dict:
    if md is None:
        return {}
    try:
        return json.loads(json.dumps(dict(md), default=json_default, allow_nan=True))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"metadata must be JSON-serialisable: {exc}") from exc


def _as_unit_ids(ids, n: int) -> np.ndarray:
    if ids is None:
        return np.arange(n, dtype=np.int64)
    ids = np.asarray(ids)
    if ids.ndim != 1 or len(ids) != n:
        raise ValueError(f"unit_ids has shape {ids.shape}, expected ({n},) (one id per unit)")
    if ids.dtype.kind in "iu":
        ids = ids.astype(np.int64)
    elif ids.dtype.kind in "US" or ids.dtype == object:
        ids = np.array([i.decode() if isinstance(i, bytes) else str(i) for i in ids.tolist()], dtype=str)
        if n == 0:
            ids = ids.astype("<U1")
    else:
        raise ValueError(f"unit_ids must be integers or strings, got dtype {ids.dtype}")
    uniq, counts = np.unique(ids, return_counts=True)
    if np.any(counts > 1):
        raise ValueError(f"duplicate unit ids: {uniq[counts > 1][:10].tolist()}")
    return ids


@dataclass(frozen=True, eq=False)
class Electrodes:
    """Electrode layout: ``ids`` (int64, unique) and ``x``, ``y`` positions in um (NaN unknown)."""

    ids: np.ndarray
    x: np.ndarray
    y: np.ndarray

    def __post_init__(self) -> None:
        ids = np.asarray(self.ids)
        if ids.dtype.kind not in "iu":
            raise ValueError(f"electrode ids must be integers, got dtype {ids.dtype}")
        ids = ids.astype(np.int64)
        x = np.asarray(self.x, dtype=np.float64)
        y = np.asarray(self.y, dtype=np.float64)
        if not (ids.ndim == x.ndim == y.ndim == 1 and len(ids) == len(x) == len(y)):
            raise ValueError(f"electrode ids/x/y lengths differ: {ids.shape}, {x.shape}, {y.shape}")
        uniq, counts = np.unique(ids, return_counts=True)
        if np.any(counts > 1):
            raise ValueError(f"duplicate electrode ids: {uniq[counts > 1][:10].tolist()}")
        for name, v in (("ids", ids), ("x", x), ("y", y)):
            object.__setattr__(self, name, _readonly(v))

    @classmethod
    def empty(cls) -> "Electrodes":
        """A layout with no electrodes."""
        return cls(np.zeros(0, np.int64), np.zeros(0), np.zeros(0))

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def positions(self) -> np.ndarray:
        """``(E, 2)`` array of x, y in um."""
        return np.stack([self.x, self.y], axis=1)

    def position_of(self, electrode_ids: np.ndarray) -> np.ndarray:
        """Positions ``(K, 2)`` in um for the given electrode ids (NaN where not in the layout)."""
        electrode_ids = np.asarray(electrode_ids, dtype=np.int64)
        out = np.full((len(electrode_ids), 2), np.nan)
        rows, hit = index_of(self.ids, electrode_ids)
        out[hit] = self.positions[rows[hit]]
        return out

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Electrodes):
            return NotImplemented
        return (np.array_equal(self.ids, other.ids) and np.array_equal(self.x, other.x, equal_nan=True)
                and np.array_equal(self.y, other.y, equal_nan=True))


class SpikeRecording:
    """Spike trains of ``N`` units on a multi-electrode array, with layout, stimulation and metadata.

    Build one with :meth:`from_spike_times` (list of per-unit arrays, seconds), :meth:`from_pairs`
    (flat ``(time, unit)`` pairs), :meth:`from_tensor` (binned counts) or a reader
    (:func:`organoid_sim.load`). The constructor takes the flat form and validates everything;
    invalid input raises :class:`ValueError` naming what is wrong.

    Parameters
    ----------
    times : float64 array, all spike times in seconds, unit after unit, sorted within each unit.
    offsets : int64 array of ``N + 1`` increasing indices into ``times``; unit ``i`` owns
        ``times[offsets[i]:offsets[i+1]]``.
    t_start, t_stop : recording window in seconds. Default: 0 and the last spike time.
    unit_ids : ``N`` unique ints or strings (default ``0..N-1``).
    electrode_ids : ``N`` int electrode ids (default ``-1``, unknown).
    positions : ``(N, 2)`` x, y in um (default: looked up in ``electrodes``, else NaN).
    electrodes : :class:`Electrodes` layout of the whole array (default: built from the units).
    sampling_rate : acquisition rate in Hz, or None.
    stim : :class:`StimEvents` (default empty).
    metadata : JSON-serialisable dict (source file, well, detector, ...).
    """

    __slots__ = ("_times", "_offsets", "_t_start", "_t_stop", "_unit_ids", "_electrode_ids",
                 "_positions", "_electrodes", "_sampling_rate", "_stim", "_metadata")

    def __init__(self, times, offsets, *, t_start: float | None = None, t_stop: float | None = None,
                 unit_ids=None, electrode_ids=None, positions=None, electrodes: Electrodes | None = None,
                 sampling_rate: float | None = None, stim: StimEvents | None = None,
                 metadata: Mapping[str, Any] | None = None) -> None:
        times = np.asarray(times)
        offsets = np.asarray(offsets)
        if times.ndim != 1:
            raise ValueError(f"spike times must be 1-D, got shape {times.shape}")
        if times.dtype.kind not in "fiu":
            raise ValueError(f"spike times must be numeric seconds, got dtype {times.dtype}")
        times = times.astype(np.float64, copy=False)
        if offsets.ndim != 1 or len(offsets) < 1 or offsets.dtype.kind not in "iu":
            raise ValueError(f"offsets must be a 1-D integer array of N+1 entries, got {offsets.dtype} "
                             f"shape {offsets.shape}")
        offsets = offsets.astype(np.int64, copy=False)
        if offsets[0] != 0 or offsets[-1] != len(times) or np.any(np.diff(offsets) < 0):
            raise ValueError(f"offsets must increase from 0 to the number of spikes ({len(times)}); "
                             f"got first={offsets[0]}, last={offsets[-1]}")
        n = len(offsets) - 1
        bad = ~np.isfinite(times)
        if bad.any():
            u = int(np.searchsorted(offsets, np.flatnonzero(bad)[0], side="right") - 1)
            raise ValueError(f"{int(bad.sum())} spike times are NaN or infinite (first in unit index {u})")
        if len(times) and times.min() < 0:
            u = int(np.searchsorted(offsets, int(np.argmin(times)), side="right") - 1)
            raise ValueError(f"spike times must be >= 0 s; unit index {u} has {times.min():g} s")
        # Sortedness within units, checked block by block so validation needs ~1 MB of scratch
        # instead of a full-length diff (keeps a 1M-spike load under 2x the spike arrays).
        for lo in range(0, max(len(times) - 1, 0), 1 << 20):
            hi = min(lo + (1 << 20), len(times) - 1)
            drops = np.flatnonzero(times[lo + 1:hi + 1] < times[lo:hi]) + lo + 1  # index after a drop
            drops = drops[~np.isin(drops, offsets[1:-1])]  # a drop at a unit start is allowed
            if len(drops):
                u = int(np.searchsorted(offsets, drops[0], side="right") - 1)
                raise ValueError(f"spike times of unit index {u} are not sorted in increasing order")
        t_start = 0.0 if t_start is None else float(t_start)
        if t_stop is None:
            t_stop = max(t_start, float(times.max())) if len(times) else t_start
        t_stop = float(t_stop)
        if not (np.isfinite(t_start) and np.isfinite(t_stop)) or t_start < 0 or t_stop < t_start:
            raise ValueError(f"need 0 <= t_start <= t_stop (finite seconds), got {t_start}, {t_stop}")
        if len(times) and (times.min() < t_start or times.max() > t_stop):
            raise ValueError(f"spikes from {times.min():.6g} s to {times.max():.6g} s lie outside the "
                             f"recording window [{t_start:.6g}, {t_stop:.6g}] s")
        unit_ids = _as_unit_ids(unit_ids, n)
        if electrode_ids is None:
            electrode_ids = np.full(n, -1, np.int64)
        electrode_ids = np.asarray(electrode_ids)
        if electrode_ids.shape != (n,) or (n and electrode_ids.dtype.kind not in "iu"):
            raise ValueError(f"electrode_ids must be {n} integers, got dtype {electrode_ids.dtype} "
                             f"shape {electrode_ids.shape}")
        electrode_ids = electrode_ids.astype(np.int64)
        if positions is not None and np.shape(positions) != (n, 2):
            raise ValueError(f"positions must have shape ({n}, 2) (x, y in um), got {np.shape(positions)}")
        if electrodes is None:
            known = electrode_ids >= 0
            eid, first = np.unique(electrode_ids[known], return_index=True)
            if positions is not None:
                p = np.asarray(positions, float)[known][first] if n else np.zeros((0, 2))
                electrodes = Electrodes(eid, p[:, 0], p[:, 1])
            else:
                electrodes = Electrodes(eid, np.full(len(eid), np.nan), np.full(len(eid), np.nan))
        if positions is None:
            positions = electrodes.position_of(electrode_ids)
        positions = np.asarray(positions, dtype=np.float64)
        if positions.shape != (n, 2):
            raise ValueError(f"positions must have shape ({n}, 2) (x, y in um), got {positions.shape}")
        if sampling_rate is not None:
            sampling_rate = float(sampling_rate)
            if not np.isfinite(sampling_rate) or sampling_rate <= 0:
                raise ValueError(f"sampling_rate must be a positive number of Hz, got {sampling_rate}")
        stim = StimEvents.empty() if stim is None else stim
        if not isinstance(stim, StimEvents):
            raise ValueError(f"stim must be a StimEvents table, got {type(stim).__name__}")
        self._times = _readonly(times)
        self._offsets = _readonly(offsets)
        self._t_start, self._t_stop = t_start, t_stop
        self._unit_ids = _readonly(unit_ids)
        self._electrode_ids = _readonly(electrode_ids)
        self._positions = _readonly(positions)
        self._electrodes = electrodes
        self._sampling_rate = sampling_rate
        self._stim = stim
        self._metadata = _normalise_metadata(metadata)

    # ------------------------------------------------------------------ construction helpers
    @classmethod
    def from_spike_times(cls, spike_times: Sequence[Iterable[float]], *, t_start: float | None = None,
                         t_stop: float | None = None, sort: bool = False, **kwargs) -> "SpikeRecording":
        """Build from one array of spike times (seconds; quantities and neo SpikeTrains in any time unit) per unit.

        With ``sort=False`` (default) unsorted input raises ``ValueError``; ``sort=True`` sorts each
        unit. Other keyword arguments are those of :class:`SpikeRecording`.
        """
        arrays = []
        for i, st in enumerate(spike_times):
            if hasattr(st, "rescale"):  # quantities / neo SpikeTrain: its magnitude may be in ms
                st = st.rescale("s")
            a = np.asarray(getattr(st, "magnitude", st), dtype=np.float64).ravel()
            arrays.append(np.sort(a, kind="stable") if sort else a)
        lengths = np.array([len(a) for a in arrays], dtype=np.int64)
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        times = np.concatenate(arrays) if arrays else np.zeros(0)
        return cls(times, offsets, t_start=t_start, t_stop=t_stop, **kwargs)

    @classmethod
    def from_pairs(cls, times, units, *, unit_ids=None, **kwargs) -> "SpikeRecording":
        """Build from flat ``(time, unit)`` pairs in any order.

        ``times`` in seconds; ``units`` holds the unit id of each spike. Units are ordered as in
        ``unit_ids`` when given (units listed there without spikes are kept, empty), else sorted.
        Spikes of a unit not in ``unit_ids`` raise ``ValueError``. No spikes and no ``unit_ids``
        (``from_pairs([], [])``) give a recording with no units.
        """
        times = np.asarray(times, dtype=np.float64)
        units = np.asarray(units)
        if times.shape != units.shape or times.ndim != 1:
            raise ValueError(f"times and units must be 1-D of equal length, got {times.shape} and {units.shape}")
        if units.size == 0 and units.dtype.kind not in "iuUSO":
            units = units.astype(np.int64)  # numpy reads [] as float64; no spikes name no unit
        if unit_ids is None:
            if units.dtype.kind not in "iuUSO":
                raise ValueError(f"units must hold integer or text unit ids, got dtype {units.dtype} "
                                 "(or give unit_ids)")
            unit_ids, inverse = np.unique(units, return_inverse=True)
        else:
            unit_ids = np.asarray(unit_ids)
            if unit_ids.size == 0 and unit_ids.dtype.kind not in "iuUSO":
                unit_ids = unit_ids.astype(np.int64)  # unit_ids=[]: no units
            if len(unit_ids) == 0 and len(units):
                raise ValueError("spikes given but unit_ids is empty")
            inverse, found = index_of(unit_ids, units)
            missing = ~found
            if np.any(missing):
                raise ValueError(f"spikes belong to units not in unit_ids: {np.unique(units[missing])[:10].tolist()}")
        order = np.lexsort((times, inverse))
        counts = np.bincount(inverse, minlength=len(unit_ids)) if len(inverse) else np.zeros(len(unit_ids), np.int64)
        offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        return cls(times[order], offsets, unit_ids=unit_ids, **kwargs)

    @classmethod
    def from_tensor(cls, counts, bin_ms: float, *, t_start: float = 0.0, **kwargs) -> "SpikeRecording":
        """Build from a ``[T, N]`` tensor/array of spike counts in bins of ``bin_ms`` milliseconds.

        A count ``c`` in bin ``k`` becomes ``c`` spikes at the **bin start** ``t_start + k*bin_ms/1000``
        seconds, so ``from_tensor(x).to_tensor(bin_ms)`` returns ``x`` exactly. ``t_stop`` defaults to
        the end of the last bin.
        """
        from .tensor import recording_arrays_from_counts

        times, offsets = recording_arrays_from_counts(counts, bin_ms, t_start)
        n_bins = int(np.asarray(counts.shape)[0])
        kwargs.setdefault("t_stop", t_start + n_bins * bin_ms / 1000.0)
        return cls(times, offsets, t_start=t_start, **kwargs)

    @classmethod
    def from_neo(cls, obj, **kwargs) -> "SpikeRecording":
        """Build from a ``neo.Block``, ``neo.Segment`` or list of ``neo.SpikeTrain`` (lossless).

        Keyword arguments (those of :class:`SpikeRecording`; times in s) override what the trains
        carry. Neo objects without spike trains (``to_neo()`` of a recording with no units) give a
        recording with no units when the window is known: from a Segment/Block holding other data,
        else ``t_start`` and ``t_stop`` given here; otherwise ``ValueError``.
        """
        times, fields = neo_fields(obj)
        if "electrodes" in fields:
            fields["electrodes"] = Electrodes(*fields["electrodes"])
        fields.update(kwargs)
        if not times and ("t_start" not in fields or "t_stop" not in fields):
            raise ValueError(f"from_neo: no spike trains in the {type(obj).__name__}, so no recording window; "
                             "pass t_start= and t_stop= (s) to build a recording with no units")
        return cls.from_spike_times(times, **fields)

    @classmethod
    def from_spikeinterface(cls, sorting, recording=None, *, segment_index: int = 0,
                            metadata: Mapping[str, Any] | None = None) -> "SpikeRecording":
        """Build from a SpikeInterface sorting (needs the ``interop`` extra).

        Parameters
        ----------
        sorting : spikeinterface BaseSorting
            Any sorting (``NumpySorting``, ``read_phy(...)``, a sorter's output).
        recording : spikeinterface BaseRecording, optional
            Gives the window (start time and duration, s) and, with its probe, the electrode
            positions (um) of the units' main channels. Without one, a sorting made by
            :meth:`to_spikeinterface` gives back its window, electrodes, stimulation and metadata.
        segment_index : int
            Which segment of a multi-segment sorting.
        metadata : dict, optional
            Added to the recording's metadata.

        Returns
        -------
        SpikeRecording
            Times in s, ``sampling_rate`` the sorting's sampling frequency (Hz); see
            :mod:`organoid_sim.si_bridge` for the unit and electrode rules.
        """
        times, fields = spikeinterface_fields(sorting, recording, segment_index=segment_index,
                                              metadata=dict(metadata or {}))
        if "electrodes" in fields:
            fields["electrodes"] = Electrodes(*fields["electrodes"])
        return cls.from_spike_times(times, **fields)

    def replace(self, **changes) -> "SpikeRecording":
        """A copy with some constructor fields replaced (``times``/``offsets`` go together)."""
        fields = dict(times=self._times, offsets=self._offsets, t_start=self._t_start, t_stop=self._t_stop,
                      unit_ids=self._unit_ids, electrode_ids=self._electrode_ids, positions=self._positions,
                      electrodes=self._electrodes, sampling_rate=self._sampling_rate, stim=self._stim,
                      metadata=self._metadata)
        unknown = set(changes) - set(fields)
        if unknown:
            raise TypeError(f"unknown SpikeRecording fields: {sorted(unknown)}")
        fields.update(changes)
        return SpikeRecording(fields.pop("times"), fields.pop("offsets"), **fields)

    def with_metadata(self, **items) -> "SpikeRecording":
        """A copy whose metadata has ``items`` added or overwritten."""
        return self.replace(metadata={**self._metadata, **items})

    # ------------------------------------------------------------------ properties
    @property
    def times(self) -> np.ndarray:
        """All spike times (s), unit after unit (read-only view)."""
        return self._times

    @property
    def offsets(self) -> np.ndarray:
        """``N + 1`` indices into :attr:`times` where each unit starts."""
        return self._offsets

    @property
    def spike_times(self) -> list[np.ndarray]:
        """One read-only array of spike times (s) per unit, in unit order."""
        return [self._times[a:b] for a, b in zip(self._offsets[:-1], self._offsets[1:])]

    @property
    def unit_index(self) -> np.ndarray:
        """Index (0..N-1) of the unit of each entry of :attr:`times`."""
        return np.repeat(np.arange(self.n_units, dtype=np.int64), np.diff(self._offsets))

    @property
    def spike_counts(self) -> np.ndarray:
        """Number of spikes of each unit."""
        return np.diff(self._offsets)

    @property
    def n_units(self) -> int:
        """Number of units."""
        return len(self._offsets) - 1

    @property
    def n_spikes(self) -> int:
        """Total number of spikes."""
        return len(self._times)

    @property
    def t_start(self) -> float:
        """Start of the recording window (s)."""
        return self._t_start

    @property
    def t_stop(self) -> float:
        """End of the recording window (s)."""
        return self._t_stop

    @property
    def duration(self) -> float:
        """``t_stop - t_start`` in seconds."""
        return self._t_stop - self._t_start

    @property
    def unit_ids(self) -> np.ndarray:
        """Unit ids (int64 or str)."""
        return self._unit_ids

    @property
    def electrode_ids(self) -> np.ndarray:
        """Recording electrode id of each unit (-1 unknown)."""
        return self._electrode_ids

    @property
    def positions(self) -> np.ndarray:
        """``(N, 2)`` unit positions x, y in um (NaN unknown)."""
        return self._positions

    @property
    def electrodes(self) -> Electrodes:
        """Electrode layout of the array (ids and positions in um)."""
        return self._electrodes

    @property
    def sampling_rate(self) -> float | None:
        """Acquisition sampling rate in Hz, if known."""
        return self._sampling_rate

    @property
    def stim(self) -> StimEvents:
        """Stimulation events table."""
        return self._stim

    @property
    def metadata(self) -> dict:
        """Free-form metadata (a copy; JSON-serialisable)."""
        return json.loads(json.dumps(self._metadata))

    def firing_rates(self) -> np.ndarray:
        """Mean firing rate of each unit in Hz over the recording window (0 for a zero-length window)."""
        return self.spike_counts / self.duration if self.duration > 0 else np.zeros(self.n_units)

    # ------------------------------------------------------------------ selection
    def __len__(self) -> int:
        return self.n_units

    def index_of(self, unit_ids) -> np.ndarray:
        """Positions (0..N-1) of the given unit ids; ``KeyError`` for an unknown id."""
        want = np.atleast_1d(np.asarray(unit_ids))
        lookup = {u: i for i, u in enumerate(self._unit_ids.tolist())}
        try:
            return np.array([lookup[u] for u in want.tolist()], dtype=np.int64)
        except KeyError as exc:
            raise KeyError(f"unit id {exc.args[0]!r} not in this recording "
                           f"(ids: {self._unit_ids[:10].tolist()}{'...' if self.n_units > 10 else ''})") from None

    def __getitem__(self, unit_id) -> np.ndarray:
        """Spike times (s) of the unit with this id."""
        i = int(self.index_of(unit_id)[0])
        return self._times[self._offsets[i]:self._offsets[i + 1]]

    def select_units(self, unit_ids=None, *, index=None, min_spikes: int | None = None,
                     where: Callable[["SpikeRecording"], np.ndarray] | None = None) -> "SpikeRecording":
        """A recording with a subset of units, in the order asked for.

        Give ``unit_ids`` (ids), or ``index`` (integer positions or a boolean mask), and/or
        ``min_spikes`` (keep units with at least this many spikes), and/or ``where`` (a function of the
        recording returning a boolean mask over units).
        """
        if unit_ids is not None and index is not None:
            raise ValueError("give unit_ids or index, not both")
        idx = np.arange(self.n_units)
        if unit_ids is not None:
            idx = self.index_of(unit_ids)
        elif index is not None:
            index = np.asarray(index)
            idx = np.flatnonzero(index) if index.dtype == bool else index.astype(np.int64).ravel()
        keep = np.ones(len(idx), bool)
        if min_spikes is not None:
            keep &= self.spike_counts[idx] >= min_spikes
        if where is not None:
            keep &= np.asarray(where(self), bool)[idx]
        idx = idx[keep]
        lengths = self.spike_counts[idx]
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        if len(idx):
            starts = self._offsets[idx]
            gather = np.repeat(starts - offsets[:-1], lengths) + np.arange(offsets[-1])
            times = self._times[gather]
        else:
            times = np.zeros(0)
        return self.replace(times=times, offsets=offsets, unit_ids=self._unit_ids[idx],
                            electrode_ids=self._electrode_ids[idx], positions=self._positions[idx])

    def time_slice(self, t0: float | None = None, t1: float | None = None) -> "SpikeRecording":
        """Spikes and stimulation events with ``t0 <= t < t1`` (seconds; absolute times are kept).

        The new window is ``[t0, t1]``; defaults are the current window edges. Half-open selection
        means consecutive slices share no spike.
        """
        t0 = self._t_start if t0 is None else float(t0)
        t1 = self._t_stop if t1 is None else float(t1)
        if not (self._t_start <= t0 <= t1 <= self._t_stop):
            raise ValueError(f"time_slice({t0}, {t1}) is not inside the window "
                             f"[{self._t_start}, {self._t_stop}] s")
        keep = (self._times >= t0) & ((self._times < t1) | ((t1 == self._t_stop) & (self._times <= t1)))
        cs = np.concatenate([[0], np.cumsum(keep)])
        counts = cs[self._offsets[1:]] - cs[self._offsets[:-1]]
        offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        return self.replace(times=self._times[keep], offsets=offsets, t_start=t0, t_stop=t1,
                            stim=self._stim.time_slice(t0, t1 if t1 < self._t_stop else np.inf))

    def trim_silence(self) -> "SpikeRecording":
        """The recording cut to ``[first spike, last spike]`` (seconds; the last spike is kept).

        A plate's clock can run long before its first spike (164 s on the DIV12 Axion plate):
        that silence is not culture activity, so ``organoid-sim fit``/``evaluate`` and
        :func:`organoid_sim.evaluate` fit on the trimmed window by default. Returns ``self``
        when there are fewer than two distinct spike times.

        Returns
        -------
        SpikeRecording
            A new recording whose window is ``[first spike, min(last spike + 1 us, t_stop)]``.
        """
        if self.n_spikes == 0:
            return self
        t0, t1 = float(self._times.min()), float(self._times.max())
        return self.time_slice(t0, min(t1 + 1e-6, self._t_stop)) if t1 > t0 else self

    def split(self, fraction: float = 0.75) -> tuple["SpikeRecording", "SpikeRecording"]:
        """Split in time into (first ``fraction``, rest): e.g. train and held-out windows.

        ``fraction`` is the share of the duration in the first part (strictly between 0 and 1); the
        cut lies at ``t_start + fraction * duration`` seconds. ``ValueError`` naming the fraction
        when a part's window would be empty or degenerate: shorter than the recording's spike-time
        resolution (one sample, :func:`organoid_sim.si_bridge.spike_time_resolution`; 0 s for a
        recording of zero duration or a cut rounded onto an edge), as a fraction very near 0 or 1
        gives. A part may hold no spikes (a quiet stretch); callers that need spikes check them.
        """
        try:
            if isinstance(fraction, (str, bytes, bool, np.bool_)):   # float("0.5") and float(True) would pass
                raise TypeError
            f = float(fraction)
        except (TypeError, ValueError):
            raise ValueError(f"fraction must be a number strictly between 0 and 1, got {fraction!r}") from None
        if not 0 < f < 1:
            raise ValueError(f"fraction must lie strictly between 0 and 1, got {fraction}")
        if self.duration <= 0:
            raise ValueError(f"split(fraction={fraction}): the recording's window [{self._t_start!r}, "
                             f"{self._t_stop!r}] s has zero duration, so both parts would be empty")
        t_cut = self._t_start + f * self.duration
        try:
            resolution, origin = spike_time_resolution(self)
        except ValueError:  # an invalid resolution in the metadata is not this call's problem
            resolution, origin = DEFAULT_RESOLUTION_S, "default"
        lengths = (t_cut - self._t_start, self._t_stop - t_cut)
        short = int(np.argmin(lengths))
        if lengths[short] < resolution * (1 - 1e-9):  # the tolerance forgives float rounding of the cut
            which, edge = ("first", "0") if short == 0 else ("second", "1")
            raise ValueError(f"split(fraction={fraction}): the cut at {t_cut!r} s leaves the {which} part of the "
                             f"window [{self._t_start!r}, {self._t_stop!r}] s {max(lengths[short], 0.0):.3g} s long, "
                             f"shorter than the time resolution {resolution:g} s (from the {origin}); choose "
                             f"a fraction further from {edge}")
        return self.time_slice(self._t_start, t_cut), self.time_slice(t_cut, self._t_stop)

    def shifted(self, dt: float) -> "SpikeRecording":
        """The same recording ``dt`` seconds later (spikes, window and stimulation)."""
        return self.replace(times=self._times + dt, t_start=self._t_start + dt, t_stop=self._t_stop + dt,
                            stim=self._stim.shifted(dt))

    def concat(self, *others: "SpikeRecording") -> "SpikeRecording":
        """Join recordings of the same units end to end in time.

        Each following recording is shifted so that its ``t_start`` falls on the previous ``t_stop``
        (a no-op when they are already contiguous). Metadata and layout come from ``self``.
        """
        parts = [self]
        for o in others:
            if not np.array_equal(o.unit_ids, self._unit_ids):
                raise ValueError("concat needs recordings with the same unit ids in the same order")
            parts.append(o if o.t_start == parts[-1].t_stop else o._starting_at(parts[-1].t_stop))
        counts = np.sum([p.spike_counts for p in parts], axis=0)
        offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        unit_of = np.concatenate([p.unit_index for p in parts])
        times = np.concatenate([p.times for p in parts])
        order = np.argsort(unit_of, kind="stable")
        return self.replace(times=times[order], offsets=offsets, t_stop=parts[-1].t_stop,
                            stim=StimEvents.concat([p.stim for p in parts]))

    def _starting_at(self, t: float) -> "SpikeRecording":
        """The same recording moved so that its window starts exactly at ``t`` (s).

        Times are re-based (``t + (time - t_start)``) rather than shifted by ``t - t_start``: that sum
        can land an ulp before ``t``, behind a spike or pulse of the previous part on its ``t_stop``.
        """
        s = self._stim
        stim = StimEvents(t + (s.time - self._t_start), s.electrode, s.amplitude, s.phase_us, s.n_phases,
                          amplitude_unit=s.amplitude_unit)
        return self.replace(times=t + (self._times - self._t_start), t_start=t, t_stop=t + self.duration, stim=stim)

    # ------------------------------------------------------------------ conversions
    def to_tensor(self, bin_ms: float = 1.0, t0: float | None = None, t1: float | None = None,
                  dtype=None, device=None):
        """Dense ``[T, N]`` torch tensor of spike counts in bins of ``bin_ms`` ms over ``[t0, t1)`` s."""
        from .tensor import to_dense

        return to_dense(self, bin_ms, t0, t1, dtype=dtype, device=device)

    def to_sparse_tensor(self, bin_ms: float = 1.0, t0: float | None = None, t1: float | None = None,
                         dtype=None, device=None):
        """Sparse COO ``[T, N]`` torch tensor of spike counts (same binning as :meth:`to_tensor`)."""
        from .tensor import to_sparse

        return to_sparse(self, bin_ms, t0, t1, dtype=dtype, device=device)

    def iter_chunks(self, bin_ms: float = 1.0, chunk_s: float = 60.0, dtype=None,
                    device=None) -> Iterator[tuple[float, Any]]:
        """Yield ``(chunk_t0_s, [T_chunk, N] tensor)`` covering the recording without a full dense array."""
        from .tensor import iter_chunks

        return iter_chunks(self, bin_ms, chunk_s, dtype=dtype, device=device)

    def to_neo(self) -> list:
        """One ``neo.SpikeTrain`` per unit (in unit order), times in s, with ids and positions annotated."""
        return recording_to_neo(self)

    def to_spikeinterface(self, sampling_frequency: float | None = None):
        """A SpikeInterface ``NumpySorting`` of this recording (needs the ``interop`` extra).

        Parameters
        ----------
        sampling_frequency : float, optional
            Frame rate in Hz; default the recording's ``sampling_rate``, else one over
            :func:`organoid_sim.si_bridge.spike_time_resolution`. Times are rounded to frames
            counted from ``t_start``.

        Returns
        -------
        spikeinterface.core.NumpySorting
            Same unit ids, starting at ``t_start`` (s); properties ``electrode_id``, ``x_um``,
            ``y_um`` (um), ``main_channel_id``; annotations ``t_start_s``, ``t_stop_s`` and
            ``organoid_sim`` (layout, stimulation, metadata, sampling rate), which
            :meth:`from_spikeinterface` reads back.
        """
        return recording_to_spikeinterface(self, sampling_frequency)

    # ------------------------------------------------------------------ comparison and display
    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SpikeRecording):
            return NotImplemented
        return (np.array_equal(self._times, other._times) and np.array_equal(self._offsets, other._offsets)
                and self._t_start == other._t_start and self._t_stop == other._t_stop
                and self._unit_ids.dtype.kind == other._unit_ids.dtype.kind
                and np.array_equal(self._unit_ids, other._unit_ids)
                and np.array_equal(self._electrode_ids, other._electrode_ids)
                and np.array_equal(self._positions, other._positions, equal_nan=True)
                and self._electrodes == other._electrodes
                and self._sampling_rate == other._sampling_rate
                and self._stim == other._stim and self._metadata == other._metadata)

    __hash__ = None  # mutable-looking container semantics: not hashable

    def differences(self, other: "SpikeRecording") -> list[str]:
        """Names of the fields that differ from ``other`` (empty when equal); handy in tests."""
        checks = {
            "times": np.array_equal(self._times, other._times),
            "offsets": np.array_equal(self._offsets, other._offsets),
            "t_start": self._t_start == other._t_start, "t_stop": self._t_stop == other._t_stop,
            "unit_ids": self._unit_ids.dtype.kind == other._unit_ids.dtype.kind
            and np.array_equal(self._unit_ids, other._unit_ids),
            "electrode_ids": np.array_equal(self._electrode_ids, other._electrode_ids),
            "positions": np.array_equal(self._positions, other._positions, equal_nan=True),
            "electrodes": self._electrodes == other._electrodes,
            "sampling_rate": self._sampling_rate == other._sampling_rate,
            "stim": self._stim == other._stim, "metadata": self._metadata == other._metadata,
        }
        return [k for k, ok in checks.items() if not ok]

    def __repr__(self) -> str:
        rate = self.n_spikes / self.duration / max(self.n_units, 1) if self.duration > 0 else float("nan")
        parts = [f"{self.n_units} units", f"{self.n_spikes:,} spikes",
                 f"{self._t_start:.3f}-{self._t_stop:.3f} s ({self.duration:.1f} s)",
                 f"mean rate {rate:.2f} Hz/unit"]
        n_pos = int(np.sum(np.all(np.isfinite(self._positions), axis=1)))
        parts.append(f"{len(self._electrodes)} electrodes ({n_pos} units with positions)")
        if self._sampling_rate:
            parts.append(f"fs {self._sampling_rate:g} Hz")
        if len(self._stim):
            parts.append(f"{len(self._stim)} stim events")
        src = self._metadata.get("source")
        head = f"SpikeRecording({', '.join(parts)}"
        return head + (f", from {src!r})" if src else ")")
