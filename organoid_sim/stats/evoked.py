"""Evoked responses to stimulation: PSTH and per electrode x unit response probability and latency.

The artefact of a stimulation pulse blanks or corrupts the first milliseconds after it, so responses
are counted only inside a window that starts after it (default 10 ms to 200 ms after pulse onset).
Stimulation events come from ``rec.stim`` (:class:`~organoid_sim.events.StimEvents`).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np

from ..tensor import bin_index, n_bins_for
from ._common import concat_ranges, merged_times

__all__ = ["PSTH", "psth", "EvokedResponses", "evoked_responses", "first_spike_latencies", "evoked_agreement",
           "EVOKED_WINDOW", "RELIABLE_P"]

#: default response window (s after pulse onset) of every evoked-response function of the package
#: (:func:`evoked_responses`, and the stimulation calibration and predictions that compare with it)
EVOKED_WINDOW = (0.010, 0.200)
#: response probability from which a (condition, unit) pair counts as reliable for latency comparisons
RELIABLE_P = 0.3


@dataclass(frozen=True)
class PSTH:
    """Peri-stimulus time histogram.

    ``bin_edges_s``: ``T + 1`` edges (s) relative to the events; ``counts``: ``[T, N]`` spikes summed
    over events; ``n_events``; ``unit_ids``. ``rate_hz`` is ``counts / (n_events * bin width)``.
    """

    bin_edges_s: np.ndarray
    counts: np.ndarray
    n_events: int
    unit_ids: np.ndarray

    @property
    def bin_centers_s(self) -> np.ndarray:
        """Bin centres in seconds relative to the events."""
        return 0.5 * (self.bin_edges_s[1:] + self.bin_edges_s[:-1])

    @property
    def rate_hz(self) -> np.ndarray:
        """``[T, N]`` mean firing rate per event in Hz."""
        width = np.diff(self.bin_edges_s)[:, None]
        return self.counts / (max(self.n_events, 1) * width)

    @property
    def population_rate_hz(self) -> np.ndarray:
        """``[T]`` summed rate of all units per event in Hz."""
        return self.rate_hz.sum(axis=1)


def _spikes_around(rec, event_times: np.ndarray, t_lo: float, t_hi: float):
    """All (event index, unit index, time relative to event) with ``t_lo <= rel < t_hi`` seconds."""
    t, u = merged_times(rec)
    lo = np.searchsorted(t, event_times + t_lo, side="left")
    hi = np.searchsorted(t, event_times + t_hi, side="left")
    g, ev = concat_ranges(lo, hi, owners=True)
    return ev, u[g], t[g] - event_times[ev]


def psth(rec, event_times, window: tuple[float, float] = (-0.05, 0.2), bin_ms: float = 1.0) -> PSTH:
    """PSTH of every unit around ``event_times`` (s): ``window`` (s, relative) in ``bin_ms`` ms bins.

    Bins start at ``window[0]``; a spike at relative time ``r`` goes to bin ``floor((r - window[0]) /
    bin)`` with the core rounding rule. Events may overlap; each event counts its own spikes. Events
    whose window runs outside the recording (``t_start``-``t_stop`` s) are left out with a
    ``RuntimeWarning`` (``n_events`` counts those kept), so the rates near the ends are not diluted.
    """
    event_times = np.asarray(event_times, dtype=np.float64).ravel()
    w0, w1 = float(window[0]), float(window[1])
    if not w1 > w0:
        raise ValueError(f"window must be (start, stop) seconds with stop > start, got {window}")
    n_bins = n_bins_for(w0, w1, bin_ms)
    event_times = event_times[_recorded_windows(rec, event_times, w0, w1, "psth")]
    ev, u, rel = _spikes_around(rec, event_times, w0, w1)
    b = bin_index((rel - w0) / (bin_ms / 1000.0))
    keep = (b >= 0) & (b < n_bins)
    counts = np.bincount(b[keep] * rec.n_units + u[keep], minlength=n_bins * rec.n_units)
    edges = w0 + np.arange(n_bins + 1) * bin_ms / 1000.0
    return PSTH(edges, counts.reshape(n_bins, rec.n_units), len(event_times), rec.unit_ids)


def first_spike_latencies(rec, event_times, window: tuple[float, float] = EVOKED_WINDOW) -> np.ndarray:
    """``[E, N]`` latency (s) of each unit's first spike inside ``window`` after each event; NaN if none."""
    event_times = np.asarray(event_times, dtype=np.float64).ravel()
    ev, u, rel = _spikes_around(rec, event_times, float(window[0]), float(window[1]))
    out = np.full((len(event_times), rec.n_units), np.inf)
    np.minimum.at(out, (ev, u), rel)
    out[np.isinf(out)] = np.nan
    return out


