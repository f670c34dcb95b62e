"""Population rate and network bursts (ISI_N / MaxInterval family for MEA cultures).

Detection (:func:`detect_bursts`) follows the ISI_N method of Bakkum et al. (2013, Front. Comput.
Neurosci. 7:193), the population-level form of the ISI-threshold detectors of Wagenaar et al. (2006,
BMC Neurosci. 7:11):

1. merge the spikes of all units into one time-sorted train;
2. every run of ``n_spikes`` consecutive spikes spanning at most ``max_isi_n`` seconds (``ISI_N``
   threshold) is burst material; overlapping runs are joined, and the burst spans its first to last
   spike;
3. bursts separated by less than ``min_ibi`` seconds are merged (one network event, not two);
4. a burst must recruit at least ``min_units`` units (default ``min_recruitment`` of the active
   units, at least 2), so the solo bursting of one channel is not a network burst.

The default ``max_isi_n`` adapts to the culture: the ``alpha = 1e-6`` quantile of the sum of
``n_spikes`` intervals of a Poisson population firing at the recording's mean population rate (a
Gamma quantile of shape ``n_spikes``), capped at 0.1 s. That is the span of ``n_spikes + 1``
consecutive spikes; the ``n_spikes`` spikes of one window (``n_spikes - 1`` intervals) undercut it
by chance with probability about 8e-6 at ``n_spikes = 10``. The definition is kept as it is because
every burst figure of the package (the plate benchmark's eligibility and bars included) rests on it. Chance windows are then rare even in long
recordings, and the recruitment rule removes the few left. On well D1 of the
DIV12 rat cortical plate this finds the network bursts visible in the raster (docs/img/d1_raster.png).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.stats import gamma

from ._common import merged_times, population_counts

__all__ = ["NetworkBursts", "detect_bursts", "burst_statistics", "population_rate"]


def population_rate(rec, bin_ms: float = 10.0, per_unit: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Population firing rate: ``(bin_start_s, rate_hz)`` in ``bin_ms`` ms bins over the window.

    The rate is the summed spike count of all units divided by the bin width (Hz); with
    ``per_unit=True`` it is divided by the number of units as well (mean rate per unit).

    Parameters
    ----------
    rec : SpikeRecording
        The spikes.
    bin_ms : float
        Bin (ms).
    per_unit : bool
        Divide by the number of units too.

    Returns
    -------
    bin_start_s : np.ndarray
        Start of each bin (s).
    rate_hz : np.ndarray
        Rate in each bin (Hz).
    """
    c = population_counts(rec, bin_ms).astype(float)
    rate = c / (bin_ms / 1000.0)
    if per_unit:
        rate /= max(rec.n_units, 1)
    return rec.t_start + np.arange(len(c)) * bin_ms / 1000.0, rate


@dataclass(frozen=True)
class NetworkBursts:
    """Detected network bursts (one entry per burst, in time order).

    ``start``/``stop``: times (s) of the first and last spike of the burst; ``n_spikes``: spikes in
    it (all units); ``n_units``: units with at least one spike in it (recruitment); ``first_spike``:
    ``[B, N]`` time (s) of each unit's first spike in each burst, NaN when the unit is silent;
    ``n_units_total``: units in the recording; ``params``: the detection parameters actually used.
    """

    start: np.ndarray
    stop: np.ndarray
    n_spikes: np.ndarray
    n_units: np.ndarray
    first_spike: np.ndarray
    n_units_total: int
    params: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.start)

    @property
    def duration(self) -> np.ndarray:
        """Burst durations in seconds."""
        return self.stop - self.start

    @property
    def recruitment(self) -> np.ndarray:
        """Fraction of the recording's units taking part in each burst."""
        return self.n_units / max(self.n_units_total, 1)

    @property
    def onset_order(self) -> np.ndarray:
        """``[B, N]`` rank (0 = first) of each unit's first spike in each burst; -1 when silent."""
        fs = np.where(np.isfinite(self.first_spike), self.first_spike, np.inf)
        ranks = np.argsort(np.argsort(fs, axis=1, kind="stable"), axis=1)
        return np.where(np.isfinite(self.first_spike), ranks, -1)

    def to_dict(self) -> dict:
        """Plain lists (JSON-serialisable), without the ``[B, N]`` first-spike table."""
        return {"start": self.start.tolist(), "stop": self.stop.tolist(), "n_spikes": self.n_spikes.tolist(),
                "n_units": self.n_units.tolist(), "params": dict(self.params)}

    def __repr__(self) -> str:
        return f"NetworkBursts({len(self)} bursts, params={self.params})"


