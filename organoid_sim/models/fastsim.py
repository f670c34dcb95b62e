"""The CPU fast path of free-running simulation: :func:`organoid_sim.models.neurons.lif_step`'s
equations in NumPy, without autograd, with event-driven synaptic propagation.

Why NumPy: at a few hundred to a few thousand neurons per step the cost of a step is the
per-operation overhead, which is several times lower for NumPy than for torch. What a step costs:

* all decaying state (synaptic currents per type, membrane, adaptation, used resources) lives in
  one stacked array, decayed by one multiply;
* the random numbers are drawn and turned into spike thresholds in blocks of ``chunk_steps``
  steps (``u < 1 - exp(-exp(eta))  <=>  eta > log(-log(1 - u))``, no ``exp`` per step);
* only the neurons that fired are touched (a few per step in cultured networks): their outgoing
  weight rows are added with BLAS ``axpy`` and their own reset / adaptation / depression are
  scalar updates; bursts (many neurons at once) and batches take the vectorised route;
* the 2nd..``max_count``-th spike of a bin is only computed when a cheap bound says it can occur.

Same equations, same inverse-CDF sampling from one uniform per neuron and step (a NumPy
generator seeded with ``seed``), so a run is reproducible on the CPU. Gradients (refinement) and
CUDA use the torch path.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from scipy.linalg.blas import daxpy

from .neurons import NetworkState, StepParams

__all__ = ["run_numpy"]

_LOG50 = math.log(50.0)
_SCALAR_MAX = 8  # up to this many spiking neurons per step, Python-scalar updates beat fancy indexing


def _np(t) -> np.ndarray:
    return t.detach().cpu().numpy().astype(np.float64) if isinstance(t, torch.Tensor) else np.asarray(t, np.float64)


def _saturate(eta: np.ndarray, eta_max) -> np.ndarray:
    """:func:`organoid_sim.models.neurons.saturate` in NumPy (``eta_max`` None: unchanged)."""
    if eta_max is None:
        return eta
    return eta - np.logaddexp(0.0, eta - eta_max)


def _counts(eta: np.ndarray, u: np.ndarray, max_count: int, eta_max=None) -> np.ndarray:
    """Spike counts ``sum_k [u < P(y >= k)]`` of bins known to hold at least one spike (Poisson);
    ``eta`` before saturation at ``eta_max``."""
    m = np.exp(np.minimum(_saturate(eta, eta_max), _LOG50))
    term = np.exp(-m)
    cdf = term.copy()
    out = np.ones_like(m)
    for k in range(1, max_count):
        term = term * m / k
        cdf = cdf + term
        out += u < np.clip(1.0 - cdf, 0.0, 1.0)
    return out


def _thresholds(u: np.ndarray, const: np.ndarray, eta_max=None) -> np.ndarray:
    """``log(-log(1 - u)) - const``: a neuron spikes when its ``eta - const`` exceeds this.

    ``1 - u`` is exact for the generator's uniforms (multiples of 2**-53), so ``log`` replaces the
    several times slower ``log1p``. With saturation (``eta_max``) the threshold ``L`` on the
    saturated ``eta'`` is mapped back through the inverse of ``eta' = -log(e^-eta + e^-eta_max)``:
    ``eta > L - log(1 - e^(L - eta_max))``, never when ``L >= eta_max``.
    """
    v = np.subtract(1.0, u)
    with np.errstate(divide="ignore"):  # u == 0 -> -inf: spikes whatever eta (as u < P(spike) does)
        np.log(v, out=v)
        np.negative(v, out=v)
        np.log(v, out=v)
    if eta_max is not None:
        gap = np.subtract(v, eta_max)
        with np.errstate(divide="ignore"):
            np.minimum(gap, 0.0, out=gap)
            np.expm1(gap, out=gap)
            np.negative(gap, out=gap)
            np.log(gap, out=gap)  # gap == 0 -> -inf: out of reach
        v -= gap
    v -= const
    return v


class _Net:
    """Parameters in escape-noise units (everything times 1/delta_u, the synaptic gain folded into
    the weights), so that ``eta = const + w - A``, and the stacked state ``X``:
    rows ``0..k-1`` synaptic currents, ``k`` membrane ``w``, ``k+1`` adaptation ``A``, ``k+2`` used
    resources ``y = 1 - x`` (decays to 0 between spikes, so one multiply decays everything)."""

    def __init__(self, p: StepParams, state: NetworkState, max_count: int):
        W = _np(p.weight)                                   # [k, post, pre]
        self.k = k = W.shape[0]
        a_m = float(p.alpha_m)
        l1u, theta, beta, bias, inv_du = (_np(v) for v in (p.log1m_u, p.theta, p.beta, p.bias, p.inv_delta_u))
        self.a_rec = _np(p.alpha_rec)
        self.gain = (1.0 - a_m) * inv_du
        self.betas = np.maximum(beta * inv_du, 1e-12)
        self.thetas = theta * inv_du
        self.inv_du = inv_du
        self.l1u = l1u
        self.const = p.log_r0_dt + (bias - theta) * inv_du
        self.eta_max = None if p.eta_max is None else _np(p.eta_max)
        # rows of presynaptic neurons, contiguous for axpy: [k, pre, post]
        self.WTs = np.ascontiguousarray(W.transpose(0, 2, 1) * self.gain[None, None, :])
        w, I, a, x = (_np(getattr(state, f)) for f in ("w", "I", "a", "x"))
        B, n = w.shape
        self.X = np.empty((k + 3, B, n))
        self.X[:k] = np.broadcast_to(I, (k, B, n)) * self.gain
        self.X[k] = w * inv_du
        self.X[k + 1] = a * self.betas
        self.X[k + 2] = 1.0 - x
        self.D = np.empty((k + 3, 1, n))
        self.D[:k] = _np(p.alpha_syn).reshape(-1, 1, 1)
        self.D[k], self.D[k + 1], self.D[k + 2] = a_m, _np(p.alpha_a), self.a_rec
        # Python lists for the scalar route (list indexing is far cheaper than NumPy scalar access)
        self.th_l, self.be_l, self.ar_l, self.c_l = (v.tolist() for v in (self.thetas, self.betas, self.a_rec,
                                                                            self.const))
        self.rel_l = [None] + [(1.0 - np.exp(c * l1u)).tolist() for c in range(1, max_count + 1)]
        self.rows = [list(self.WTs[r]) for r in range(k)] if B == 1 else None  # row views, made once

    def eta_max_of(self, idx) -> np.ndarray | None:
        """The saturation level of neurons ``idx`` (None without saturation)."""
        return None if self.eta_max is None else self.eta_max[idx]

    def state(self, s: np.ndarray, like: torch.Tensor) -> NetworkState:
        """The current state back in model units, as tensors on ``like``'s device and dtype."""
        k, X = self.k, self.X
        to = lambda v: torch.as_tensor(np.asarray(v, np.float32), device=like.device, dtype=like.dtype)  # noqa: E731
        return NetworkState(w=to(X[k] / self.inv_du), I=to(X[:k] / self.gain), a=to(X[k + 1] / self.betas),
                            x=to(1.0 - X[k + 2]), s=to(s))