@dataclass(frozen=True)
class EvokedResponses:
    """Responses per stimulus group (a stimulated electrode, or electrode x amplitude) x unit.

    ``electrodes`` [G] and ``amplitudes`` [G] (NaN when not grouped by amplitude) label the rows,
    ``unit_ids`` [N] the columns. ``n_events`` [G]: pulses in each group. ``response_probability``
    [G, N]: fraction of pulses followed by at least one spike of the unit inside ``window``.
    ``median_latency_s`` / ``mean_latency_s`` [G, N]: first-spike latency (s after pulse onset) over
    the pulses with a response, NaN where the unit never responded (``n_responses`` == 0).
    ``window`` (s) is the counting window; ``amplitude_unit`` that of the stimulation table.
    """

    electrodes: np.ndarray
    amplitudes: np.ndarray
    unit_ids: np.ndarray
    n_events: np.ndarray
    n_responses: np.ndarray
    response_probability: np.ndarray
    median_latency_s: np.ndarray
    mean_latency_s: np.ndarray
    window: tuple[float, float]
    amplitude_unit: str = "uA"

    def to_dict(self) -> dict:
        """JSON-serialisable dict of all fields."""
        return {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in self.__dict__.items()}

    def __str__(self) -> str:
        lines = [f"Evoked responses in {self.window[0] * 1e3:g}-{self.window[1] * 1e3:g} ms after the pulse "
                 f"({len(self.electrodes)} stimulus groups x {len(self.unit_ids)} units)"]
        for g in range(len(self.electrodes)):
            amp = "" if np.isnan(self.amplitudes[g]) else f" @ {self.amplitudes[g]:g} {self.amplitude_unit}"
            p = self.response_probability[g]
            best = int(np.nanargmax(p)) if np.any(np.isfinite(p)) else 0
            lines.append(f"  electrode {self.electrodes[g]}{amp}: {self.n_events[g]} pulses, mean P(response) "
                         f"{np.nanmean(p):.3f}, best unit {self.unit_ids[best]} P={p[best]:.3f}")
        return "\n".join(lines)


def _recorded_windows(rec, event_times: np.ndarray, w0: float, w1: float, what: str) -> np.ndarray:
    """Mask of the events whose window (``w0``-``w1`` s around them) lies inside the recording: an
    event whose window runs past its ends would count as unanswered although nothing was recorded.
    Warns when some are left out; raises when none is left."""
    tol = 1e-9 * max(1.0, abs(rec.t_start), abs(rec.t_stop))     # trials that end exactly at the window's end
    inside = (event_times + w0 >= rec.t_start - tol) & (event_times + w1 <= rec.t_stop + tol)
    if len(inside) and not inside.any():
        raise ValueError(f"{what}: no event's window ({w0 * 1e3:g}-{w1 * 1e3:g} ms around it) lies inside "
                         f"the recording ({rec.t_start:g}-{rec.t_stop:g} s)")
    if not inside.all():
        warnings.warn(f"{what}: {int((~inside).sum())} of {len(inside)} events left out: their window "
                      f"({w0 * 1e3:g}-{w1 * 1e3:g} ms around the event) runs outside the recording "
                      f"({rec.t_start:g}-{rec.t_stop:g} s)", RuntimeWarning, stacklevel=3)
    return inside


