"""Helpers shared by the statistics modules: flagging units with too few spikes, binning."""

from __future__ import annotations

import warnings

import numpy as np

from ..tensor import binned_coordinates


class InsufficientSpikesWarning(UserWarning):
    """Some units had too few spikes for a statistic; their value is NaN and they are named."""


def flag_units(rec, bad: np.ndarray, what: str, need: str, warn: bool) -> None:
    """Warn (naming the units) that ``what`` is undefined for the units in the boolean mask ``bad``."""
    if warn and np.any(bad):
        ids = np.asarray(rec.unit_ids)[bad]
        shown = ", ".join(map(str, ids[:8].tolist())) + (" ..." if len(ids) > 8 else "")
        warnings.warn(f"{what}: {int(bad.sum())} of {rec.n_units} units have {need}; their value is NaN "
                      f"(units {shown})", InsufficientSpikesWarning, stacklevel=3)


def binned_counts(rec, bin_ms: float, t0: float | None = None, t1: float | None = None) -> np.ndarray:
    """``[T, N]`` int64 spike counts in ``bin_ms`` bins over ``[t0, t1)`` s (the core binning rule)."""
    t0 = rec.t_start if t0 is None else float(t0)
    t1 = rec.t_stop if t1 is None else float(t1)
    b, u, n_bins = binned_coordinates(rec, bin_ms, t0, t1)
    flat = np.bincount(b * rec.n_units + u, minlength=n_bins * rec.n_units)
    return flat.reshape(n_bins, rec.n_units)


def population_counts(rec, bin_ms: float, t0: float | None = None, t1: float | None = None) -> np.ndarray:
    """``[T]`` int64 spike counts of all units together (no ``[T, N]`` array: fine bins stay cheap)."""
    t0 = rec.t_start if t0 is None else float(t0)
    t1 = rec.t_stop if t1 is None else float(t1)
    b, _, n_bins = binned_coordinates(rec, bin_ms, t0, t1)
    return np.bincount(b, minlength=n_bins)


def concat_ranges(lo: np.ndarray, hi: np.ndarray, owners: bool = False):
    """Concatenated ``arange(lo[k], hi[k])`` over all k (empty ranges allowed), without a Python loop.

    With ``owners=True`` also returns the k of each index.
    """
    length = np.maximum(hi - lo, 0)
    start = np.cumsum(length) - length
    idx = np.arange(int(length.sum())) + np.repeat(lo - start, length)
    return (idx, np.repeat(np.arange(len(lo)), length)) if owners else idx


def merged_times(rec) -> tuple[np.ndarray, np.ndarray]:
    """All spikes in time order: ``(times_s, unit_index)`` (stable, so ties keep unit order)."""
    order = np.argsort(rec.times, kind="stable")
    return rec.times[order], rec.unit_index[order]


def ks_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sample Kolmogorov-Smirnov statistic (scipy), NaN when either sample is empty."""
    from scipy.stats import ks_2samp

    a, b = np.asarray(a, float), np.asarray(b, float)
    a, b = a[np.isfinite(a)], b[np.isfinite(b)]
    if len(a) == 0 or len(b) == 0:
        return float("nan")
    return float(ks_2samp(a, b).statistic)