def _spikes_scalar(net: _Net, X2: np.ndarray, il: list, cl: list) -> None:
    """Decay one trajectory's state ``X2`` ``[k+3, n]`` and apply the spikes of neurons ``il`` (counts
    ``cl``) with scalar updates and one BLAS axpy per weight row."""
    k = net.k
    W, A, Y = X2[k], X2[k + 1], X2[k + 2]
    y_old = [Y.item(i) for i in il]  # resources at spike time, before this step's decay
    np.multiply(net.X, net.D, out=net.X)
    th, be, ar, rel = net.th_l, net.be_l, net.ar_l, net.rel_l
    targets = list(zip(net.rows, X2[:k]))
    for i, c, y0 in zip(il, cl, y_old):
        xr = 1.0 - y0
        for rows, cur in targets:
            daxpy(rows[i], cur, a=xr * c)  # in place on the row view
        W[i] = W.item(i) - th[i] * c
        A[i] = A.item(i) + be[i] * c
        Y[i] = Y.item(i) + ar[i] * xr * rel[int(c)][i]


def _spikes_vector(net: _Net, s: np.ndarray, idx: np.ndarray | None) -> None:
    """Decay the state and apply the spikes ``s`` (``[B, n]`` counts): event-driven over the spiking
    neurons ``idx`` when there is one trajectory, dense matrix products otherwise."""
    k, X = net.k, net.X
    if idx is not None:  # one trajectory, many spikes: gather only the spiking neurons
        X2 = X[:, 0, :]
        si = s[0, idx]
        xr = 1.0 - X2[k + 2, idx]
        np.multiply(X, net.D, out=X)
        X2[:k] += np.tensordot(xr * si, net.WTs[:, idx, :], axes=([0], [1]))
        X2[k, idx] -= net.thetas[idx] * si
        X2[k + 1, idx] += net.betas[idx] * si
        X2[k + 2, idx] += net.a_rec[idx] * xr * (1.0 - np.exp(si * net.l1u[idx]))
        return
    xr = 1.0 - X[k + 2]
    np.multiply(X, net.D, out=X)
    cols = np.flatnonzero(s.any(0))  # presynaptic neurons that fired in any trajectory
    X[:k] += np.matmul((xr * s)[:, cols], net.WTs[:, cols, :])  # [k, B, post]
    X[k] -= net.thetas * s
    X[k + 1] += net.betas * s
    X[k + 2] += net.a_rec * xr * (1.0 - np.exp(s * net.l1u))


