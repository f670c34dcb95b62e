"""The neuron and synapse dynamics of :class:`SpikingNetworkModel`, one time step at a time.

Small, explicit-state pieces in the spirit of snnTorch: :class:`NetworkState` holds every state
variable as a ``[B, n]`` tensor (``B`` independent trajectories, ``n`` neurons), and
:func:`lif_step` advances it by one step of ``dt`` given the already-resolved parameters
(:class:`StepParams`). Discrete-time equations (``alpha_z = exp(-dt / tau_z)``):

    e_{t-1}  = x_{t-1} * s_{t-1}                                   (released transmitter, per presyn. neuron)
    I_{k,t}  = alpha_syn_k * I_{k,t-1} + W_k e_{t-1}               (exponential synaptic current, type k)
    w_t      = alpha_m * w_{t-1} + (1 - alpha_m) * sum_k I_{k,t} - theta * s_{t-1} + ext_t
    a_t      = alpha_a * a_{t-1} + s_{t-1}                          (spike-frequency adaptation)
    x_t      = 1 - alpha_rec * (1 - x_{t-1} * (1 - U)^{s_{t-1}})   (Tsodyks-Markram depression)
    eta_t    = log(r0 * dt) + (b + w_t - theta - beta * a_t) / delta_u
    eta_t   <- eta_t - softplus(eta_t - eta_max)                    (saturation at lambda_max, if set)
    eta_t   <- log(exp(eta_t) + m_t)                                (directly evoked spikes, if any)
    s_t      ~ Observation(eta_t)                                   (escape noise: E[s_t] ~ exp(eta_t))

``v = b + w`` is the membrane potential in units of the firing threshold (``theta`` ~ 1): ``b`` is
the resting drive (bias), the reset subtracts ``theta`` per spike, adaptation raises the
effective threshold by ``beta * a`` and ``ext`` is the stimulation input (threshold units per
step); ``m`` (optional) adds directly evoked spikes to the expected count of the step (the
direct pathway of :class:`~organoid_sim.nn.stim_coupling.StimulusCoupling`). The intensity
is ``g = r0 * exp((v - theta - beta a) / delta_u)`` Hz (exponential escape noise, Gerstner et al.
2014, ch. 9), saturated as ``lambda = 1 / (1 / g + 1 / lambda_max)`` when ``eta_max`` is set
(:func:`saturate`). All the state-to-state maps are linear in the past spikes except the
depression ``x``, which is why the teacher-forced likelihood is parallel over time (see
:mod:`organoid_sim.fit.teacher`).
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch

__all__ = ["NetworkState", "StepParams", "lif_step", "saturate"]


@dataclass
class NetworkState:
    """State of ``B`` trajectories of ``n`` neurons (``[B, n]``; ``I`` is ``[n_syn, B, n]``)."""

    w: torch.Tensor  # membrane potential minus bias (threshold units)
    I: torch.Tensor  # synaptic currents per synapse type (threshold units)
    a: torch.Tensor  # adaptation trace (spikes)
    x: torch.Tensor  # available synaptic resources (0..1)
    s: torch.Tensor  # spike counts of the last step

    @classmethod
    def rest(cls, batch: int, n: int, n_syn: int, device=None, dtype=torch.float32) -> "NetworkState":
        """All neurons at rest: no current, no adaptation, full resources, no spike."""
        z = torch.zeros(batch, n, device=device, dtype=dtype)
        return cls(w=z, I=torch.zeros(n_syn, batch, n, device=device, dtype=dtype), a=z.clone(),
                   x=torch.ones_like(z), s=z.clone())

    def detach(self) -> "NetworkState":
        """The same state cut from the autograd graph (truncated backpropagation)."""
        return NetworkState(**{f.name: getattr(self, f.name).detach() for f in fields(self)})


@dataclass
class StepParams:
    """Parameters resolved for one step size: decays, signed weights, per-neuron constants."""

    weight: torch.Tensor      # [n_syn, n_post, n_pre] effective (signed, masked) weights
    alpha_syn: torch.Tensor   # [n_syn, 1, 1]
    alpha_m: float
    alpha_a: torch.Tensor     # [n]
    alpha_rec: torch.Tensor   # [n]
    log1m_u: torch.Tensor     # [n] log(1 - U)
    theta: torch.Tensor       # [n]
    beta: torch.Tensor        # [n]
    bias: torch.Tensor        # [n]
    inv_delta_u: torch.Tensor  # [n]
    log_r0_dt: float
    eta_max: torch.Tensor | None = None  # [n] log of the largest expected count per step (None: no cap)


def saturate(eta: torch.Tensor, eta_max: torch.Tensor | None) -> torch.Tensor:
    """Saturating escape rate: ``mu' = 1 / (1 / mu + 1 / mu_max)`` in log form,
    ``eta' = eta - softplus(eta - eta_max)`` (``mu = exp(eta)`` expected spikes per step).

    The rate of a neuron with dead time ``1 / lambda_max`` driven at ``lambda`` (a refractory
    period): close to ``mu`` for weak drive, never above ``mu_max``. ``eta_max=None`` leaves
    ``eta`` unchanged.

    Parameters
    ----------
    eta : torch.Tensor
        Log expected counts per step.
    eta_max : torch.Tensor, optional
        Log of the largest expected count per step.

    Returns
    -------
    torch.Tensor
        Saturated ``eta``.
    """
    if eta_max is None:
        return eta
    return eta - torch.nn.functional.softplus(eta - eta_max)


def synaptic_input(p: StepParams, e: torch.Tensor, sparse: bool = False) -> torch.Tensor:
    """``W_k e`` for every synapse type: ``[n_syn, B, n_post]``.

    ``sparse=True`` (no gradient, one trajectory) gathers only the columns of neurons that spiked:
    event-driven propagation, much cheaper than a dense matrix product when few neurons fire.
    """
    if sparse and e.shape[0] == 1:
        idx = torch.nonzero(e[0]).squeeze(1)
        if idx.numel() == 0:
            return torch.zeros(p.weight.shape[0], 1, p.weight.shape[1], dtype=e.dtype, device=e.device)
        cols = p.weight.index_select(2, idx)                     # [n_syn, n_post, k]
        return (cols @ e[0, idx]).unsqueeze(1)
    k, n_post, n_pre = p.weight.shape
    if e.shape[0] * k * n_post * n_pre <= 32768:
        # tiny networks: one broadcast multiply-and-sum; BLAS calls on matrices this small cost
        # more in thread start-up than in arithmetic (badly so on a busy CPU)
        return (e[None, :, None, :] * p.weight[:, None]).sum(-1)
    out = e @ p.weight.reshape(k * n_post, n_pre).T                    # [B, k * post]
    return out.view(e.shape[0], k, n_post).transpose(0, 1)


def lif_step(p: StepParams, st: NetworkState, ext: torch.Tensor | None, uniform: torch.Tensor,
             observation, spike_fn, sparse: bool = False,
             direct: torch.Tensor | None = None) -> tuple[NetworkState, torch.Tensor]:
    """Advance ``st`` by one step; returns the new state and ``eta`` (log expected count, ``[B, n]``).

    ``ext``: membrane input (threshold units); ``direct``: expected directly evoked spikes in this
    step (``>= 0``), added to the expected count ``exp(eta)``.

    Parameters
    ----------
    p : StepParams
        Resolved parameters of the step.
    st : NetworkState
        State before the step.
    ext : torch.Tensor, optional
        ``[B, n]`` membrane input.
    uniform : torch.Tensor
        ``[B, n]`` uniform numbers of the spike draw.
    observation : PoissonObservation or BernoulliObservation
        The count model.
    spike_fn : Surrogate
        Spike nonlinearity with its surrogate gradient.
    sparse : bool
        Use sparse products for the recurrent input.
    direct : torch.Tensor, optional
        ``[B, n]`` expected directly evoked spikes.

    Returns
    -------
    state : NetworkState
        State after the step (its ``s`` the spikes).
    eta : torch.Tensor
        ``[B, n]`` log expected counts.
    """
    s = st.s
    e = st.x * s
    I = p.alpha_syn * st.I + synaptic_input(p, e, sparse)
    w = p.alpha_m * st.w + (1.0 - p.alpha_m) * I.sum(0) - p.theta * s
    if ext is not None:
        w = w + ext
    a = p.alpha_a * st.a + s
    x = 1.0 - p.alpha_rec * (1.0 - st.x * torch.exp(s * p.log1m_u))
    eta = p.log_r0_dt + (p.bias + w - p.theta - p.beta * a) * p.inv_delta_u
    eta = saturate(eta, p.eta_max)
    if direct is not None:  # evoked spikes come on top of the (saturated) network drive
        eta = torch.logaddexp(eta, torch.log(direct))
    s_new = observation.sample(eta, uniform, spike_fn)
    return NetworkState(w=w, I=I, a=a, x=x, s=s_new), eta
