"""Teacher-forced features of the spiking network: its state variables as filters of recorded spikes.

Given the recorded spike counts ``s`` (``[T, N]``), every state variable of
:func:`organoid_sim.nn.neurons.lif_step` except the depression ``x`` is a linear,
time-invariant filter of ``s``, and ``x`` only matters at the bins where the presynaptic neuron
spikes. So the whole teacher-forced trajectory is computed without a Python loop over time:

* exponential filters with ``scipy.signal.lfilter`` (a compiled IIR filter, exact);
* the Tsodyks-Markram resources at spike bins, event by event: between spikes ``x`` recovers
  as ``1 - (1 - x+) alpha_rec^(bins since the last spike)``.

The features are ``F1_k = lag0_m(lag1_syn_k(x * s))`` (synaptic drive of type ``k`` seen by
the membrane), ``F2 = lag1_m(s)`` (own resets) and ``F3 = lag1_a(s)`` (adaptation), with

    eta = log(r0 dt) + (b - theta + sum_k W_k F1_k - theta F2 - beta F3) / delta_u.
"""

from __future__ import annotations

import numpy as np
from scipy.signal import lfilter

__all__ = ["exp_filter", "depression_at_spikes", "teacher_features"]


def exp_filter(u: np.ndarray, alpha, lag: int) -> np.ndarray:
    """Causal exponential filter along axis 0.

    ``lag=1``: ``y_t = alpha y_{t-1} + u_{t-1}``; ``lag=0``: ``y_t = alpha y_{t-1} + (1 - alpha) u_t``.
    ``alpha`` is a scalar or one value per column.

    Parameters
    ----------
    u : np.ndarray
        ``[T, ...]`` input.
    alpha : float or np.ndarray
        Decay per step, scalar or per column.
    lag : int
        1 (input of the previous step) or 0 (this step's, weighted ``1 - alpha``).

    Returns
    -------
    np.ndarray
        The filtered input, shaped like ``u``.
    """
    n = u.shape[1]
    alpha = np.broadcast_to(np.asarray(alpha, dtype=np.float64), (n,))
    # lfilter runs along contiguous rows of the transposed input (several times faster than along
    # axis 0, same arithmetic per column); the result is the transposed view, shaped like ``u``
    rows = np.ascontiguousarray(np.asarray(u, dtype=np.float64).T)
    groups: dict = {}
    for j, a in enumerate(alpha.tolist()):
        groups.setdefault(a, []).append(j)

    def filtered(a: float, x: np.ndarray) -> np.ndarray:
        return lfilter([0.0, 1.0] if lag == 1 else [1.0 - a], [1.0, -a], x, axis=-1)

    if len(groups) == 1:   # one decay for every column: no gather, no second output array
        return filtered(next(iter(groups)), rows).T
    out = np.empty_like(rows)
    for a, cols in groups.items():
        out[cols] = filtered(a, rows[cols])
    return out.T


def depression_at_spikes(counts: np.ndarray, alpha_rec, use) -> np.ndarray:
    """Resources ``x`` just before each bin's spikes, zero where no spike (``[T, N]``).

    ``x`` starts full (1); a bin with ``c`` spikes leaves ``x (1 - U)^c``; between spikes ``x``
    recovers by ``1 - x <- alpha_rec (1 - x)`` per bin.

    Parameters
    ----------
    counts : np.ndarray
        ``[T, N]`` spike counts.
    alpha_rec : float or np.ndarray
        Recovery decay per step (per unit or scalar).
    use : float or np.ndarray
        Utilisation ``U`` (per unit or scalar).

    Returns
    -------
    np.ndarray
        ``[T, N]`` resources before each spiking bin.
    """
    T, n = counts.shape
    alpha_rec = np.broadcast_to(np.asarray(alpha_rec, np.float64), (n,))
    use = np.broadcast_to(np.asarray(use, np.float64), (n,))
    out = np.zeros((T, n))
    for j in range(n):
        bins = np.flatnonzero(counts[:, j])
        if len(bins) == 0:
            continue
        c = counts[bins, j]
        gaps = np.diff(bins, prepend=bins[0]).astype(np.float64)
        rec = alpha_rec[j] ** gaps
        keep = (1.0 - use[j]) ** c
        xs = np.empty(len(bins))
        x = 1.0
        # one pass over this unit's spikes (event-driven: cost ~ number of spikes, not bins)
        for k in range(len(bins)):
            x = 1.0 - rec[k] * (1.0 - x)
            xs[k] = x
            x = x * keep[k]
        out[bins, j] = xs
    return out


def teacher_features(counts: np.ndarray, dt_ms: float, tau_mem_ms: float, tau_syn_ms, tau_adapt_ms,
                     tau_rec_ms, use) -> dict[str, np.ndarray]:
    """Features ``F1`` (``[n_syn, T, N]``), ``F2``, ``F3`` (``[T, N]``) of recorded counts (see module doc).

    Time constants in ms (``tau_adapt_ms``, ``tau_rec_ms``, ``use`` per unit or scalar).

    Parameters
    ----------
    counts : np.ndarray
        ``[T, N]`` recorded counts.
    dt_ms, tau_mem_ms : float
        Step and membrane time constant (ms).
    tau_syn_ms : sequence of float
        Synaptic time constants (ms), one per synapse type.
    tau_adapt_ms, tau_rec_ms : float or np.ndarray
        Adaptation and depression recovery time constants (ms).
    use : float or np.ndarray
        Utilisation ``U``.

    Returns
    -------
    dict
        ``F1`` (synaptic drives), ``F2`` (resets), ``F3`` (adaptation traces).
    """
    counts = np.asfortranarray(counts, dtype=np.float64)   # columns contiguous, as exp_filter reads them
    dt = float(dt_ms)
    a_m = np.exp(-dt / tau_mem_ms)
    x = depression_at_spikes(counts, np.exp(-dt / np.asarray(tau_rec_ms, np.float64)), use)
    e = np.asfortranarray(x * counts)
    f1 = np.stack([exp_filter(exp_filter(e, np.exp(-dt / ts), 1), a_m, 0) for ts in np.atleast_1d(tau_syn_ms)])
    f2 = exp_filter(counts, a_m, 1)
    f3 = exp_filter(counts, np.exp(-dt / np.asarray(tau_adapt_ms, np.float64)), 1)
    return {"F1": f1, "F2": f2, "F3": f3}
