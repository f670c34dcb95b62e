"""Pairwise statistics: correlation of binned counts, STTC, cross-correlograms, jitter significance.

* :func:`correlation_matrix` -- Pearson correlation of binned spike counts, all pairs at once from a
  sparse count matrix with exact integer sums (``elephant.spike_train_correlation.correlation_coefficient``).
* :func:`sttc` -- spike time tiling coefficient (Cutts & Eglen 2014) for all pairs, computed from the
  time-sorted spikes with ``searchsorted`` (no per-pair work), identical to
  ``elephant.spike_train_correlation.spike_time_tiling_coefficient``.
* :func:`cross_correlogram` -- counts of spike pairs per lag bin
  (``elephant.spike_train_correlation.cross_correlation_histogram``).
* :func:`functional_connectivity` -- STTC or correlation with p-values from spike-time jitter
  surrogates.
"""

from __future__ import annotations

import numpy as np
from scipy import sparse
from tqdm.auto import tqdm

from ..tensor import binned_coordinates
from ._common import concat_ranges, flag_units

__all__ = ["correlation_matrix", "population_coupling", "population_coupling_of_counts", "sttc", "tiling_fraction",
           "cross_correlogram", "functional_connectivity",
           "jitter"]


def _sparse_counts(rec, bin_ms: float, binary: bool):
    b, u, n_bins = binned_coordinates(rec, bin_ms, rec.t_start, rec.t_stop)
    x = sparse.coo_matrix((np.ones(len(b), np.int64), (b, u)), shape=(n_bins, rec.n_units)).tocsr()
    x.sum_duplicates()
    if binary:
        x.data[:] = 1
    return x, n_bins


def _count_cov(rec, bin_ms: float, binary: bool) -> np.ndarray:
    """``n_bins^2`` times the covariance matrix of the units' counts in ``bin_ms`` ms bins:
    ``n * sum(xy) - sum(x) sum(y)``, an exact integer (no cancellation error for weak correlations)."""
    x, n_bins = _sparse_counts(rec, bin_ms, binary)
    s = np.asarray(x.sum(axis=0)).ravel().astype(np.int64)
    return n_bins * (x.T @ x).toarray().astype(np.int64) - np.outer(s, s)


def correlation_matrix(rec, bin_ms: float = 10.0, binary: bool = False, warn: bool = True) -> np.ndarray:
    """``N x N`` Pearson correlation of the units' spike counts in ``bin_ms`` ms bins.

    Bins tile ``[t_start, t_stop)`` with the core binning rule (elephant's), so the result equals
    ``elephant.spike_train_correlation.correlation_coefficient(BinnedSpikeTrain(..., bin_size=bin_ms))``.
    ``binary=True`` clips counts to 0/1 first. Memory scales with the number of spikes, not of bins:
    the products are exact integer sums of a sparse count matrix. Units without spikes (zero variance)
    get NaN rows and a warning naming them.

    Parameters
    ----------
    rec : SpikeRecording
        The spikes.
    bin_ms : float
        Bin (ms).
    binary : bool
        Clip counts to 0/1 first.
    warn : bool
        Warn naming the units left undefined.

    Returns
    -------
    np.ndarray
        ``N x N`` correlations (NaN rows for silent units).
    """
    if rec.n_units == 0:
        return np.zeros((0, 0))
    cov = _count_cov(rec, bin_ms, binary)
    var = np.diag(cov).astype(float)
    flag_units(rec, var <= 0, "correlation_matrix", "no spikes or constant counts (zero variance)", warn)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = cov / np.sqrt(np.outer(var, var))
    out[var <= 0, :] = np.nan
    out[:, var <= 0] = np.nan
    return out


def population_coupling(rec, bin_ms: float = 10.0) -> np.ndarray:
    """Each unit's population coupling: the Pearson correlation of its spike counts in ``bin_ms``
    ms bins with the summed counts of all the other units (bins as :func:`correlation_matrix`).

    In a culture whose activity is dominated by network bursts the correlation matrix is close to
    the outer product of these couplings ("choristers" and "soloists", Okun et al. 2015, Nature
    521:511), so they say how each unit takes part in the shared activity. NaN for a unit without
    spikes or when the others have none.

    Parameters
    ----------
    rec : SpikeRecording
        The spikes.
    bin_ms : float
        Bin (ms).

    Returns
    -------
    np.ndarray
        Per-unit coupling, in [-1, 1].
    """
    if rec.n_units == 0:
        return np.zeros(0)
    return _coupling_from_cov(_count_cov(rec, bin_ms, False))