def _direct_hits(net: _Net, diff: np.ndarray, m: np.ndarray, u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A step with directly evoked spikes ``m``: the full ``eta = log(exp(saturate(eta)) + m)`` (the
    evoked spikes come on top of the saturated network drive) and the spike mask for uniforms ``u``
    (``diff = eta - const`` before saturation)."""
    with np.errstate(divide="ignore"):
        eta = np.logaddexp(_saturate(diff + net.const, net.eta_max), np.log(np.broadcast_to(m, diff.shape)))
    return eta, eta > _thresholds(u, 0.0)


def _chunk_single(net: _Net, u: np.ndarray, v: np.ndarray, il: list, cl: list, t0: int, ext_s, max_count: int,
                  record: bool, events: list, dir_s=None) -> tuple[list, list]:
    """Steps of one trajectory (``u``, ``v``: ``[L, 1, n]`` uniforms and thresholds; ``t0``: the
    recorded step of the first one, negative during burn-in). Spikes of the last step come in and go
    out as ``(neurons, counts)`` lists."""
    k, X2 = net.k, net.X[:, 0, :]
    W, A, I0 = X2[k], X2[k + 1], X2[0]
    diff = np.empty(W.shape)
    hit = np.empty(W.shape, bool)
    for j in range(len(u)):
        t = t0 + j
        if not il:
            np.multiply(net.X, net.D, out=net.X)
        elif len(il) <= _SCALAR_MAX:
            _spikes_scalar(net, X2, il, cl)
        else:
            s = np.zeros((1, W.shape[0]))
            s[0, il] = cl
            _spikes_vector(net, s, np.asarray(il))
        if k == 1:
            W += I0
        else:
            W += X2[:k].sum(0)
        if ext_s is not None and t >= 0:
            W += ext_s[t]
        np.subtract(W, A, out=diff)
        eta_d = None
        if dir_s is not None and t >= 0 and dir_s[1][t]:
            eta_d, hit = _direct_hits(net, diff, dir_s[0][t].reshape(-1), u[j, 0])
        else:
            np.greater(diff, v[j, 0], out=hit)
        idx = hit.nonzero()[0]
        if not len(idx):
            il = cl = ()
            continue
        il = idx.tolist()
        cl = [1.0] * len(il)
        if max_count > 1:
            uj = u[j, 0]
            if eta_d is not None:
                cl = _counts(eta_d[idx], uj[idx], max_count).tolist()
            # P(y >= 2) <= mu^2 / 2: compute exact counts only where that bound exceeds u
            elif any(uj.item(i) < 0.5000001 * math.exp(2.0 * min(diff.item(i) + net.c_l[i], _LOG50)) + 1e-15
                   for i in il):
                cl = _counts(diff[idx] + net.const[idx], uj[idx], max_count, net.eta_max_of(idx)).tolist()
        if record and t >= 0:
            events.append((t, idx, cl))
    return il, cl


def _chunk_batch(net: _Net, u, v, s, t0, ext_s, max_count, record, events, dir_s=None) -> np.ndarray:
    """Steps of ``B`` trajectories at once (dense); ``s`` ``[B, n]``: counts of the last step."""
    k, X = net.k, net.X
    W, A = X[k], X[k + 1]
    diff = np.empty(W.shape)
    spiking = bool(s.any())
    for j in range(len(u)):
        t = t0 + j
        if spiking:
            _spikes_vector(net, s, None)
        else:
            np.multiply(X, net.D, out=X)
        W += X[:k].sum(0)
        if ext_s is not None and t >= 0:
            W += ext_s[t]
        np.subtract(W, A, out=diff)
        eta_d = None
        if dir_s is not None and t >= 0 and dir_s[1][t]:
            eta_d, hit = _direct_hits(net, diff, dir_s[0][t], u[j])
        else:
            hit = diff > v[j]
        spiking = bool(hit.any())
        if spiking:
            s = hit.astype(np.float64)
            if max_count > 1:
                b, i = np.nonzero(hit)
                if eta_d is not None:
                    s[b, i] = _counts(eta_d[b, i], u[j, b, i], max_count)
                else:
                    s[b, i] = _counts(diff[b, i] + net.const[i], u[j, b, i], max_count, net.eta_max_of(i))
            if record and t >= 0:
                b, i = np.nonzero(s)
                events.append((t, b, i, s[b, i]))
        else:
            s = np.zeros_like(s)
    return s


def _events(events: list, single: bool) -> np.ndarray:
    """``(step, trajectory, neuron, count)`` rows from the per-step records."""
    if not events:
        return np.zeros((0, 4), np.int64)
    steps = np.concatenate([np.full(len(e[1]), e[0]) for e in events])
    if single:
        neurons = np.concatenate([e[1] for e in events])
        counts = np.concatenate([np.asarray(e[2]) for e in events])
        traj = np.zeros_like(steps)
    else:
        traj, neurons, counts = (np.concatenate([e[q] for e in events]) for q in (1, 2, 3))
    return np.stack([steps, traj, neurons, counts.astype(np.int64)], 1).astype(np.int64)


class _Rows:
    """Rows ``lo..`` of a per-step input, indexed by the recorded step."""

    __slots__ = ("rows", "lo")

    def __init__(self, rows: np.ndarray, lo: int) -> None:
        self.rows, self.lo = rows, lo

    def __getitem__(self, t: int) -> np.ndarray:
        return self.rows[t - self.lo]


def input_rows(src, lo: int, hi: int):
    """Steps ``lo..hi-1`` of a per-step input: an array/tensor slice or ``src.rows(lo, hi)``."""
    return src.rows(lo, hi) if hasattr(src, "rows") else src[lo:hi]


def _chunk_inputs(ext, direct, net: _Net, t0: int, t1: int):
    """``(ext_s, dir_s)`` of the chunk of recorded steps ``t0..t1-1`` (negative during burn-in):
    membrane input in escape-noise units, and direct spikes with a per-step "any" flag."""
    lo, hi = max(t0, 0), max(t1, 0)
    if hi <= lo:
        return None, None
    ext_s = None if ext is None else _Rows(_np(input_rows(ext, lo, hi)) * net.inv_du, lo)
    dir_s = None
    if direct is not None:
        d = _np(input_rows(direct, lo, hi))
        dir_s = (_Rows(d, lo), _Rows((d > 0).reshape(len(d), -1).any(1), lo))  # values, "any direct spike"
    return ext_s, dir_s


def run_numpy(p: StepParams, state: NetworkState, n_steps: int, *, seed: int, ext=None, max_count: int = 4,
              burn_in_steps: int = 0, record: bool = True, chunk_steps: int = 4096, progress_bar=None,
              uniforms=None, direct=None):
    """Simulate ``burn_in_steps + n_steps`` steps from ``state``; returns ``(events, state, n_saturated)``
    like :meth:`SpikingNetworkModel.run` (``events`` rows ``(step, trajectory, neuron, count)``).

    ``ext``: membrane input per step (threshold units, ``[n_steps, (B,) n]``); ``direct``: expected
    directly evoked spikes per step (same shapes), added to the expected count of the step. Either
    may be an array or a source with ``rows(lo, hi)`` (:class:`~organoid_sim.models.stim_coupling.StepInput`);
    both are read one chunk at a time.

    ``uniforms(shape)`` replaces the seeded generator's ``random`` (tests feed both paths the same
    numbers); it is called once per chunk of ``chunk_steps`` steps with shape ``[steps, B, n]``.
    """
    net = _Net(p, state, max_count)
    s = _np(state.s)
    B, n = s.shape
    draw = uniforms or np.random.default_rng(int(seed)).random
    events: list = []
    total = burn_in_steps + n_steps
    il = np.flatnonzero(s[0]).tolist() if B == 1 else None
    cl = s[0, il].tolist() if B == 1 else None
    for c0 in range(0, total, chunk_steps):
        c1 = min(c0 + chunk_steps, total)
        u = draw((c1 - c0, B, n))
        v = _thresholds(u, net.const, net.eta_max)
        ext_s, dir_s = _chunk_inputs(ext, direct, net, c0 - burn_in_steps, c1 - burn_in_steps)
        if B == 1:
            il, cl = _chunk_single(net, u, v, il, cl, c0 - burn_in_steps, ext_s, max_count, record, events, dir_s)
        else:
            s = _chunk_batch(net, u, v, s, c0 - burn_in_steps, ext_s, max_count, record, events, dir_s)
        if progress_bar is not None:
            progress_bar.update(c1 - c0)
    if B == 1:
        s = np.zeros((1, n))
        s[0, list(il)] = cl
    ev = _events(events, B == 1) if record else None
    n_sat = int((ev[:, 3] >= max_count).sum()) if record else 0
    return ev, net.state(s, state.w), n_sat
