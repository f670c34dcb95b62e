""":class:`Simulator`: runs a :class:`~organoid_sim.engine.spec.NetworkSpec` forward, tick by tick,
with its state carried over between calls (free runs, batched trials, closed loops).

Set-up (weights divided by their type's decay, per-neuron constants, buffers) happens once in the
constructor; :meth:`Simulator.run` then calls the compiled loop of
:mod:`organoid_sim.engine.kernel` on chunks of ``chunk_steps`` steps, reading ``ext`` and
``direct`` one chunk at a time. Same ``seed``, same spikes (on one machine: the loop is serial
and its random stream is SplitMix64 seeded from ``numpy.random.SeedSequence(seed)``).
"""

from __future__ import annotations

from typing import Mapping

import numpy as np

from .kernel import run_chunk
from .spec import NetworkSpec

__all__ = ["Simulator", "input_rows"]

_NONE3 = np.zeros((1, 1, 1), np.float32)
_NONE3D = np.zeros((1, 1, 1), np.float64)


def input_rows(src, lo: int, hi: int):
    """Steps ``lo..hi-1`` of a per-step input.

    Parameters
    ----------
    src : an array (or anything sliceable, e.g. a tensor) ``[n_steps, ...]`` or a source with
        ``rows(lo, hi)``.
    lo, hi : first and one-past-last step.

    Returns
    -------
    array-like
        ``src[lo:hi]`` or ``src.rows(lo, hi)``.
    """
    return src.rows(lo, hi) if hasattr(src, "rows") else src[lo:hi]