def population_coupling_of_counts(counts) -> np.ndarray:
    """:func:`population_coupling` of a ``[bins, N]`` count array (any binning).

    Parameters
    ----------
    counts : array-like
        ``[bins, N]`` spike counts per bin (a bin of any width, in the caller's units).

    Returns
    -------
    np.ndarray
        Per-unit coupling, in [-1, 1] (NaN for a unit whose counts are constant).
    """
    x = np.asarray(counts, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"counts must be a [bins, units] array, got shape {x.shape}")
    x = x - x.mean(0)
    return _coupling_from_cov(x.T @ x)


def _coupling_from_cov(cov: np.ndarray) -> np.ndarray:
    """Coupling of each unit with the sum of the others from their (scaled) covariance matrix:
    ``cov(x_i, S - x_i) / sqrt(var(x_i) var(S - x_i))`` with ``S`` the sum of all units."""
    cov = np.asarray(cov, dtype=np.float64)
    diag, row = np.diag(cov), cov.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = (row - diag) / np.sqrt(diag * (cov.sum() - 2.0 * row + diag))
    out[~(diag > 0)] = np.nan
    return out


def tiling_fraction(rec, dt: float = 0.01) -> np.ndarray:
    """Fraction ``T`` of the window ``[t_start, t_stop]`` lying within ``dt`` s of a spike, per unit.

    Computed as in Cutts & Eglen's C code (and elephant): each ISI contributes ``min(ISI, 2 dt)``, the
    first and last spikes add at most ``dt`` towards the window edges. NaN for units without spikes.

    Parameters
    ----------
    rec : SpikeRecording
        The spikes.
    dt : float
        Window (s).

    Returns
    -------
    np.ndarray
        Per-unit fraction of the window (NaN for silent units).
    """
    d = np.diff(rec.times)
    u = rec.unit_index
    same = u[1:] == u[:-1]
    d, du = d[same], u[1:][same]
    n = rec.n_units
    overlap = np.bincount(du[d <= 2 * dt], weights=d[d <= 2 * dt], minlength=n).astype(float)
    non_overlap = np.bincount(du[d > 2 * dt], minlength=n) * 2 * dt
    counts = rec.spike_counts
    has = counts > 0
    padded = np.append(rec.times, np.nan)  # index n_spikes reads NaN for units without spikes
    first = np.where(has, padded[rec.offsets[:-1]], np.nan)
    last = np.where(has, padded[np.maximum(rec.offsets[1:] - 1, 0)], np.nan)
    head, tail = first - rec.t_start, rec.t_stop - last
    with np.errstate(invalid="ignore"):
        overlap += np.where(head < dt, head, 0.0) + np.where(tail < dt, tail, 0.0)
        non_overlap += np.where(head < dt, 0.0, dt) + np.where(tail < dt, 0.0, dt)
        out = (overlap + non_overlap) / (rec.t_stop - rec.t_start)
    out[~has] = np.nan
    return out


def _count_before(values: np.ndarray, keys: np.ndarray, side: str) -> np.ndarray:
    """``np.searchsorted(values, keys, side)`` for long, (nearly) sorted ``keys``.

    One stable sort of the concatenation (a merge of two sorted runs for numpy's timsort) instead
    of a binary search per key, which misses the cache at every step on millions of spike times.
    Ties: keys placed first count only smaller values (``left``), placed last also equal ones.
    """
    k = len(keys)
    both = np.concatenate([keys, values]) if side == "left" else np.concatenate([values, keys])
    order = np.argsort(both, kind="stable")
    is_value = order >= k if side == "left" else order < len(values)
    before = np.cumsum(is_value) - is_value
    out = np.empty(k, dtype=np.int64)
    key_slots = ~is_value
    out[order[key_slots] - (0 if side == "left" else len(values))] = before[key_slots]
    return out


