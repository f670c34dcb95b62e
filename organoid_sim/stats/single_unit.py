"""Per-unit statistics: firing rate, inter-spike intervals, CV, LV, Fano factor, burstiness index.

Definitions follow elephant (``elephant.statistics``) so values agree to rounding:
``cv = std(ISI) / mean(ISI)`` (ddof 0, as ``elephant.statistics.cv``), ``LV`` of Shinomoto et al.
(2003) as ``elephant.statistics.lv``, Fano factor ``var(counts) / mean(counts)`` (ddof 0, as
``elephant.statistics.fanofactor``) of the counts in consecutive windows. Units with too few spikes
get NaN *and* a :class:`~organoid_sim.stats.InsufficientSpikesWarning` naming them (``warn=False``
silences it when the caller reports the count itself, as :func:`describe` does).
"""

from __future__ import annotations

import numpy as np

from ._common import binned_counts, flag_units

__all__ = ["firing_rates", "isi", "isi_per_unit", "cv_isi", "lv", "fano_factor", "burstiness_index"]


def firing_rates(rec) -> np.ndarray:
    """Mean firing rate of each unit in Hz over the recording window ``[t_start, t_stop]``.

    Parameters
    ----------
    rec : SpikeRecording
        The spikes.

    Returns
    -------
    np.ndarray
        Rate of each unit (Hz).
    """
    return rec.firing_rates()


def isi(rec) -> tuple[np.ndarray, np.ndarray]:
    """All inter-spike intervals (s) and the unit index of each, without Python loops over units.

    Returns ``(intervals_s, unit_index)``; unit ``i`` contributes ``spike_counts[i] - 1`` intervals.

    Parameters
    ----------
    rec : SpikeRecording
        The spikes.

    Returns
    -------
    intervals_s : np.ndarray
        The intervals (s).
    unit_index : np.ndarray
        The unit of each.
    """
    t, u = rec.times, rec.unit_index
    d = np.diff(t)
    same = u[1:] == u[:-1]  # drop the gap between the last spike of one unit and the first of the next
    return d[same], u[1:][same]


def isi_per_unit(rec) -> list[np.ndarray]:
    """Inter-spike intervals (s) of each unit, in unit order.

    Parameters
    ----------
    rec : SpikeRecording
        The spikes.

    Returns
    -------
    list of np.ndarray
        Intervals (s) per unit.
    """
    return [np.diff(st) for st in rec.spike_times]


def _per_unit_intervals(rec, min_spikes: int, what: str, warn: bool):
    d, u = isi(rec)
    ok = rec.spike_counts >= min_spikes
    flag_units(rec, ~ok, what, f"fewer than {min_spikes} spikes", warn)
    return d, u, ok


def cv_isi(rec, min_spikes: int = 3, warn: bool = True) -> np.ndarray:
    """Coefficient of variation of the inter-spike intervals of each unit (dimensionless).

    ``std / mean`` with ddof 0 (``elephant.statistics.cv``). NaN (and a warning) for units with fewer
    than ``min_spikes`` spikes (at least 3, i.e. two intervals, is needed for a spread).

    Parameters
    ----------
    rec : SpikeRecording
        The spikes.
    min_spikes : int
        Fewest spikes for a value.
    warn : bool
        Warn naming the units left undefined.

    Returns
    -------
    np.ndarray
        CV per unit.
    """
    d, u, ok = _per_unit_intervals(rec, min_spikes, "ISI CV", warn)
    n = np.bincount(u, minlength=rec.n_units).astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.bincount(u, weights=d, minlength=rec.n_units) / n
        var = np.bincount(u, weights=(d - mean[u]) ** 2, minlength=rec.n_units) / n
        out = np.sqrt(var) / mean
    out[~ok] = np.nan
    return out


