"""The compiled step loop (numba): many steps of :func:`organoid_sim.nn`'s ``lif_step`` per call.

Per step and trajectory:

1. the spikes of the last step travel along their neurons' outgoing CSR rows (event-driven: only
   neurons that fired are touched; ``e = x * s`` as in the torch step);
2. one pass over the neurons decays the synaptic currents, updates membrane, adaptation and
   depression (resets for the neurons that fired), forms ``eta`` and draws the escape noise.

Escape noise with the torch path's distribution at the cost of a compare: a neuron spikes when its
uniform ``u < P(y >= 1) = 1 - exp(-mu)``, ``mu = exp(eta') + m`` (``eta'`` saturated, ``m`` directly
evoked spikes). Since ``P(y >= 1) <= mu <= exp(eta) + m``, a cheap upper bound of ``exp(eta)`` rules
out almost every neuron: with ``t = eta log2(e)`` clamped to ``[-1022, 0]``, the float64 whose bits
are ``(t + 1023) 2^52`` is ``2^floor(t) (1 + frac(t))``, the chord of ``2^t`` over its unit interval
and so above it (Schraudolph's exponential, used here as a bound, not as an approximation). Only the
few neurons with ``u`` under the bound get the exact test (saturation, ``expm1``, the Poisson counts
up to ``max_count``), so the accepted spikes are exactly those of the exact inverse-CDF test and the
distribution is unchanged.

Random numbers: a SplitMix64 stream per trajectory (Steele, Lea & Flood 2014; passes BigCrush),
its state seeded from ``numpy.random.SeedSequence(seed)`` by the caller and carried between calls,
so a run is reproducible and independent of threads; 53-bit uniforms as in NumPy. Tests can feed
the uniforms instead (``has_uni``), which makes a run comparable draw for draw with the torch step.

Synaptic input trick: ``I_t = alpha * I_{t-1} + W e_{t-1}`` is computed as ``alpha * (I_{t-1} + (W /
alpha) e_{t-1})`` so the spikes can be added before the single decay-and-update pass; the weights
are stored divided by their type's ``alpha`` (see :mod:`organoid_sim.engine.simulator`).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

__all__ = ["run_chunk"]

_GAMMA = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_S30, _S27, _S31, _S11 = np.uint64(30), np.uint64(27), np.uint64(31), np.uint64(11)
_INV53 = 1.0 / 9007199254740992.0
_LOG2E = 1.4426950408889634
_TWO52 = 4503599627370496.0


@njit(cache=True, inline="always")
def _exp_bound(x):
    """An upper bound of ``exp(x)`` within a factor 1.09 for ``x`` in ``[-708, 0]`` (branch-free,
    so the neuron loop vectorises): 1 for ``x >= 0``, ``2^-1022`` below that range."""
    t = min(max(x * _LOG2E, -1022.0), 0.0)
    return np.int64((t + 1023.0) * _TWO52).view(np.float64) * 1.000001


@njit(cache=True, inline="always")
def _count(eta, mdir, u, has_sat, eta_max, max_count):
    """Exact inverse-CDF spike count for uniform ``u`` (as the torch observation's ``sample``)."""
    if has_sat:
        z = eta - eta_max
        eta = eta - (z if z > 20.0 else math.log1p(math.exp(z)))   # eta - softplus(eta - eta_max)
    mu = math.exp(eta) + mdir
    if max_count == 1:
        return 1 if u < -math.expm1(-mu) else 0
    if mu > 50.0:
        mu = 50.0
    term = math.exp(-mu)
    cdf = term
    c = 0
    for k in range(1, max_count + 1):
        p = 1.0 - cdf
        if p < 0.0:
            p = 0.0
        if not u < p:
            break
        c += 1
        term = term * mu / k
        cdf = cdf + term
    return c


@njit(cache=True, inline="always")
def _uniform(st, i):
    """The ``i``-th uniform (0-based) after stream position ``st``: SplitMix64 is counter-based, so
    the draws of a step are independent of each other and the loop over neurons vectorises."""
    z = st + _GAMMA * np.uint64(i + 1)
    z = (z ^ (z >> _S30)) * _M1
    z = (z ^ (z >> _S27)) * _M2
    z = z ^ (z >> _S31)
    return float(z >> _S11) * _INV53


@njit(cache=True, inline="always")
def _advance(i0, rest, ext, gm, alpha_m, w, av, alpha_rec, x, c0, inv, beta):
    """One neuron's step as if it had not spiked, from scalars: ``(I_0, w, a, x, eta)`` after it
    (``i0``: the decayed type-0 current, ``rest``: the other types' sum, ``av``: the decayed
    adaptation)."""
    wv = alpha_m * w + (gm * (i0 + rest) + ext)
    return i0, wv, av, 1.0 - alpha_rec * (1.0 - x), c0 + inv * (wv - beta * av)


@njit(cache=True)
def run_chunk(n_steps, t0, record, I, w, a, x, s, sp_idx, sp_cnt, n_sp, new_idx, new_cnt, rng,
              alpha_syn, alpha_m, alpha_a, alpha_rec, qpow, theta, beta, c0, inv, eta_max, has_sat,
              syn_ptr, syn_post, syn_wsc, ext, has_ext, direct, has_dir, uni, has_uni, max_count,
              ev, n_ev, tot, cand, xold):
    """Advance every trajectory by up to ``n_steps`` steps in place; returns ``(steps_done, n_ev)``.

    State (modified in place): ``I [B, K, n]``, ``w, a, x [B, n]`` float32, ``s [B, n]`` int32 last
    counts, ``sp_idx/sp_cnt [B, n]`` and ``n_sp [B]`` the same spikes as lists, ``rng [B]`` uint64
    stream positions. Inputs ``ext``/``direct`` ``[n_steps, 1 or B, n]`` float32 and ``uni
    [n_steps, B, n]`` float64 are read only where their flag is set. With ``record`` the spikes of
    steps ``t0 + j >= 0`` go to ``ev [cap, 4]`` rows ``(step, trajectory, neuron, count)`` from row
    ``n_ev``; the loop stops early (at a step boundary) when a step might not fit. ``tot`` (float32),
    ``cand`` (bool) and ``xold`` (float32) are ``[n]`` work buffers.

    One branch-free pass over all neurons (which LLVM vectorises) decays the currents, updates
    membrane, adaptation and depression as if nobody had spiked and marks the candidates of the
    escape-noise bound; the few neurons that spiked in the last step then get their reset,
    adaptation and depression and their bound test again; the candidates get the exact test.
    """
    B, K, n = I.shape
    gm = 1.0 - alpha_m
    eb_many = ext.shape[1] > 1
    db_many = direct.shape[1] > 1
    multi = K > 1
    for j in range(n_steps):
        if record and n_ev + B * n > ev.shape[0]:
            return j, n_ev
        t = t0 + j
        for b in range(B):
            # 1. last step's spikes along their outgoing synapses (weights pre-divided by alpha_k)
            for q in range(n_sp[b]):
                pj = sp_idx[b, q]
                xold[q] = x[b, pj]
                amp = x[b, pj] * sp_cnt[b, q]
                for k in range(K):
                    for p in range(syn_ptr[k, pj], syn_ptr[k, pj + 1]):
                        I[b, k, syn_post[p]] += syn_wsc[p] * amp
            # 2. decay and sum the currents of types 1.. (type 0 is decayed in the neuron pass)
            Ib = I[b]
            for k in range(1, K):
                al = alpha_syn[k]
                for i in range(n):
                    v = Ib[k, i] * al
                    Ib[k, i] = v
                    if k == 1:
                        tot[i] = v
                    else:
                        tot[i] += v
            # 3. the neuron pass, fused with the bound test of the escape noise (_advance takes scalars:
            #    a helper taking the arrays would pay reference counting per neuron)
            wb, ab, xb, Ib0, al0 = w[b], a[b], x[b], Ib[0], alpha_syn[0]
            e = ext[j if has_ext else 0, b if eb_many else 0]
            d = direct[j if has_dir else 0, b if db_many else 0]
            st = rng[b]
            if has_uni or has_dir:   # separate loops: a flag inside the loop would stop vectorisation
                for i in range(n):
                    Ib0[i], wb[i], ab[i], xb[i], eta = _advance(
                        Ib0[i] * al0, tot[i] if multi else 0.0, e[i] if has_ext else 0.0, gm, alpha_m, wb[i],
                        alpha_a[i] * ab[i], alpha_rec[i], xb[i], c0[i], inv[i], beta[i])
                    u = uni[j, b, i] if has_uni else _uniform(st, i)
                    cand[i] = u < _exp_bound(eta) + (d[i] if has_dir else 0.0)
            else:
                for i in range(n):
                    Ib0[i], wb[i], ab[i], xb[i], eta = _advance(
                        Ib0[i] * al0, tot[i] if multi else 0.0, e[i] if has_ext else 0.0, gm, alpha_m, wb[i],
                        alpha_a[i] * ab[i], alpha_rec[i], xb[i], c0[i], inv[i], beta[i])
                    cand[i] = _uniform(st, i) < _exp_bound(eta)
            # ... then the last step's spiking neurons: reset, adaptation, depression, bound again
            for q in range(n_sp[b]):
                i = sp_idx[b, q]
                c = sp_cnt[b, q]
                wb[i] = wb[i] - theta[i] * c
                ab[i] = ab[i] + c
                xb[i] = 1.0 - alpha_rec[i] * (1.0 - xold[q] * qpow[c, i])
                u = uni[j, b, i] if has_uni else _uniform(st, i)
                eta = c0[i] + inv[i] * (wb[i] - beta[i] * ab[i])
                cand[i] = u < _exp_bound(eta) + (d[i] if has_dir else 0.0)
            # 4. the exact test for the candidates
            m_new = 0
            for i in range(n):
                if cand[i]:
                    u = uni[j, b, i] if has_uni else _uniform(st, i)
                    eta = c0[i] + inv[i] * (wb[i] - beta[i] * ab[i])
                    cnt = _count(eta, d[i] if has_dir else 0.0, u, has_sat, eta_max[i], max_count)
                    if cnt > 0:
                        new_idx[b, m_new] = i
                        new_cnt[b, m_new] = cnt
                        m_new += 1
            rng[b] = st + _GAMMA * np.uint64(n)
            # 5. this step's spikes become the state's last counts (and events)
            for q in range(n_sp[b]):
                s[b, sp_idx[b, q]] = 0
            for q in range(m_new):
                i = new_idx[b, q]
                s[b, i] = new_cnt[b, q]
                sp_idx[b, q] = i
                sp_cnt[b, q] = new_cnt[b, q]
                if record and t >= 0:
                    ev[n_ev, 0] = t
                    ev[n_ev, 1] = b
                    ev[n_ev, 2] = i
                    ev[n_ev, 3] = new_cnt[b, q]
                    n_ev += 1
            n_sp[b] = m_new
    return n_steps, n_ev