def _inner(t_all: np.ndarray, lo: np.ndarray, hi: np.ndarray, low: np.ndarray, high: np.ndarray):
    """Narrow ``[lo, hi)`` to the values within ``[low, high]`` (positions of ``t_all``).

    The bounds differ from the widened ones by a few ulps, so positions rarely move: check the end
    points and search again only where they do.
    """
    n = len(t_all)
    lo_in, hi_in = lo.copy(), hi.copy()
    move = (lo < n) & (t_all[np.minimum(lo, n - 1)] < low)
    lo_in[move] = np.searchsorted(t_all, low[move], side="left")
    move = (hi > 0) & (t_all[np.maximum(hi - 1, 0)] > high)
    hi_in[move] = np.searchsorted(t_all, high[move], side="right")
    return lo_in, hi_in


def _tiled_counts(rec, dt: float, rtol: float, progress) -> np.ndarray:
    """``C[i, j]``: number of spikes of unit ``j`` within the window of some spike of unit ``i``.

    A spike ``t`` of unit ``j`` is within the window of a spike ``s`` of unit ``i`` when
    ``|t - s| <= dt + rtol * |s|`` (numpy.isclose's bound, as elephant evaluates it). Window bounds
    of every spike are located in the time-sorted spikes of all units at once; only candidates
    within a few ulps of a window edge are tested with the exact float expression.
    """
    n = rec.n_units
    order = np.argsort(rec.times, kind="stable")
    t_all = rec.times[order]
    u_all = rec.unit_index[order].astype(np.int16 if n < 2**15 else np.int32)  # smaller: faster gathers
    where = np.empty(len(order), dtype=np.int64)
    where[order] = np.arange(len(order))            # position in t_all of each spike (unit order)
    slack = 16 * np.finfo(float).eps * max(1.0, abs(rec.t_start), abs(rec.t_stop))  # >> rounding of the bounds
    w_all = dt + rtol * np.abs(t_all)
    lo_all = _count_before(t_all, t_all - (w_all + slack), "left")    # widened: a few spikes may
    hi_all = _count_before(t_all, t_all + (w_all + slack), "right")   # lie just outside
    w_in = np.maximum(w_all - slack, 0)
    lo_in_all, hi_in_all = _inner(t_all, lo_all, hi_all, t_all - w_in, t_all + w_in)  # surely inside
    del w_in
    out = np.zeros((n, n), dtype=np.int64)
    for i in tqdm(range(n), desc="STTC", unit="unit", disable=not progress):
        pos = where[rec.offsets[i]:rec.offsets[i + 1]]
        if len(pos) == 0:
            continue
        ti, w = t_all[pos], w_all[pos]
        lo, hi, lo_in, hi_in = lo_all[pos], hi_all[pos], lo_in_all[pos], hi_in_all[pos]
        # Windows of consecutive spikes overlap: clip each range to start where the previous ended,
        # so every candidate is counted once, owned by the first window that reaches it.
        lo = np.maximum(lo, np.concatenate([[0], hi[:-1]]))
        counts = np.bincount(u_all[concat_ranges(lo, hi)], minlength=n)
        # Edge candidates (between the widened and the sure bounds; usually none): exact test
        # against the owning spike k and the next one (nearer spikes cannot exist by construction).
        left, k_left = concat_ranges(lo, np.minimum(lo_in, hi), owners=True)
        right, k_right = concat_ranges(np.maximum(hi_in, lo), hi, owners=True)
        edge, k = np.concatenate([left, right]), np.concatenate([k_left, k_right])
        if len(edge):
            k1 = np.minimum(k + 1, len(ti) - 1)
            tj = t_all[edge]
            far = (np.abs(tj - ti[k]) > w[k]) & (np.abs(tj - ti[k1]) > w[k1])
            counts -= np.bincount(u_all[edge[far]], minlength=n)
        out[i] = counts
    return out


