"""The ground-truth network: adaptive LIF neurons with short-term depression, placed in 2-D.

Dynamics (``v`` in units of the firing threshold, rest 0, threshold 1; step ``dt_ms``)::

    tau_m dv/dt = -v + mu_i + I_e - I_i - a + sigma * sqrt(tau_m) * xi(t)
    spike when v >= 1 (outside the refractory period): v <- 0, a <- a + b_adapt
    tau_a da/dt = -a                                       (spike-frequency adaptation)
    tau_e dI_e/dt = -I_e,  I_e <- I_e + sum_j W_ij * U * x_j   over excitatory spikes j
    tau_i dI_i/dt = -I_i,  I_i <- I_i + sum_j W_ij             over inhibitory spikes j
    tau_rec dx_j/dt = 1 - x_j,  x_j <- x_j - U * x_j on a spike   (Tsodyks-Markram depression)

``mu_i`` is a heterogeneous subthreshold drive and ``xi`` white noise, so neurons fire sparsely
on their own; recurrent excitation turns a few coincident spikes into a network burst, which
depression (``x``) and adaptation (``a``) end, and the slow recovery of both sets the seconds-long
interval between bursts (Tsodyks, Uziel & Markram 2000; Gigante et al. 2015).

Connections are drawn with probability ``p_max * exp(-d / conn_length_um)`` (no autapses), so
nearby neurons are more connected, as in dissociated cultures. Weights are dense ``[N, N]``
(a few thousand neurons fit easily); the recurrent input is gathered only from the neurons that
spiked, which keeps a step cheap between bursts.

The simulation is batched: the state has a leading trial dimension ``B`` so many independent
stimulation trials run at once. Direct activation by stimulation (see :mod:`.physics`) arrives
as *forced spikes* scheduled a few milliseconds after each pulse.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from tqdm.auto import tqdm


@dataclass(frozen=True)
class NetworkConfig:
    """Parameters of the ground-truth network (times ms, distances um, currents threshold units)."""

    n_neurons: int = 2000
    frac_inhibitory: float = 0.2
    margin_um: float = 100.0          # neurons occupy the electrode bounding box plus this margin
    conn_p_max: float = 0.3
    conn_length_um: float = 200.0
    w_ee: float = 0.9
    w_ie: float = 0.35                # E -> I
    w_ei: float = 0.6                 # I -> E
    w_ii: float = 0.4
    weight_cv: float = 0.5            # log-normal spread of weights
    tau_m_ms: float = 20.0
    tau_e_ms: float = 10.0
    tau_i_ms: float = 10.0
    refractory_ms: float = 3.0
    mu_mean: float = 0.73
    mu_sd: float = 0.06
    sigma: float = 0.17
    b_adapt: float = 0.08
    tau_adapt_ms: float = 2000.0
    use_U: float = 0.2
    tau_rec_ms: float = 1500.0
    dt_ms: float = 0.5

    def to_dict(self) -> dict:
        """Plain dict (JSON)."""
        return asdict(self)


@dataclass
class NetworkState:
    """State of ``B`` independent copies of the network (tensors ``[B, N]``)."""

    v: torch.Tensor
    i_e: torch.Tensor
    i_i: torch.Tensor
    adapt: torch.Tensor
    x: torch.Tensor
    refractory: torch.Tensor          # steps left in the refractory period (int)
    pending: torch.Tensor             # steps until a scheduled (stimulus-evoked) spike, -1 none

    def take(self, index) -> "NetworkState":
        """Copies of the selected trials (index into the batch dimension)."""
        return NetworkState(**{k: getattr(self, k)[index].clone() for k in self.__dataclass_fields__})

    @staticmethod
    def stack(states: "list[NetworkState]") -> "NetworkState":
        """Concatenate states along the batch dimension."""
        return NetworkState(**{k: torch.cat([getattr(s, k) for s in states]) for k in NetworkState.__dataclass_fields__})


@dataclass
class Network:
    """A drawn network: positions (um), excitatory mask, weights ``W[post, pre]``, drives ``mu``."""

    config: NetworkConfig
    xy_um: np.ndarray
    excitatory: np.ndarray
    weights: torch.Tensor = field(repr=False)
    mu: torch.Tensor = field(repr=False)

    @property
    def n(self) -> int:
        """Number of neurons."""
        return len(self.xy_um)

    @classmethod
    def build(cls, config: NetworkConfig, bbox_um: tuple[float, float, float, float],
              seed: int = 0) -> "Network":
        """Draw positions, cell types, connections and drives inside ``bbox_um`` (x0, x1, y0, y1) + margin."""
        rng = np.random.default_rng(seed)
        n, m = config.n_neurons, config.margin_um
        x0, x1, y0, y1 = bbox_um
        xy = np.stack([rng.uniform(x0 - m, x1 + m, n), rng.uniform(y0 - m, y1 + m, n)], axis=1)
        exc = rng.random(n) >= config.frac_inhibitory
        d = np.hypot(xy[:, None, 0] - xy[None, :, 0], xy[:, None, 1] - xy[None, :, 1])
        connected = rng.random((n, n)) < config.conn_p_max * np.exp(-d / config.conn_length_um)
        np.fill_diagonal(connected, False)
        s2 = math.log1p(config.weight_cv ** 2)
        w = rng.lognormal(-s2 / 2, math.sqrt(s2), (n, n))          # mean 1
        scale = np.where(exc[None, :], np.where(exc[:, None], config.w_ee, config.w_ie),
                         np.where(exc[:, None], config.w_ei, config.w_ii))
        w = (w * scale * connected).astype(np.float32)
        mu = rng.normal(config.mu_mean, config.mu_sd, n).astype(np.float32)
        return cls(config, xy, exc, torch.from_numpy(w), torch.from_numpy(mu))

    def _csr_by_pre(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Outgoing synapses per presynaptic neuron: ``(ptr [N+1], post [S], weight [S])``."""
        w_t = self.weights.T                                       # [pre, post]
        pre, post = w_t.nonzero(as_tuple=True)
        ptr = torch.zeros(self.n + 1, dtype=torch.int64)
        ptr[1:] = torch.cumsum(torch.bincount(pre, minlength=self.n), 0)
        return ptr, post, w_t[pre, post].contiguous()

    def initial_state(self, batch: int, seed: int = 0) -> NetworkState:
        """A resting state for ``batch`` trials with random membrane potentials below threshold."""
        g = torch.Generator().manual_seed(seed)
        shape = (batch, self.n)
        z = torch.zeros(shape)
        return NetworkState(v=torch.rand(shape, generator=g) * 0.8, i_e=z.clone(), i_i=z.clone(),
                            adapt=z.clone(), x=torch.ones(shape), refractory=torch.zeros(shape, dtype=torch.int32),
                            pending=torch.full(shape, -1, dtype=torch.int32))

    def run(self, state: NetworkState, n_steps: int, *, seed: int = 0,
            forced: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] | None = None,
            progress: bool = False, chunk: int = 2000) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Advance ``state`` (in place) by ``n_steps`` steps of ``dt_ms``.

        ``forced`` maps a step to ``(batch_idx, neuron_idx, delay_steps)``: those neurons are made to
        spike ``delay_steps`` later (stimulus-evoked direct activation). Returns the spikes as
        ``(step, batch, neuron)`` int arrays. The noise comes from ``seed``.
        """
        c = self.config
        dt = c.dt_ms
        a_m, a_e, a_i = dt / c.tau_m_ms, math.exp(-dt / c.tau_e_ms), math.exp(-dt / c.tau_i_ms)
        a_ad, a_rec = math.exp(-dt / c.tau_adapt_ms), dt / c.tau_rec_ms
        noise_sd = c.sigma * math.sqrt(a_m)                        # Euler-Maruyama for sigma*sqrt(tau)*xi
        n_ref = int(round(c.refractory_ms / dt))
        exc = torch.as_tensor(self.excitatory)
        csr = self._csr_by_pre()
        g = torch.Generator().manual_seed(int(seed))
        forced = forced or {}
        out: list[torch.Tensor] = []
        s = state
        bar = tqdm(total=n_steps, disable=not progress, unit="step", desc="virtual organoid", unit_scale=True)
        try:
            # noise is drawn in chunks (fewer RNG calls) of at most ~16 M numbers
            chunk = max(1, min(chunk, 16_000_000 // s.v.numel()))
            for c0 in range(0, n_steps, chunk):
                m = min(chunk, n_steps - c0)
                noise = torch.randn((m, *s.v.shape), generator=g).mul_(noise_sd)
                for k in range(m):
                    step = c0 + k
                    if step in forced:
                        b, i, delay = forced[step]
                        s.pending[b, i] = torch.as_tensor(delay + 1, dtype=torch.int32)  # fires at step + delay
                    s.v.add_(a_m * (self.mu - s.v + s.i_e - s.i_i - s.adapt)).add_(noise[k])
                    s.pending.sub_(1)
                    # a forced (antidromic) spike colliding with refractoriness is lost, as in axons
                    spk = ((s.v >= 1.0) | (s.pending == 0)) & (s.refractory <= 0)
                    s.refractory.sub_(1)
                    s.i_e.mul_(a_e)
                    s.i_i.mul_(a_i)
                    s.adapt.mul_(a_ad)
                    s.x.add_(a_rec * (1.0 - s.x))
                    idx = spk.nonzero()
                    if len(idx):
                        self._spike(s, idx, csr, exc, n_ref, c)
                        idx = torch.cat([torch.full((len(idx), 1), step), idx], 1)
                        out.append(idx)
                    # during refractoriness the membrane is clamped at reset
                    s.v.masked_fill_(s.refractory > 0, 0.0)
                bar.update(m)
        finally:
            bar.close()
        spikes = torch.cat(out).numpy() if out else np.zeros((0, 3), np.int64)
        return spikes[:, 0], spikes[:, 1], spikes[:, 2]

    def _spike(self, s: NetworkState, idx: torch.Tensor, csr: tuple, exc: torch.Tensor,
               n_ref: int, c: NetworkConfig) -> None:
        ptr, post, wval = csr
        b, j = idx[:, 0], idx[:, 1]
        n = s.v.shape[1]
        is_e = exc[j]
        eff = torch.where(is_e, c.use_U * s.x[b, j], torch.ones_like(s.x[b, j]))
        # scatter each spike's outgoing synapses (CSR by presynaptic neuron) into its trial's currents
        start, count = ptr[j], ptr[j + 1] - ptr[j]
        syn = torch.repeat_interleave(torch.arange(len(j)), count)
        within = torch.arange(len(syn)) - torch.repeat_interleave(torch.cumsum(count, 0) - count, count)
        k = start[syn] + within
        flat = b[syn] * n + post[k]
        val = wval[k] * eff[syn]
        e_syn = is_e[syn]
        s.i_e.view(-1).index_add_(0, flat[e_syn], val[e_syn])
        s.i_i.view(-1).index_add_(0, flat[~e_syn], val[~e_syn])
        s.x[b, j] = s.x[b, j] * (1.0 - torch.where(is_e, c.use_U, 0.0))
        s.v[b, j] = 0.0
        s.adapt[b, j] += c.b_adapt
        s.refractory[b, j] = n_ref
        s.pending[b, j] = torch.where(s.pending[b, j] > 0, s.pending[b, j], -1)
