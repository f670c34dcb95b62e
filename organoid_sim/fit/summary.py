"""Differentiable summary statistics of spike trains (Bellec et al. 2021 style).

All statistics take counts ``s`` shaped ``[L, B, N]`` (``L`` steps of ``dt_ms``, ``B``
trajectories, ``N`` units) and are computed the same way on data (cut into windows of ``L``
steps) and on simulations, so the two sides use one estimator:

* ``rate``: mean rate per unit (Hz);
* ``corr``: ``[N, N]`` Pearson correlations of counts in ``bin_ms`` bins (means removed per
  trajectory), the quantity :func:`organoid_sim.stats.compare` checks;
* ``pop_acov``: autocovariance of the population count in ``bin_ms`` bins at lags
  ``0..n_lags``, divided by the squared mean population count: its lag 0 measures how bursty
  the population is, its decay how long bursts last;
* ``burst_persistence`` (when ``burst = (window_steps, n_spikes)`` is given): with
  ``h(t) = sigmoid(n(t) - n_spikes + 1/2)``, a soft indicator that the population fired at least
  ``n_spikes`` spikes in the ``window_steps`` steps ending at ``t`` (the ISI_N criterion of
  :func:`organoid_sim.stats.detect_bursts`), the probability ``E[h(t) h(t+k)] / E[h(t)]`` of
  still being inside a burst ``k = 1..persistence_lags`` steps later: for an isolated burst of
  ``D`` steps it is ``(D - k) / D``, so it measures how long bursts stay above the detector's
  threshold, which the 10 ms autocovariance leaves loose.
"""

from __future__ import annotations

import torch

__all__ = ["summary_stats", "burst_persistence", "data_windows", "stats_loss", "loss_weights", "LOSS_WEIGHTS"]

#: default weights of the refinement loss's parts (``stats_loss``); chosen by looking at the fit
#: benchmark on wells D1, A5 and F2 of the DIV12 file, see docs/benchmarks.md ("How the default was chosen")
LOSS_WEIGHTS = {"rate": 1.0, "corr": 2.5, "pop_acov": 3.0, "burst_persistence": 6.0}


def summary_stats(s: torch.Tensor, dt_ms: float, bin_ms: float = 20.0, n_lags: int = 25,
                  burst: tuple[int, float] | None = None, persistence_lags: int = 12) -> dict:
    """Summary statistics of ``s`` (``[L, B, N]``), differentiable in ``s``; ``burst`` and
    ``persistence_lags`` (steps) configure ``burst_persistence`` (module docstring).

    Parameters
    ----------
    s : torch.Tensor
        Spike counts ``[L, B, N]`` (steps, trajectories, units).
    dt_ms : float
        Step (ms).
    bin_ms : float
        Bin (ms) of rates and correlations.
    n_lags : int
        Lags (bins) of the population-rate autocovariance.
    burst : tuple of (int, float), optional
        ``(window steps, n_spikes)`` of the burst detector.
    persistence_lags : int
        Lags (steps) of the burst persistence.

    Returns
    -------
    dict
        ``rate``, ``corr``, ``pop_acov`` and, with ``burst``, ``burst_persistence`` tensors.
    """
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
    out = {"rate": rate, "corr": corr, "pop_acov": acov / mean_pop ** 2}
    if burst is not None:
        out["burst_persistence"] = burst_persistence(s.sum(-1), int(burst[0]), float(burst[1]), persistence_lags)
    return out


def burst_persistence(pop: torch.Tensor, window_steps: int, n_spikes: float, n_lags: int) -> torch.Tensor:
    """``E[h(t) h(t+k)] / E[h(t)]`` for ``k = 1..n_lags`` of the soft burst indicator ``h``
    (module docstring); ``pop``: population counts ``[L, B]``.

    Parameters
    ----------
    pop : torch.Tensor
        Population counts ``[L, B]``.
    window_steps : int
        ISI_N window of the detector (steps).
    n_spikes : float
        Spikes the window must hold.
    n_lags : int
        Lags (steps).

    Returns
    -------
    torch.Tensor
        ``[n_lags]`` persistence.
    """
    c = torch.cumsum(torch.nn.functional.pad(pop, (0, 0, 1, 0)), 0)
    moving = c[window_steps:] - c[:-window_steps]                     # spikes in each window
    h = torch.sigmoid(moving - n_spikes + 0.5)
    T = h.shape[0]
    p_in = h.mean().clamp_min(1e-6)
    return torch.stack([(h[: T - k] * h[k:]).mean() for k in range(1, min(n_lags, T - 1) + 1)]) / p_in


def data_windows(counts: torch.Tensor, L: int) -> torch.Tensor:
    """Recorded counts ``[T, N]`` cut into ``floor(T / L)`` windows: ``[L, W, N]``.

    Parameters
    ----------
    counts : torch.Tensor
        ``[T, N]`` counts.
    L : int
        Window length (steps).

    Returns
    -------
    torch.Tensor
        ``[L, W, N]`` windows.
    """
    W = counts.shape[0] // L
    if W < 1:
        raise ValueError(f"recording too short for refinement windows of {L} steps ({counts.shape[0]} steps)")
    return counts[: W * L].reshape(W, L, -1).transpose(0, 1)


def loss_weights(weights: dict | None = None) -> dict:
    """:data:`LOSS_WEIGHTS` updated by ``weights`` (the weights :func:`stats_loss` uses).

    Parameters
    ----------
    weights : dict, optional
        Weights replacing the defaults.

    Returns
    -------
    dict
        Term name -> weight.
    """
    return {**LOSS_WEIGHTS, **(weights or {})}


def stats_loss(sim: dict, target: dict, weights: dict | None = None) -> tuple[torch.Tensor, dict]:
    """Weighted squared differences of the statistics (``weights`` update :data:`LOSS_WEIGHTS`;
    ``burst_persistence`` counts when ``target`` has it); returns the total and each part (floats).

    Parameters
    ----------
    sim, target : dict
        Statistics of :func:`summary_stats` (simulated, recorded).
    weights : dict, optional
        Weights replacing those of :data:`LOSS_WEIGHTS`.

    Returns
    -------
    total : torch.Tensor
        The weighted loss.
    parts : dict
        Each term as a float.
    """
    w = loss_weights(weights)
    n = target["corr"].shape[0]
    off = ~torch.eye(n, dtype=torch.bool, device=target["corr"].device)
    parts = {
        "rate": ((torch.log(sim["rate"] + 0.05) - torch.log(target["rate"] + 0.05)) ** 2).mean(),
        "corr": ((sim["corr"] - target["corr"])[off] ** 2).mean() * 10.0 if n > 1 else sim["rate"].sum() * 0,
        "pop_acov": ((torch.log1p(sim["pop_acov"].clamp_min(-0.5)) - torch.log1p(target["pop_acov"].clamp_min(-0.5))) ** 2).mean(),
    }
    if "burst_persistence" in target:
        parts["burst_persistence"] = ((sim["burst_persistence"] - target["burst_persistence"]) ** 2).mean() * 10.0
    total = sum(w[k] * v for k, v in parts.items())
    return total, {k: float(v.detach()) for k, v in parts.items()}