def sttc(rec, dt: float = 0.01, *, rtol: float = 1e-5, warn: bool = True, progress: bool | None = None) -> np.ndarray:
    """Spike time tiling coefficient (Cutts & Eglen 2014) of all unit pairs: ``N x N`` in unit order.

    ``dt`` is the synchrony window in seconds. The window is ``|t_a - t_b| <= dt + rtol * |t_b|``,
    which with the default ``rtol=1e-5`` reproduces elephant 1.2's
    ``spike_time_tiling_coefficient`` exactly (it tests proximity with ``numpy.isclose``, whose
    default relative tolerance widens the window by 10 us per second of absolute spike time);
    ``rtol=0`` gives the window of the original definition. All trains share the recording window
    ``[t_start, t_stop]``. The diagonal is 1. Units without spikes get NaN rows and a warning.

    Cost: one merge of all spikes with their window bounds, then per unit vectorised work
    proportional to the number of spikes near its spikes. ``progress`` shows a tqdm bar over units
    (default: only from 500 units on).

    Parameters
    ----------
    rec : SpikeRecording
        The spikes.
    dt : float
        Synchrony window (s).
    rtol : float
        Relative widening of the window per second of spike time (elephant's ``isclose``).
    warn : bool
        Warn naming the units left undefined.
    progress : bool, optional
        Show a progress bar (default: from 500 units on).

    Returns
    -------
    np.ndarray
        ``N x N`` STTC (diagonal 1; NaN rows for silent units).
    """
    if dt <= 0:
        raise ValueError(f"dt must be > 0 seconds, got {dt}")
    if rtol < 0:
        raise ValueError(f"rtol must be >= 0, got {rtol}")
    n = rec.n_units
    counts = rec.spike_counts.astype(float)
    empty = counts == 0
    flag_units(rec, empty, "sttc", "no spikes", warn)
    c = _tiled_counts(rec, dt, rtol, n >= 500 if progress is None else progress)
    t = tiling_fraction(rec, dt)
    with np.errstate(invalid="ignore", divide="ignore"):
        pa = c / counts[None, :]        # fraction of j's spikes near i   (elephant's PA for (i, j))
        pb = c.T / counts[:, None]      # fraction of i's spikes near j   (PB)
        ta = np.broadcast_to(t[None, :], (n, n))  # TA: tiled fraction of j
        tb = np.broadcast_to(t[:, None], (n, n))  # TB: tiled fraction of i
        left = np.where(pa * tb == 1, 0.5, 0.5 * (pa - tb) / (1 - pa * tb))
        right = np.where(pb * ta == 1, 0.5, 0.5 * (pb - ta) / (1 - pb * ta))
        out = left + right
    out[empty, :] = np.nan
    out[:, empty] = np.nan
    return out


