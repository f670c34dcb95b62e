"""The CPU fast path of free-running simulation: :func:`organoid_sim.models.neurons.lif_step`'s
equations in NumPy, without autograd, with event-driven synaptic propagation.

Why NumPy: at a few hundred neurons per step the cost of a step is the per-operation overhead,
which is several times lower for NumPy than for torch; and only the columns of the weight
matrix of neurons that fired are touched (a few per step in cultured networks), instead of a
dense matrix product. Same equations, same inverse-CDF sampling from one uniform per neuron and
step (a NumPy generator seeded with ``seed``), so a run is reproducible on the CPU. Gradients
(refinement) and CUDA use the torch path.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from .neurons import NetworkState, StepParams

__all__ = ["run_numpy"]


def _np(t) -> np.ndarray:
    return t.detach().cpu().numpy().astype(np.float64) if isinstance(t, torch.Tensor) else np.asarray(t, np.float64)


def _more(s: np.ndarray, hit: np.ndarray, eta: np.ndarray, v: np.ndarray, max_count: int) -> np.ndarray:
    """Add the 2nd..``max_count``-th spikes of the bins that spiked: ``[u < P(y >= k)]`` for Poisson counts."""
    idx = np.nonzero(hit)
    m = np.exp(np.minimum(eta[idx], math.log(50.0)))
    u = -np.expm1(-np.exp(v[idx]))  # the uniform back from log(-log(1 - u))
    term = np.exp(-m)
    cdf = term.copy()
    extra = np.zeros_like(m)
    for k in range(1, max_count):
        term = term * m / k
        cdf = cdf + term
        extra += u < np.clip(1.0 - cdf, 0.0, 1.0)
    s[idx] += extra
    return s


def run_numpy(p: StepParams, state: NetworkState, n_steps: int, *, seed: int, ext=None, max_count: int = 4,
              burn_in_steps: int = 0, record: bool = True, chunk_steps: int = 4096, progress_bar=None,
              uniforms=None):
    """Simulate ``burn_in_steps + n_steps`` steps from ``state``; returns ``(events, state, n_saturated)``
    like :meth:`SpikingNetworkModel.run` (``events`` rows ``(step, trajectory, neuron, count)``).

    ``uniforms(shape)`` replaces the seeded generator's ``random`` (tests feed both paths the same numbers).
    """
    W = _np(p.weight)                                   # [k, post, pre]
    WT = np.ascontiguousarray(W.transpose(0, 2, 1))     # [k, pre, post]: rows of presynaptic neurons
    k_syn = W.shape[0]
    a_syn = _np(p.alpha_syn).reshape(-1, 1, 1)
    a_m, a_a, a_rec = p.alpha_m, _np(p.alpha_a), _np(p.alpha_rec)
    l1u, theta, beta, bias, inv_du = (_np(v) for v in (p.log1m_u, p.theta, p.beta, p.bias, p.inv_delta_u))
    w, I, a, x, s = (_np(getattr(state, f)) for f in ("w", "I", "a", "x", "s"))
    B, n = w.shape
    I = np.array(np.broadcast_to(I, (k_syn, B, n)))
    spiking, y_prev = bool(s.any()), 1.0 - x
    ext_np = None if ext is None else _np(ext)
    draw = uniforms or np.random.default_rng(int(seed)).random
    out, n_sat = [], 0
    total = burn_in_steps + n_steps
    const = p.log_r0_dt + (bias - theta) * inv_du
    # Work in escape-noise units (everything times 1/delta_u, synaptic gain folded into the
    # weights): eta = const + ws - As costs two operations per step instead of six.
    betas = np.maximum(beta * inv_du, 1e-12)
    thetas = theta * inv_du
    WTs = WT * ((1.0 - a_m) * inv_du)[None, None, :]
    ws, As, Is = w * inv_du, a * betas, I * ((1.0 - a_m) * inv_du)
    ext_s = None if ext_np is None else ext_np * inv_du
    eta = np.empty((B, n))
    y = 1.0 - x  # used resources: decays to 0 between spikes (one multiply per step)
    for c0 in range(0, total, chunk_steps):
        c1 = min(c0 + chunk_steps, total)
        # spike test without an exp per step: u < 1 - exp(-exp(eta))  <=>  eta > log(-log(1 - u))
        v = np.log(-np.log1p(-draw((c1 - c0, B, n))))
        rec = np.zeros((c1 - c0, B, n), np.uint8) if record else None
        for j in range(c1 - c0):
            t = c0 + j - burn_in_steps
            Is *= a_syn
            ws *= a_m
            As *= a_a
            y *= a_rec
            if spiking and B == 1:
                # event-driven: touch only the neurons that fired and their outgoing weights
                idx = np.flatnonzero(s[0])
                si, xi = s[0, idx], 1.0 - y_prev[0, idx]
                Is[:, 0, :] += np.tensordot(xi * si, WTs[:, idx, :], axes=([0], [1]))
                ws[0, idx] -= thetas[idx] * si
                As[0, idx] += betas[idx] * si
                y[0, idx] += a_rec[idx] * xi * (1.0 - np.exp(si * l1u[idx]))
            elif spiking:
                Is += np.matmul((1.0 - y_prev) * s, WTs)  # [k, B, post]
                ws -= thetas * s
                As += betas * s
                y += a_rec * (1.0 - y_prev) * (1.0 - np.exp(s * l1u))
            ws += Is.sum(0) if k_syn > 1 else Is[0]
            if ext_s is not None and t >= 0:
                ws += ext_s[t]
            np.subtract(ws, As, out=eta)
            eta += const
            hit = eta > v[j]
            spiking = bool(hit.any())
            if spiking:
                y_prev = y.copy()
                s = hit.astype(np.float64)
                if max_count > 1:
                    s = _more(s, hit, eta, v[j], max_count)
                if record:
                    rec[j] = s
        if record:
            lo = max(0, burn_in_steps - c0)
            nz = np.argwhere(rec[lo:])
            if len(nz):
                cnt = rec[lo:][nz[:, 0], nz[:, 1], nz[:, 2]].astype(np.int64)
                n_sat += int((cnt >= max_count).sum())
                nz[:, 0] += c0 + lo - burn_in_steps
                out.append(np.concatenate([nz, cnt[:, None]], 1))
        if progress_bar is not None:
            progress_bar.update(c1 - c0)
    if not spiking:
        s = np.zeros((B, n))
    dev, dt = state.w.device, state.w.dtype
    to = lambda v: torch.as_tensor(np.asarray(v, np.float32), device=dev, dtype=dt)  # noqa: E731
    w, a, I = ws / inv_du, As / betas, Is / ((1.0 - a_m) * inv_du)
    st = NetworkState(w=to(w), I=to(I), a=to(a), x=to(1.0 - y), s=to(s))
    events = (np.concatenate(out) if out else np.zeros((0, 4), np.int64)) if record else None
    return events, st, n_sat