class Simulator:
    """Run ``batch`` independent trajectories of ``spec`` from rest.

    Parameters
    ----------
    spec : the network (:func:`~organoid_sim.engine.load_network` or ``model.to_engine()``).
    seed : seed of the escape noise (one SplitMix64 stream per trajectory).
    batch : number of independent trajectories simulated side by side.
    chunk_steps : steps per compiled call (inputs are read this many rows at a time).

    Attributes
    ----------
    state : dict of the current state (see :attr:`state`).
    steps_done : steps advanced since the last :meth:`reset`.
    """

    def __init__(self, spec: NetworkSpec, seed: int = 0, batch: int = 1, chunk_steps: int = 4096) -> None:
        if batch < 1:
            raise ValueError(f"batch must be >= 1 trajectories, got {batch}")
        if chunk_steps < 1:
            raise ValueError(f"chunk_steps must be >= 1, got {chunk_steps}")
        self.spec = spec
        self.chunk_steps = int(chunk_steps)
        n, K = spec.n_neurons, spec.n_syn
        f32 = lambda v: np.ascontiguousarray(v, dtype=np.float32)  # noqa: E731
        # an alpha below 1e-30 (dt hundreds of tau) is raised to it so that W / alpha stays finite
        alpha = np.maximum(np.asarray(spec.alpha_syn, np.float64), 1e-30)
        self._alpha_syn = f32(alpha)
        ptr = np.ascontiguousarray(spec.syn_ptr, dtype=np.int64)
        self._syn_ptr = ptr
        self._syn_post = np.ascontiguousarray(spec.syn_post, dtype=np.int32)
        self._syn_wsc = f32(spec.syn_weight).copy()
        for k in range(K):  # in place, per type: no float64 copy of every weight
            self._syn_wsc[ptr[k, 0]:ptr[k, -1]] *= np.float32(1.0 / alpha[k])
        inv = np.asarray(spec.inv_delta_u, np.float64)
        self._c0 = np.asarray(spec.log_r0_dt + (np.asarray(spec.bias, np.float64) - spec.theta) * inv)
        self._inv = inv
        self._theta = f32(spec.theta)
        self._beta = f32(spec.beta)
        self._alpha_a = f32(spec.alpha_a)
        self._alpha_rec = f32(spec.alpha_rec)
        mc = int(spec.max_count)
        self._qpow = f32(np.exp(np.arange(mc + 1)[:, None] * np.asarray(spec.log1m_u, np.float64)[None]))
        self._has_sat = spec.eta_max is not None
        self._eta_max = np.asarray(spec.eta_max if self._has_sat else np.zeros(n), np.float64)
        self._n, self._K = n, K
        self.reset(seed=seed, batch=batch)

    # ------------------------------------------------------------------ state
    def reset(self, seed: int | None = None, batch: int | None = None) -> None:
        """Every trajectory back at rest (no current, no adaptation, full resources, no spike) and
        the random streams restarted from ``seed`` (default: the last one).

        Parameters
        ----------
        seed : new seed, optional.
        batch : new number of trajectories, optional.
        """
        if seed is not None:
            self.seed = int(seed)
        if batch is not None:
            self.batch = int(batch)
        B, n, K = self.batch, self._n, self._K
        self._I = np.zeros((B, K, n), np.float32)
        self._w = np.zeros((B, n), np.float32)
        self._a = np.zeros((B, n), np.float32)
        self._x = np.ones((B, n), np.float32)
        self._s = np.zeros((B, n), np.int32)
        self._sp_idx = np.zeros((B, n), np.int32)
        self._sp_cnt = np.zeros((B, n), np.int32)
        self._n_sp = np.zeros(B, np.int64)
        self._new_idx = np.zeros((B, n), np.int32)
        self._new_cnt = np.zeros((B, n), np.int32)
        self._work = (np.zeros(n, np.float32), np.zeros(n, np.bool_), np.zeros(n, np.float32))
        self._rng = np.random.SeedSequence(self.seed).generate_state(B, np.uint64)
        self._ev = np.empty((0, 4), np.int64)
        self.steps_done = 0

    @property
    def state(self) -> dict:
        """Copies of the state: ``w, a, x, s`` ``[batch, n]`` (membrane minus bias and synaptic
        currents in threshold units, adaptation trace in spikes, available resources, last
        step's counts) and ``I`` ``[n_syn, batch, n]`` (the layout of the torch ``NetworkState``)."""
        return {"w": self._w.copy(), "I": self._I.transpose(1, 0, 2).copy(), "a": self._a.copy(),
                "x": self._x.copy(), "s": self._s.astype(np.float32)}

    @state.setter
    def state(self, st: Mapping) -> None:
        B, n, K = self.batch, self._n, self._K
        try:
            w, I, a, x, s = (np.asarray(st[k], np.float32) for k in ("w", "I", "a", "x", "s"))
        except KeyError as exc:
            raise ValueError(f"state needs entries w, I, a, x, s; {exc.args[0]!r} is missing") from None
        w, a, x, s = (np.broadcast_to(v, (B, n)) for v in (w, a, x, s))
        I = np.broadcast_to(I.reshape(K, -1, n), (K, B, n))
        if np.any(s < 0) or np.any(s > self.spec.max_count) or np.any(s != np.round(s)):
            raise ValueError(f"state 's' must hold spike counts 0..{self.spec.max_count}")
        # copies: broadcast views are read-only and the caller's arrays stay untouched
        self._w, self._a, self._x = (np.array(v, dtype=np.float32, order="C") for v in (w, a, x))
        self._I = np.array(I.transpose(1, 0, 2), dtype=np.float32, order="C")
        self._s = np.array(s, dtype=np.int32, order="C")
        for b in range(B):
            idx = np.flatnonzero(self._s[b])
            self._sp_idx[b, :len(idx)] = idx
            self._sp_cnt[b, :len(idx)] = self._s[b, idx]
            self._n_sp[b] = len(idx)

    # ------------------------------------------------------------------ running
    def _rows(self, src, lo: int, hi: int, name: str, dtype) -> np.ndarray:
        """Rows ``lo..hi-1`` of an input as ``[hi - lo, 1 or batch, n]``."""
        r = np.asarray(input_rows(src, lo, hi), dtype=dtype)
        n, B = self._n, self.batch
        if r.ndim == 2:
            r = r[:, None, :]
        if r.ndim != 3 or r.shape[0] != hi - lo or r.shape[2] != n or r.shape[1] not in (1, B):
            raise ValueError(f"{name} must have shape [n_steps, {n}] or [n_steps, {B}, {n}] (steps x (batch x) "
                             f"neurons); rows {lo}..{hi} have shape {tuple(r.shape)}")
        return np.ascontiguousarray(r)

    def run(self, n_steps: int, ext=None, direct=None, *, record: bool = True, uniforms=None,
            progress_bar=None) -> np.ndarray | None:
        """Advance ``n_steps`` steps from the current state.

        Parameters
        ----------
        n_steps : steps of ``spec.dt_ms`` to simulate.
        ext : membrane input per step (threshold units), ``[n_steps, n]`` (every trajectory) or
            ``[n_steps, batch, n]``, or a source with ``rows(lo, hi)``; None for none.
        direct : expected directly evoked spikes per step (``>= 0``), same shapes; None for none.
        record : return the spikes (False: only advance the state).
        uniforms : optional ``uniforms(shape)`` returning float64 uniforms ``[steps, batch, n]``
            for each chunk instead of the internal stream (tests compare with the torch step).
        progress_bar : optional tqdm bar, advanced by the steps done.

        Returns
        -------
        numpy.ndarray or None
            int64 ``[K, 4]`` rows ``(step, trajectory, neuron, count)`` of every nonzero count,
            ``step`` counted from the start of this call; None with ``record=False``.
        """
        n_steps = int(n_steps)
        if n_steps < 0:
            raise ValueError(f"n_steps must be >= 0, got {n_steps}")
        for src, name in ((ext, "ext"), (direct, "direct")):
            if src is not None and hasattr(src, "__len__") and len(src) < n_steps:
                raise ValueError(f"{name} has {len(src)} steps, fewer than n_steps={n_steps}")
        B, n = self.batch, self._n
        out, ev = [], self._ev   # the event buffer is kept between calls (many short calls in a closed loop)
        for c0 in range(0, n_steps, self.chunk_steps):
            c1 = min(c0 + self.chunk_steps, n_steps)
            L = c1 - c0
            e = _NONE3 if ext is None else self._rows(ext, c0, c1, "ext", np.float32)
            d = _NONE3 if direct is None else self._rows(direct, c0, c1, "direct", np.float32)
            u = _NONE3D
            if uniforms is not None:
                u = np.ascontiguousarray(uniforms((L, B, n)), dtype=np.float64)
                if u.shape != (L, B, n):
                    raise ValueError(f"uniforms returned shape {u.shape}, expected {(L, B, n)}")
            done = 0
            while done < L:
                if record and len(ev) < B * n:
                    ev = self._ev = np.empty((max(2 * len(ev), B * n, 65536), 4), np.int64)
                sl = slice(done, L)
                j, n_ev = run_chunk(L - done, c0 + done, record, self._I, self._w, self._a, self._x, self._s,
                                    self._sp_idx, self._sp_cnt, self._n_sp, self._new_idx, self._new_cnt,
                                    self._rng, self._alpha_syn, float(self.spec.alpha_m), self._alpha_a,
                                    self._alpha_rec, self._qpow, self._theta, self._beta, self._c0, self._inv,
                                    self._eta_max, self._has_sat, self._syn_ptr, self._syn_post, self._syn_wsc,
                                    e[sl] if ext is not None else e, ext is not None,
                                    d[sl] if direct is not None else d, direct is not None,
                                    u[sl] if uniforms is not None else u, uniforms is not None,
                                    int(self.spec.max_count), ev, 0, *self._work)
                if record:
                    out.append(ev[:n_ev].copy())
                done += j
                self.steps_done += j
                if progress_bar is not None:
                    progress_bar.update(j)
        if not record:
            return None
        return np.concatenate(out) if out else np.zeros((0, 4), np.int64)