def _runs(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Start and stop (exclusive) indices of the runs of True in a boolean array."""
    d = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    return np.flatnonzero(d == 1), np.flatnonzero(d == -1)


def detect_bursts(rec, n_spikes: int = 10, max_isi_n: float | None = None, min_ibi: float = 0.1,
                  min_recruitment: float = 0.25, min_units: int | None = None, alpha: float = 1e-6) -> NetworkBursts:
    """Detect network bursts with the ISI_N method (Bakkum et al. 2013); see the module docstring.

    Parameters
    ----------
    rec : SpikeRecording
        The spikes.
    n_spikes : N of ISI_N: spikes (all units together) that must fall within ``max_isi_n``.
    max_isi_n : seconds; default ``min(0.1, gamma.ppf(alpha, n_spikes, scale=1 / mean population rate))``
        (the span of ``n_spikes`` intervals, see the module docstring).
    min_ibi : bursts closer than this many seconds (stop to start) are merged.
    min_recruitment : minimal fraction of the active units (units with spikes) a burst must recruit.
    min_units : minimal number of recruited units; overrides ``min_recruitment`` when given.
    alpha : chance level that sets the default ``max_isi_n`` (see the module docstring).

    Returns
    -------
    NetworkBursts
        Start and stop times (s), spikes and units of each burst, and the detector's ``params``.
    """
    if n_spikes < 2:
        raise ValueError(f"n_spikes must be >= 2, got {n_spikes}")
    t, u = merged_times(rec)
    active = int(np.sum(rec.spike_counts > 0))
    if max_isi_n is None:
        mean_rate = len(t) / rec.duration if rec.duration > 0 else 0.0
        max_isi_n = min(0.1, float(gamma.ppf(alpha, n_spikes, scale=1.0 / mean_rate))) if mean_rate > 0 else 0.1
    if min_units is None:
        min_units = max(2, int(np.ceil(min_recruitment * active)))
    params = dict(n_spikes=int(n_spikes), max_isi_n=float(max_isi_n), min_ibi=float(min_ibi),
                  min_units=int(min_units), alpha=float(alpha))
    n = rec.n_units
    if len(t) < n_spikes:
        return NetworkBursts(np.zeros(0), np.zeros(0), np.zeros(0, np.int64), np.zeros(0, np.int64),
                             np.zeros((0, n)), n, params)
    # Spikes i and i+1 belong to one burst when some window of n_spikes consecutive spikes spanning
    # <= max_isi_n holds both; bursts are the runs of such linked neighbours.
    ok = (t[n_spikes - 1:] - t[:len(t) - n_spikes + 1]) <= max_isi_n
    cs = np.concatenate([[0], np.cumsum(ok)])
    pair = np.arange(len(t) - 1)
    linked = cs[np.minimum(pair + 1, len(ok))] - cs[np.clip(pair - n_spikes + 2, 0, len(ok))] > 0
    first, last = _runs(linked)  # pair runs [a, b) -> spikes a .. b
    if len(first):  # merge bursts closer than min_ibi
        gap = t[first[1:]] - t[last[:-1]]
        keep_start = np.concatenate([[True], gap >= min_ibi])
        keep_stop = np.concatenate([gap >= min_ibi, [True]])
        first, last = first[keep_start], last[keep_stop]
    # Per burst: spikes, recruited units and each unit's first spike, all from one sort of the spikes.
    burst_of = np.full(len(t), -1)
    for_bursts = np.zeros(len(t) + 1, np.int64)
    for_bursts[first] += 1
    for_bursts[last + 1] -= 1
    inside = np.cumsum(for_bursts[:-1]) > 0
    burst_of[inside] = np.cumsum(np.isin(np.arange(len(t)), first))[inside] - 1
    b_in, u_in, t_in = burst_of[inside], u[inside], t[inside]
    first_spike = np.full((len(first), n), np.inf)
    np.minimum.at(first_spike, (b_in, u_in), t_in)
    first_spike[np.isinf(first_spike)] = np.nan
    n_units = np.sum(np.isfinite(first_spike), axis=1)
    good = n_units >= min_units
    return NetworkBursts(start=t[first][good], stop=t[last][good], n_spikes=(last - first + 1)[good],
                         n_units=n_units[good], first_spike=first_spike[good], n_units_total=n, params=params)


def burst_statistics(rec, bursts: NetworkBursts | None = None, **params) -> dict:
    """Summary of network bursts (``bursts`` from :func:`detect_bursts`, detected with ``params`` if None).

    Keys: ``n_bursts``; ``burst_rate_hz`` (bursts per second of recording) and ``burst_rate_per_min``;
    ``mean_burst_duration_s``, ``median_burst_duration_s``; ``mean_ibi_s``, ``cv_ibi`` (inter-burst
    intervals, start to start); ``mean_spikes_per_burst``; ``fraction_spikes_in_bursts``;
    ``mean_recruitment`` (fraction of units per burst); ``mean_onset_rank`` (per unit, mean rank of
    its first spike in the bursts it joins; NaN for units never in a burst). Values that need more
    bursts than there are (e.g. ``cv_ibi`` with fewer than 3 bursts) are NaN and listed in
    ``undefined``.

    Parameters
    ----------
    rec : SpikeRecording
        The spikes.
    bursts : NetworkBursts, optional
        Detected bursts (default: :func:`detect_bursts` with ``params``).
    **params
        Detector options of :func:`detect_bursts`.

    Returns
    -------
    dict
        The figures listed above.
    """
    if bursts is None:
        bursts = detect_bursts(rec, **params)
    nb = len(bursts)
    ibi = np.diff(bursts.start)
    out = {"n_bursts": nb, "burst_rate_hz": nb / rec.duration if rec.duration > 0 else float("nan")}
    out["burst_rate_per_min"] = out["burst_rate_hz"] * 60.0
    nan = float("nan")
    out["mean_burst_duration_s"] = float(np.mean(bursts.duration)) if nb else nan
    out["median_burst_duration_s"] = float(np.median(bursts.duration)) if nb else nan
    out["mean_ibi_s"] = float(np.mean(ibi)) if len(ibi) else nan
    out["cv_ibi"] = float(np.std(ibi) / np.mean(ibi)) if len(ibi) >= 2 else nan
    out["mean_spikes_per_burst"] = float(np.mean(bursts.n_spikes)) if nb else nan
    out["fraction_spikes_in_bursts"] = (float(np.sum(bursts.n_spikes) / rec.n_spikes) if rec.n_spikes else nan)
    out["mean_recruitment"] = float(np.mean(bursts.recruitment)) if nb else nan
    ranks = bursts.onset_order.astype(float)
    ranks[ranks < 0] = np.nan
    with np.errstate(invalid="ignore"):
        joined = np.sum(np.isfinite(ranks), axis=0)
        out["mean_onset_rank"] = np.where(joined > 0, np.nansum(ranks, axis=0) / np.maximum(joined, 1), np.nan).tolist()
    out["undefined"] = sorted(k for k, v in out.items() if isinstance(v, float) and np.isnan(v))
    return out