def evoked_responses(rec, window: tuple[float, float] = EVOKED_WINDOW, by_amplitude: bool = False,
                     stim=None) -> EvokedResponses:
    """Response probability and first-spike latency per stimulated electrode x unit.

    ``window`` (s after pulse onset) excludes the stimulation artefact: default 10 ms to 200 ms.
    ``by_amplitude=True`` splits each electrode's pulses by amplitude (rows electrode x amplitude).
    ``stim`` overrides ``rec.stim``. Raises ``ValueError`` if there are no stimulation events.
    Pulses whose window runs outside the recording (``t_start``-``t_stop`` s; e.g. the last pulses of
    a recording cut short) are left out with a ``RuntimeWarning``: their responses were not recorded.
    """
    stim = rec.stim if stim is None else stim
    if len(stim) == 0:
        raise ValueError("evoked_responses: the recording has no stimulation events (rec.stim is empty)")
    w0, w1 = float(window[0]), float(window[1])
    if not (0 <= w0 < w1):
        raise ValueError(f"window must be (start, stop) seconds after the pulse with 0 <= start < stop, got {window}")
    stim = stim.take(np.flatnonzero(_recorded_windows(rec, stim.time, w0, w1, "evoked_responses")))
    lat = first_spike_latencies(rec, stim.time, (w0, w1))        # [events, N]
    amp_key = stim.amplitude if by_amplitude else np.zeros(len(stim))
    keys, group = np.unique(np.stack([stim.electrode.astype(float), amp_key], axis=1), axis=0, return_inverse=True)
    group = group.ravel()
    g_n = len(keys)
    n_events = np.bincount(group, minlength=g_n)
    responded = np.isfinite(lat)
    n_resp = np.zeros((g_n, rec.n_units), np.int64)
    np.add.at(n_resp, group, responded.astype(np.int64))
    median = np.full((g_n, rec.n_units), np.nan)
    mean = np.full((g_n, rec.n_units), np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns: units that never responded
        for g in range(g_n):  # one vectorised reduction per stimulus group (there are few groups)
            median[g] = np.nanmedian(lat[group == g], axis=0)
            mean[g] = np.nanmean(lat[group == g], axis=0)
    return EvokedResponses(electrodes=keys[:, 0].astype(np.int64),
                           amplitudes=keys[:, 1] if by_amplitude else np.full(g_n, np.nan),
                           unit_ids=rec.unit_ids, n_events=n_events, n_responses=n_resp,
                           response_probability=n_resp / n_events[:, None], median_latency_s=median,
                           mean_latency_s=mean, window=(w0, w1), amplitude_unit=stim.amplitude_unit)



def _median_standard_error(x: np.ndarray):
    """Distribution-free standard error of the median of ``x``: half the span of its order-statistic
    68 % confidence interval (ranks ``n/2 -+ sqrt(n)/2``); None for fewer than 4 values."""
    n = x.size
    if n < 4:
        return None
    xs = np.sort(x)
    half = math.sqrt(n) / 2.0
    # 1-based ranks n/2 - sqrt(n)/2 and n/2 + sqrt(n)/2 + 1, as 0-based indices
    lo, hi = max(int(round(n / 2.0 - half)) - 1, 0), min(int(round(n / 2.0 + half)), n - 1)
    return round(float(xs[hi] - xs[lo]) / 2.0, 3)


def pearson_r(a, b) -> float:
    """Pearson r of two arrays (flattened) over the entries finite in both; NaN with fewer than two such
    entries or when either side is constant there."""
    a, b = np.ravel(a).astype(float), np.ravel(b).astype(float)
    ok = np.isfinite(a) & np.isfinite(b)
    if ok.sum() < 2 or a[ok].std() == 0 or b[ok].std() == 0:
        return float("nan")
    return float(np.corrcoef(a[ok], b[ok])[0, 1])


def evoked_agreement(p_ref, lat_ref_s, p_pred, lat_pred_s, reliable_p: float = RELIABLE_P) -> dict:
    """How well predicted evoked responses agree with reference ones, over (condition, unit) pairs.

    Parameters
    ----------
    p_ref, p_pred : array
        Response probabilities (same shape, e.g. ``[groups, units]`` of :class:`EvokedResponses`).
    lat_ref_s, lat_pred_s : array
        Median first-spike latencies (s), NaN where a unit never responded.
    reliable_p : float
        Pairs with ``p_ref >= reliable_p`` (and a finite reference latency) are the reliable ones.

    Returns
    -------
    dict
        ``response_probability_r`` (Pearson r over all pairs; NaN when either side is constant),
        ``latency_median_abs_err_ms`` (median |latency error| in ms over the reliable pairs the
        prediction responds in; None when there are none), ``latency_median_abs_err_se_ms`` (its
        standard error in ms, distribution-free: half the span between the order statistics
        ``n/2 -+ sqrt(n)/2`` of the errors, the median's 68 % confidence interval; None with fewer
        than 4 pairs), ``probability_mean_abs_err``, ``n_pairs``, ``n_latency_pairs`` and
        ``latency_coverage`` (their share of the reliable pairs).
    """
    p_ref, p_pred = np.ravel(p_ref).astype(float), np.ravel(p_pred).astype(float)
    l_ref, l_pred = np.ravel(lat_ref_s).astype(float), np.ravel(lat_pred_s).astype(float)
    if not (p_ref.shape == p_pred.shape == l_ref.shape == l_pred.shape):
        raise ValueError(f"evoked_agreement: shapes differ: {p_ref.shape}, {p_pred.shape}, {l_ref.shape}, "
                         f"{l_pred.shape}")
    ok = np.isfinite(p_ref) & np.isfinite(p_pred)
    r = pearson_r(p_ref, p_pred)
    reliable = ok & (p_ref >= reliable_p) & np.isfinite(l_ref)
    both = reliable & np.isfinite(l_pred)
    err = np.abs(l_pred[both] - l_ref[both]) * 1e3
    return {"response_probability_r": round(r, 4),
            "latency_median_abs_err_ms": round(float(np.median(err)), 3) if err.size else None,
            "latency_median_abs_err_se_ms": _median_standard_error(err),
            "probability_mean_abs_err": round(float(np.mean(np.abs(p_pred[ok] - p_ref[ok]))), 4) if ok.any() else None,
            "n_pairs": int(ok.sum()), "n_latency_pairs": int(both.sum()),
            "latency_coverage": round(float(both.sum() / max(reliable.sum(), 1)), 3)}
