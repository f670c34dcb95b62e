"""Differentiable summary statistics of spike trains (Bellec et al. 2021 style).

All statistics take counts ``s`` shaped ``[L, B, N]`` (``L`` steps of ``dt_ms``, ``B``
trajectories, ``N`` units) and are computed the same way on data (cut into windows of ``L``
steps) and on simulations, so the two sides use one estimator:

* ``rate``: mean rate per unit (Hz);
* ``corr``: ``[N, N]`` Pearson correlations of counts in ``bin_ms`` bins (means removed per
  trajectory), the quantity :func:`organoid_sim.stats.compare` checks;
* ``pop_acov``: autocovariance of the population count in ``bin_ms`` bins at lags
  ``0..n_lags``, divided by the squared mean population count: its lag 0 measures how bursty
  the population is, its decay how long bursts last.
"""

from __future__ import annotations

import torch

__all__ = ["summary_stats", "data_windows", "stats_loss"]


def summary_stats(s: torch.Tensor, dt_ms: float, bin_ms: float = 20.0, n_lags: int = 25) -> dict:
    """Summary statistics of ``s`` (``[L, B, N]``), differentiable in ``s``."""
    L, B, N = s.shape
    nb = max(1, int(round(bin_ms / dt_ms)))
    nbins = L // nb
    c = s[: nbins * nb].reshape(nbins, nb, B, N).sum(1)               # [nbins, B, N]
    rate = s.mean((0, 1)) / (dt_ms / 1000.0)
    cc = c - c.mean(0, keepdim=True)
    cov = torch.einsum("tbi,tbj->ij", cc, cc) / (nbins * B)
    sd = torch.sqrt(torch.diagonal(cov).clamp_min(1e-9))
    corr = cov / (sd[:, None] * sd[None, :])
    pop = c.sum(-1)                                                    # [nbins, B]
    mean_pop = pop.mean().clamp_min(1e-6)
    pc = pop - pop.mean(0, keepdim=True)
    K = min(n_lags, nbins - 1)
    acov = torch.stack([(pc[: nbins - k] * pc[k:]).mean() for k in range(K + 1)])
    return {"rate": rate, "corr": corr, "pop_acov": acov / mean_pop ** 2}


def data_windows(counts: torch.Tensor, L: int) -> torch.Tensor:
    """Recorded counts ``[T, N]`` cut into ``floor(T / L)`` windows: ``[L, W, N]``."""
    W = counts.shape[0] // L
    if W < 1:
        raise ValueError(f"recording too short for refinement windows of {L} steps ({counts.shape[0]} steps)")
    return counts[: W * L].reshape(W, L, -1).transpose(0, 1)


def stats_loss(sim: dict, target: dict, weights: dict | None = None) -> tuple[torch.Tensor, dict]:
    """Weighted squared differences of the statistics; returns the total and each part (floats)."""
    w = {"rate": 1.0, "corr": 1.0, "pop_acov": 3.0, **(weights or {})}
    n = target["corr"].shape[0]
    off = ~torch.eye(n, dtype=torch.bool, device=target["corr"].device)
    parts = {
        "rate": ((torch.log(sim["rate"] + 0.05) - torch.log(target["rate"] + 0.05)) ** 2).mean(),
        "corr": ((sim["corr"] - target["corr"])[off] ** 2).mean() * 10.0 if n > 1 else sim["rate"].sum() * 0,
        "pop_acov": ((torch.log1p(sim["pop_acov"].clamp_min(-0.5)) - torch.log1p(target["pop_acov"].clamp_min(-0.5))) ** 2).mean(),
    }
    total = sum(w[k] * v for k, v in parts.items())
    return total, {k: float(v.detach()) for k, v in parts.items()}
