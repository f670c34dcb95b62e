"""Binned spike tensors: ``SpikeRecording`` <-> ``[T, N]`` torch tensors of counts.

Binning rule (the same as elephant's ``BinnedSpikeTrain``): bins of ``bin_ms`` milliseconds start
at ``t0``; spike ``t`` falls in bin ``floor((t - t0) / bin)``, except that a value within ``1e-8`` of
the next integer is rounded up, so a spike placed exactly at a bin start by floating-point
arithmetic (``t0 + k * bin``) lands in bin ``k``. The number of bins is ``(t1 - t0) / bin`` rounded
the same way; spikes at or after the end of the last bin are dropped.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterator

import numpy as np
import torch

if TYPE_CHECKING:
    from .recording import SpikeRecording

TOLERANCE = 1e-8


def bin_index(values: np.ndarray, tolerance: float = TOLERANCE) -> np.ndarray:
    """``floor(values)`` where values within ``tolerance`` below an integer round up (int64)."""
    values = np.asarray(values, dtype=np.float64)
    idx = np.floor(values)
    idx[(values - idx) > 1.0 - tolerance] += 1
    return idx.astype(np.int64)


def n_bins_for(t0: float, t1: float, bin_ms: float) -> int:
    """Number of whole ``bin_ms`` bins in ``[t0, t1)`` seconds."""
    if bin_ms <= 0 or not np.isfinite(bin_ms):
        raise ValueError(f"bin_ms must be a positive number of milliseconds, got {bin_ms}")
    return int(bin_index(np.array([(t1 - t0) / (bin_ms / 1000.0)]))[0])


def _window(rec: "SpikeRecording", t0, t1) -> tuple[float, float]:
    t0 = rec.t_start if t0 is None else float(t0)
    t1 = rec.t_stop if t1 is None else float(t1)
    if t1 < t0:
        raise ValueError(f"t1 ({t1} s) must not be before t0 ({t0} s)")
    return t0, t1


def binned_coordinates(rec: "SpikeRecording", bin_ms: float, t0: float, t1: float,
                       lo: int | None = None, hi: int | None = None) -> tuple[np.ndarray, np.ndarray, int]:
    """(bin index, unit index) of each spike inside ``[t0, t1)`` and the number of bins.

    ``lo``/``hi`` restrict to a range of spikes in the flat ``times`` array for speed; indices are
    relative to ``t0``.
    """
    n_bins = n_bins_for(t0, t1, bin_ms)
    times = rec.times
    unit = rec.unit_index
    if lo is not None:
        times, unit = times[lo:hi], unit[lo:hi]
    b = bin_index((times - t0) / (bin_ms / 1000.0))
    keep = (b >= 0) & (b < n_bins)
    return b[keep], unit[keep], n_bins


def _dtype(dtype) -> torch.dtype:
    return torch.float32 if dtype is None else dtype


def to_dense(rec: "SpikeRecording", bin_ms: float = 1.0, t0=None, t1=None, dtype=None,
             device=None) -> torch.Tensor:
    """Dense ``[T, N]`` counts tensor (see module docstring for the binning rule)."""
    t0, t1 = _window(rec, t0, t1)
    b, u, n_bins = binned_coordinates(rec, bin_ms, t0, t1)
    flat = np.bincount(b * rec.n_units + u, minlength=n_bins * rec.n_units) if rec.n_units else np.zeros(0)
    out = torch.from_numpy(flat.reshape(n_bins, rec.n_units).astype(np.float64))
    return out.to(dtype=_dtype(dtype), device=device)


def to_sparse(rec: "SpikeRecording", bin_ms: float = 1.0, t0=None, t1=None, dtype=None,
              device=None) -> torch.Tensor:
    """Coalesced sparse COO ``[T, N]`` counts tensor; memory scales with the number of spikes."""
    t0, t1 = _window(rec, t0, t1)
    b, u, n_bins = binned_coordinates(rec, bin_ms, t0, t1)
    idx = torch.from_numpy(np.stack([b, u]))
    vals = torch.ones(len(b), dtype=_dtype(dtype))
    return torch.sparse_coo_tensor(idx, vals, (n_bins, rec.n_units), device=device,
                                   check_invariants=False).coalesce()


def iter_chunks(rec: "SpikeRecording", bin_ms: float = 1.0, chunk_s: float = 60.0, dtype=None,
                device=None) -> Iterator[tuple[float, torch.Tensor]]:
    """Yield ``(chunk_t0, [T_chunk, N])`` dense chunks of whole bins covering the window.

    Chunks hold ``round(chunk_s * 1000 / bin_ms)`` bins (the last may be shorter); their
    concatenation equals :func:`to_dense` over the whole window. Only one chunk is dense at a time.
    """
    if chunk_s <= 0:
        raise ValueError(f"chunk_s must be positive seconds, got {chunk_s}")
    t0, t1 = rec.t_start, rec.t_stop
    bin_s = bin_ms / 1000.0
    total = n_bins_for(t0, t1, bin_ms)
    per = max(1, int(round(chunk_s / bin_s)))
    # Spike bin indices relative to t0 for the whole window, computed unit by unit lazily would
    # cost Python loops; instead sort spikes by time once (int32 bins keep this small).
    b_all = bin_index((rec.times - t0) / bin_s)
    order = np.argsort(b_all, kind="stable")
    b_sorted = b_all[order]
    u_sorted = rec.unit_index[order]
    del b_all, order
    n = rec.n_units
    for start in range(0, total, per):
        stop = min(start + per, total)
        lo, hi = np.searchsorted(b_sorted, [start, stop])
        flat = np.bincount((b_sorted[lo:hi] - start) * n + u_sorted[lo:hi], minlength=(stop - start) * n)
        chunk = torch.from_numpy(flat.reshape(stop - start, n)).to(dtype=_dtype(dtype), device=device)
        yield t0 + start * bin_s, chunk


def recording_arrays_from_counts(counts, bin_ms: float, t_start: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Flat ``(times, offsets)`` from a ``[T, N]`` count tensor/array; spikes sit at bin starts (s)."""
    if isinstance(counts, torch.Tensor):
        if counts.is_sparse:
            counts = counts.to_dense()
        counts = counts.detach().cpu().numpy()
    counts = np.asarray(counts)
    if counts.ndim != 2:
        raise ValueError(f"expected a [T, N] count tensor, got shape {counts.shape}")
    if counts.size and (np.any(counts < 0) or np.any(counts != np.round(counts))):
        raise ValueError("counts must be non-negative integers")
    if bin_ms <= 0:
        raise ValueError(f"bin_ms must be positive, got {bin_ms}")
    c = counts.astype(np.int64).T  # [N, T]: unit-major so spikes come out grouped by unit
    unit, b = np.nonzero(c)
    reps = c[unit, b]
    times = t_start + np.repeat(b, reps) * (bin_ms / 1000.0)
    per_unit = c.sum(axis=1)
    offsets = np.concatenate([[0], np.cumsum(per_unit)]).astype(np.int64)
    return times.astype(np.float64), offsets
