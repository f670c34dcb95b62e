"""Neuronal avalanches (Beggs & Plenz 2003): sizes, durations, power-law exponents, branching ratio.

Population spikes are binned at ``bin_ms`` (default: the mean inter-spike interval of the merged
population train, as Beggs & Plenz did); an avalanche is a run of non-empty bins bounded by empty
bins. Its size is the number of spikes in it, its duration the number of bins times the bin width.
Exponents are fitted by discrete maximum likelihood with the lower cut-off ``xmin`` chosen by the
Kolmogorov-Smirnov criterion (Clauset, Shalizi & Newman 2009, SIAM Rev. 51:661), with scipy's
Hurwitz zeta as normaliser, the exponent searched in ``(1, 6]``; an estimate that stops at either end
of that interval is no power-law fit (the tail falls faster, or slower, than any exponent allowed) and is
reported as not fitted (``PowerLawFit.fitted`` False, NaN in :func:`~organoid_sim.stats.describe`).
For a critical branching process the size exponent is 3/2 and the
duration exponent 2. The branching ratio is the mean of ``n(t+1) / n(t)`` over the bins of all
avalanches (1 at criticality).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import zeta

from ._common import merged_times, population_counts

__all__ = ["Avalanches", "avalanches", "PowerLawFit", "fit_power_law", "branching_ratio"]


@dataclass(frozen=True)
class PowerLawFit:
    """Discrete power law ``P(x) ~ x^-alpha`` for ``x >= xmin``: exponent, cut-off, tail size, KS distance.

    ``fitted`` is False when the maximum-likelihood exponent stopped at a bound of its search
    interval :data:`ALPHA_BOUNDS` (then ``alpha`` is that bound, not an estimate)."""

    alpha: float
    xmin: int
    n_tail: int
    ks: float
    fitted: bool = True

    def pmf(self, x: np.ndarray) -> np.ndarray:
        """Fitted probability of each integer ``x >= xmin`` (tail-normalised)."""
        x = np.asarray(x, dtype=float)
        return x ** -self.alpha / zeta(self.alpha, self.xmin)


#: search interval of the exponent; an estimate within ``_AT_BOUND`` of either end is "not fitted"
ALPHA_BOUNDS = (1.0001, 6.0)
_AT_BOUND = 1e-3


def _alpha_mle(x: np.ndarray, xmin: int) -> float:
    s = np.sum(np.log(x))
    n = len(x)
    res = minimize_scalar(lambda a: n * np.log(zeta(a, xmin)) + a * s, bounds=ALPHA_BOUNDS, method="bounded",
                          options={"xatol": 1e-6})
    return float(res.x)


def _at_bound(alpha: float) -> bool:
    return alpha <= ALPHA_BOUNDS[0] + _AT_BOUND or alpha >= ALPHA_BOUNDS[1] - _AT_BOUND


def _ks(x: np.ndarray, alpha: float, xmin: int) -> float:
    vals, counts = np.unique(x, return_counts=True)
    emp = np.cumsum(counts) / len(x)
    model = 1.0 - zeta(alpha, vals + 1) / zeta(alpha, xmin)  # P(X <= v)
    return float(np.max(np.abs(emp - model)))


def fit_power_law(x, xmin: int | None = None, min_tail: int = 50, max_candidates: int = 30) -> PowerLawFit:
    """Fit a discrete power law to positive integers ``x`` (sizes or durations in bins).

    With ``xmin=None`` the cut-off is the candidate (among the smallest distinct values, keeping at
    least ``min_tail`` samples in the tail) whose fit has the smallest KS distance. Raises
    ``ValueError`` with fewer than ``min_tail`` samples. Check ``fitted`` on the result: an exponent
    at a bound of :data:`ALPHA_BOUNDS` is no estimate.

    Parameters
    ----------
    x : array-like of int
        Positive values (bins or spikes).
    xmin : int, optional
        Lower cut-off; None: chosen by the smallest KS distance.
    min_tail : int
        Fewest samples kept above the cut-off.
    max_candidates : int
        Distinct values tried as the cut-off.

    Returns
    -------
    PowerLawFit
    """
    x = np.asarray(x)
    x = x[x >= 1].astype(np.int64)
    if len(x) < min_tail:
        raise ValueError(f"fit_power_law needs at least {min_tail} values >= 1, got {len(x)}")
    if xmin is not None:
        tail = x[x >= xmin]
        a = _alpha_mle(tail, xmin)
        return PowerLawFit(a, int(xmin), len(tail), _ks(tail, a, xmin), not _at_bound(a))
    best = None
    for cand in np.unique(x)[:max_candidates]:
        tail = x[x >= cand]
        if len(tail) < min_tail:
            break
        a = _alpha_mle(tail, int(cand))
        fit = PowerLawFit(a, int(cand), len(tail), _ks(tail, a, int(cand)), not _at_bound(a))
        if best is None or fit.ks < best.ks:
            best = fit
    return best


@dataclass(frozen=True)
class Avalanches:
    """Avalanches of one recording: ``sizes`` (spikes), ``durations_bins``, ``bin_s`` (bin width in s),
    ``start_s`` (start time of each avalanche), ``branching_ratio``, and the fits ``size_fit`` and
    ``duration_fit`` (None when there are too few avalanches to fit)."""

    sizes: np.ndarray
    durations_bins: np.ndarray
    start_s: np.ndarray
    bin_s: float
    branching_ratio: float
    size_fit: PowerLawFit | None
    duration_fit: PowerLawFit | None

    @property
    def durations_s(self) -> np.ndarray:
        """Avalanche durations in seconds."""
        return self.durations_bins * self.bin_s

    def __len__(self) -> int:
        return len(self.sizes)


def _runs_of_activity(counts: np.ndarray):
    active = counts > 0
    d = np.diff(np.concatenate([[0], active.astype(np.int8), [0]]))
    return np.flatnonzero(d == 1), np.flatnonzero(d == -1)


def branching_ratio(counts: np.ndarray) -> float:
    """Mean ``n(t+1) / n(t)`` over bins with ``n(t) > 0`` of a population count series (Beggs & Plenz).

    Parameters
    ----------
    counts : np.ndarray
        Population spike counts per bin.

    Returns
    -------
    float
        The branching ratio (NaN without active bins).
    """
    counts = np.asarray(counts, dtype=float)
    if len(counts) < 2:
        return float("nan")
    now, nxt = counts[:-1], counts[1:]
    m = now > 0
    return float(np.mean(nxt[m] / now[m])) if m.any() else float("nan")


def avalanches(rec, bin_ms: float | None = None, fit: bool = True, min_tail: int = 50) -> Avalanches:
    """Detect avalanches in the population activity and fit their size and duration distributions.

    ``bin_ms`` defaults to the mean inter-spike interval of the merged population train (ms).
    Avalanches touching the window edges are dropped (their extent is unknown).

    Parameters
    ----------
    rec : SpikeRecording
        The spikes.
    bin_ms : float, optional
        Bin (ms); default the mean inter-spike interval of the merged train.
    fit : bool
        Fit power laws to sizes and durations.
    min_tail : int
        Smallest tail a power-law fit keeps.

    Returns
    -------
    Avalanches
    """
    if bin_ms is None:
        t, _ = merged_times(rec)
        if len(t) < 2:
            raise ValueError("avalanches need at least two spikes to choose a bin width")
        bin_ms = float(np.mean(np.diff(t))) * 1000.0
        if bin_ms <= 0:
            raise ValueError("all spikes share one time: give bin_ms")
    c = population_counts(rec, bin_ms)
    start, stop = _runs_of_activity(c)
    edge = (start == 0) | (stop == len(c))
    start, stop = start[~edge], stop[~edge]
    cs = np.concatenate([[0], np.cumsum(c)])
    sizes = cs[stop] - cs[start]
    durations = stop - start
    size_fit = dur_fit = None
    if fit:
        try:
            size_fit = fit_power_law(sizes, min_tail=min_tail)
            dur_fit = fit_power_law(durations, min_tail=min_tail)
        except ValueError:
            pass  # too few avalanches: the fits stay None and describe() says so
    return Avalanches(sizes=sizes, durations_bins=durations, start_s=rec.t_start + start * bin_ms / 1000.0,
                      bin_s=bin_ms / 1000.0, branching_ratio=branching_ratio(c), size_fit=size_fit,
                      duration_fit=dur_fit)
