"""A compiled free run that keeps every state (numba): the forward pass of the refinement's
backpropagation through time (:func:`organoid_sim.nn.free_run.free_run`).

The same equations as :func:`organoid_sim.nn.neurons.lif_step` without stimulation, on dense
``[K, n_post, n_pre]`` weights, with the caller's uniforms (one per step, trajectory and neuron)
and the torch observation models' inverse-CDF draw: ``P(y >= k)`` of a Poisson count with
``mu = exp(min(eta, log 50))`` (capped at ``max_count``), or ``1 - exp(-exp(eta))`` for
Bernoulli escape noise; a spike is ``u < P``. Arithmetic is float64 whatever the arrays' type
(the states are stored in it), so float32 runs agree with the torch step to float32 rounding and
float64 runs to a few ulps. Unlike :mod:`.kernel` nothing is event-driven or bounded: the
refinement's networks are small, and its backward pass needs every state anyway.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

__all__ = ["run_recorded", "run_adjoint"]

_LOG50 = math.log(50.0)


@njit(cache=True)
def _draw(eta, u, max_count, bernoulli):
    """Spike count of one neuron for uniform ``u`` (the observation's inverse CDF)."""
    if bernoulli:
        return 1.0 if -math.expm1(-math.exp(eta)) - u > 0.0 else 0.0
    mu = math.exp(min(eta, _LOG50))
    term = math.exp(-mu)
    cdf = term
    c = 0.0
    for k in range(1, max_count + 1):
        p = min(max(1.0 - cdf, 0.0), 1.0)
        if not p - u > 0.0:      # P(y >= k) falls with k: no later k passes either
            break
        c += 1.0
        term = term * mu / k
        cdf = cdf + term
    return c


@njit(cache=True)
def run_recorded(W, alpha_syn, alpha_m, alpha_a, alpha_rec, log1m_u, theta, beta, bias, inv_du, log_r0_dt,
                 eta_max, has_sat, max_count, bernoulli, I0, w0, a0, x0, s0, uniform, S, X, A, Wm, Ip):
    """Run ``L = len(uniform)`` steps of ``B`` trajectories and fill the state arrays.

    Parameters (NumPy arrays): ``W [K, n, n]``; ``alpha_syn [K]``; ``alpha_a``, ``alpha_rec``,
    ``log1m_u``, ``theta``, ``beta``, ``bias``, ``inv_du``, ``eta_max`` ``[n]``; scalars
    ``alpha_m``, ``log_r0_dt``, ``has_sat``, ``max_count``, ``bernoulli`` (the one-spike draw
    ``u < 1 - exp(-exp(eta))``, as the observations' ``sample`` uses it whenever ``max_count`` is 1).
    Start state ``I0 [K, B, n]``
    and ``w0, a0, x0, s0 [B, n]``; ``uniform [L, B, n]``.

    Outputs, filled in place: ``S, X, A [L + 1, B, n]`` (index 0 the start state's), ``Wm [L, B, n]``
    the membranes after each step and ``Ip [L, K, B, n]`` the synaptic currents before each step;
    the currents after the last step are returned (``[K, B, n]``).
    """
    L, B, n = uniform.shape
    K = W.shape[0]
    gm = 1.0 - alpha_m
    I = I0.astype(np.float64)
    e = np.empty(n)
    active = np.empty(n, dtype=np.int64)
    for b in range(B):
        for i in range(n):
            S[0, b, i], X[0, b, i], A[0, b, i] = s0[b, i], x0[b, i], a0[b, i]
    for t in range(L):
        for b in range(B):
            for k in range(K):
                for i in range(n):
                    Ip[t, k, b, i] = I[k, b, i]
            m = 0                        # the neurons that spiked last step (few): their transmitter
            for j in range(n):
                if S[t, b, j] != 0.0:
                    active[m] = j
                    e[m] = X[t, b, j] * S[t, b, j]
                    m += 1
            for k in range(K):
                al = alpha_syn[k]
                for i in range(n):
                    acc = 0.0
                    for q in range(m):
                        acc += W[k, i, active[q]] * e[q]
                    I[k, b, i] = al * I[k, b, i] + acc
            for i in range(n):
                s = S[t, b, i]
                tot = 0.0
                for k in range(K):
                    tot += I[k, b, i]
                wprev = w0[b, i] if t == 0 else Wm[t - 1, b, i]
                w = alpha_m * wprev + gm * tot - theta[i] * s
                a = alpha_a[i] * A[t, b, i] + s
                x = 1.0 - alpha_rec[i] * (1.0 - X[t, b, i] * math.exp(s * log1m_u[i]))
                eta = log_r0_dt + (bias[i] + w - theta[i] - beta[i] * a) * inv_du[i]
                if has_sat:
                    z = eta - eta_max[i]
                    eta = eta - (z if z > 20.0 else math.log1p(math.exp(z)))
                Wm[t, b, i], A[t + 1, b, i], X[t + 1, b, i] = w, a, x
                S[t + 1, b, i] = _draw(eta, uniform[t, b, i], max_count, bernoulli)
    return I


@njit(cache=True)
def run_adjoint(G, Dz, S, X, E, W, alpha_syn, alpha_m, alpha_a, alpha_rec, log1m_u, theta, beta,
                lam_s, lam_w, lam_a, lam_I, lam_x):
    """The adjoint recursion of :mod:`organoid_sim.nn.free_run` from the last step back to the first.

    Inputs (NumPy): ``G, Dz [L, B, n]`` (the loss's gradient in the recorded spikes, zero
    elsewhere, and ``D / delta_u``), ``S, X [L + 1, B, n]`` and ``E [L, B, n]`` from the forward
    pass, ``W [K, n, n]``, ``alpha_syn [K]``, ``alpha_a, alpha_rec, log1m_u, theta, beta [n]``,
    scalar ``alpha_m``. Outputs, filled in place: ``lam_s, lam_w, lam_a, lam_x [L, B, n]`` and
    ``lam_I [L, K, B, n]`` (float64 arithmetic, stored in the arrays' type).
    """
    L, B, n = G.shape
    K = W.shape[0]
    gm = 1.0 - alpha_m
    for b in range(B):
        lw = np.zeros(n)
        la = np.zeros(n)
        lx = np.zeros(n)
        le = np.zeros(n)
        lI = np.zeros((K, n))
        for t in range(L - 1, -1, -1):
            last = t == L - 1
            for i in range(n):
                if last:
                    ls, lxn = G[t, b, i], 0.0
                else:
                    recov = alpha_rec[i] * E[t + 1, b, i]                 # d x_{t+1} / d x_t
                    ls = (G[t, b, i] - theta[i] * lw[i] + la[i] + recov * X[t + 1, b, i] * log1m_u[i] * lx[i]
                          + X[t + 1, b, i] * le[i])
                    lxn = recov * lx[i] + S[t + 1, b, i] * le[i]
                dz = ls * Dz[t, b, i]
                lw[i] = dz + alpha_m * lw[i]
                la[i] = alpha_a[i] * la[i] - beta[i] * dz
                lx[i] = lxn
                lam_s[t, b, i], lam_w[t, b, i], lam_a[t, b, i], lam_x[t, b, i] = ls, lw[i], la[i], lxn
                for k in range(K):
                    lI[k, i] = alpha_syn[k] * lI[k, i] + gm * lw[i]
                    lam_I[t, k, b, i] = lI[k, i]
            for j in range(n):                                               # le = sum_k W_k^T lI_k
                acc = 0.0
                for k in range(K):
                    for i in range(n):
                        acc += W[k, i, j] * lI[k, i]
                le[j] = acc
    return 0