def lv(rec, min_spikes: int = 3, warn: bool = True) -> np.ndarray:
    """Local variation LV (Shinomoto et al. 2003) of each unit's ISIs (dimensionless; 1 for Poisson).

    ``3 / (n-1) * sum(((I_k - I_{k+1}) / (I_k + I_{k+1}))^2)`` as ``elephant.statistics.lv``; NaN
    (and a warning) for units with fewer than ``min_spikes`` (>= 3) spikes.

    Parameters
    ----------
    rec : SpikeRecording
        The spikes.
    min_spikes : int
        Fewest spikes for a value.
    warn : bool
        Warn naming the units left undefined.

    Returns
    -------
    np.ndarray
        LV per unit.
    """
    d, u, ok = _per_unit_intervals(rec, max(min_spikes, 3), "LV", warn)
    same = u[1:] == u[:-1]
    with np.errstate(invalid="ignore", divide="ignore"):
        r = ((d[1:] - d[:-1]) / (d[:-1] + d[1:]))[same] ** 2
        uu = u[1:][same]
        out = 3.0 * np.bincount(uu, weights=r, minlength=rec.n_units) / np.bincount(uu, minlength=rec.n_units)
    out[~ok] = np.nan
    return out


def fano_factor(rec, bin_ms: float = 1000.0, min_spikes: int = 1, warn: bool = True) -> np.ndarray:
    """Fano factor ``var / mean`` (ddof 0) of each unit's spike counts in consecutive ``bin_ms`` windows.

    Windows of ``bin_ms`` milliseconds tile ``[t_start, t_stop)`` (a partial last window is dropped),
    binned with the core rule (elephant's). 1 for a Poisson process. NaN (and a warning) for units
    with fewer than ``min_spikes`` spikes in the windows.

    Parameters
    ----------
    rec : SpikeRecording
        The spikes.
    bin_ms : float
        Window (ms).
    min_spikes : int
        Fewest spikes for a value.
    warn : bool
        Warn naming the units left undefined.

    Returns
    -------
    np.ndarray
        Fano factor per unit.
    """
    c = binned_counts(rec, bin_ms).astype(float)
    if c.shape[0] < 2:
        raise ValueError(f"fano_factor needs at least two {bin_ms} ms windows; the recording lasts "
                         f"{rec.duration:.3f} s")
    ok = c.sum(axis=0) >= max(min_spikes, 1)
    flag_units(rec, ~ok, "Fano factor", f"fewer than {max(min_spikes, 1)} spikes", warn)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = c.var(axis=0) / c.mean(axis=0)
    out[~ok] = np.nan
    return out


def burstiness_index(rec, bin_ms: float = 1000.0, top_fraction: float = 0.15, min_spikes: int = 10,
                     warn: bool = True, population: bool = False):
    """Burstiness index of Wagenaar et al. (2005): ``(f - top) / (1 - top)``.

    ``f`` is the fraction of spikes that fall in the ``top_fraction`` (default 15 %) of ``bin_ms``
    windows holding the most spikes: 0 for perfectly regular activity, towards 1 when all spikes sit
    in a few windows. Per unit (array; NaN plus a warning below ``min_spikes``), or for the summed
    population activity with ``population=True`` (float).

    Parameters
    ----------
    rec : SpikeRecording
        The spikes.
    bin_ms : float
        Window (ms).
    top_fraction : float
        Fraction of the fullest windows.
    min_spikes : int
        Fewest spikes for a value.
    warn : bool
        Warn naming the units left undefined.
    population : bool
        One index of the summed population activity instead.

    Returns
    -------
    np.ndarray or float
        Per unit, or the population's.
    """
    if not 0 < top_fraction < 1:
        raise ValueError(f"top_fraction must lie in (0, 1), got {top_fraction}")
    c = binned_counts(rec, bin_ms)
    if population:
        c = c.sum(axis=1, keepdims=True)
    k = max(1, int(round(top_fraction * c.shape[0])))
    top = -np.sort(-c, axis=0)[:k].sum(axis=0)
    total = c.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = (top / total - top_fraction) / (1.0 - top_fraction)
    if population:
        return float(out[0]) if total[0] >= min_spikes else float("nan")
    ok = total >= min_spikes
    flag_units(rec, ~ok, "burstiness index", f"fewer than {min_spikes} spikes", warn)
    out[~ok] = np.nan
    return out