def cross_correlogram(rec, unit_a, unit_b, bin_ms: float = 1.0, max_lag_ms: float = 50.0,
                      by_index: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Cross-correlogram of two units: ``(lags_ms, counts)``.

    ``counts[k]`` is the number of spike pairs with ``bin(b) - bin(a) == lags[k] / bin_ms`` (b after a
    for positive lags), bins of ``bin_ms`` ms over the recording window, lags from ``-max_lag_ms`` to
    ``+max_lag_ms``. Equals ``elephant...cross_correlation_histogram(binned_a, binned_b,
    window=[-K, K])`` with ``K = max_lag_ms / bin_ms``. Units by id (or by position with
    ``by_index=True``).

    Parameters
    ----------
    rec : SpikeRecording
        The spikes.
    unit_a, unit_b : int or str
        The two units (ids, or positions with ``by_index=True``).
    bin_ms : float
        Bin (ms).
    max_lag_ms : float
        Largest lag (ms).
    by_index : bool
        Take ``unit_a``/``unit_b`` as positions.

    Returns
    -------
    lags_ms : np.ndarray
        Lags (ms).
    counts : np.ndarray
        Spike pairs per lag.
    """
    k = int(round(max_lag_ms / bin_ms))
    if k < 0 or not np.isclose(k * bin_ms, max_lag_ms):
        raise ValueError(f"max_lag_ms ({max_lag_ms}) must be a non-negative multiple of bin_ms ({bin_ms})")
    ia, ib = (int(unit_a), int(unit_b)) if by_index else (int(rec.index_of(unit_a)[0]), int(rec.index_of(unit_b)[0]))
    ba = _unit_bins(rec, ia, bin_ms)
    bb = _unit_bins(rec, ib, bin_ms)
    lo = np.searchsorted(bb, ba - k, side="left")
    hi = np.searchsorted(bb, ba + k, side="right")
    idx, owner = concat_ranges(lo, hi, owners=True)
    lag = bb[idx] - ba[owner]
    counts = np.bincount(lag + k, minlength=2 * k + 1)
    return np.arange(-k, k + 1) * bin_ms, counts


def _unit_bins(rec, i: int, bin_ms: float) -> np.ndarray:
    b, u, _ = binned_coordinates(rec, bin_ms, rec.t_start, rec.t_stop, rec.offsets[i], rec.offsets[i + 1])
    return b


def jitter(rec, jitter_ms: float = 25.0, seed: int = 0):
    """Surrogate recording: each spike moved uniformly within ``+-jitter_ms`` ms (reflected at the edges).

    Keeps each unit's spike count and slow rate profile while destroying fine timing between units.

    Parameters
    ----------
    rec : SpikeRecording
        The spikes.
    jitter_ms : float
        Largest shift (ms).
    seed : int
        Seed of the shifts.

    Returns
    -------
    SpikeRecording
    """
    rng = np.random.default_rng(seed)
    t = rec.times + rng.uniform(-jitter_ms, jitter_ms, rec.n_spikes) / 1000.0
    t = np.abs(t - rec.t_start) + rec.t_start                    # reflect at t_start
    t = rec.t_stop - np.abs(rec.t_stop - t)                      # reflect at t_stop
    return rec.__class__.from_pairs(t, rec.unit_index, unit_ids=np.arange(rec.n_units), t_start=rec.t_start,
                                    t_stop=rec.t_stop).replace(unit_ids=rec.unit_ids,
                                                               electrode_ids=rec.electrode_ids,
                                                               positions=rec.positions, electrodes=rec.electrodes)


def functional_connectivity(rec, measure: str = "sttc", dt: float = 0.01, bin_ms: float = 10.0,
                            n_surrogates: int = 100, jitter_ms: float = 25.0, alpha: float = 0.01,
                            seed: int = 0, progress: bool = True) -> dict:
    """Pairwise coupling with significance from jitter surrogates.

    ``measure`` is ``"sttc"`` (window ``dt`` s) or ``"correlation"`` (``bin_ms`` bins). Each surrogate
    jitters every spike by up to ``jitter_ms`` ms (:func:`jitter`, seeds ``seed .. seed+n-1``). Returns
    a dict with ``value`` (N x N), ``p_value`` (one-sided, ``(1 + #surrogates >= value) / (1 + n)``),
    ``significant`` (``p_value < alpha``, diagonal False) and ``surrogate_mean``.

    Parameters
    ----------
    rec : SpikeRecording
        The spikes.
    measure : str
        ``"sttc"`` or ``"correlation"``.
    dt : float
        STTC window (s).
    bin_ms : float
        Correlation bin (ms).
    n_surrogates : int
        Jitter surrogates.
    jitter_ms : float
        Largest jitter (ms).
    alpha : float
        Significance level.
    seed : int
        Seed of the first surrogate.
    progress : bool
        Show a progress bar.

    Returns
    -------
    dict
        ``value``, ``p_value``, ``significant``, ``surrogate_mean`` (``N x N`` each).
    """
    funcs = {"sttc": lambda r: sttc(r, dt, warn=False),
             "correlation": lambda r: correlation_matrix(r, bin_ms, warn=False)}
    if measure not in funcs:
        raise ValueError(f"measure must be one of {sorted(funcs)}, got {measure!r}")
    f = funcs[measure]
    value = f(rec)
    exceed = np.zeros_like(value)
    total = np.zeros_like(value)
    for s in tqdm(range(n_surrogates), desc="jitter surrogates", disable=not progress):
        sv = f(jitter(rec, jitter_ms, seed + s))
        exceed += sv >= value
        total += sv
    p = (1.0 + exceed) / (1.0 + n_surrogates)
    p[~np.isfinite(value)] = np.nan
    sig = (p < alpha) & ~np.eye(rec.n_units, dtype=bool)
    return {"value": value, "p_value": p, "significant": sig, "surrogate_mean": total / max(n_surrogates, 1)}
