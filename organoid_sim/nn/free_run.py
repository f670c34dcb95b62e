"""A differentiable free run of the LIF network with a hand-written adjoint (backpropagation
through time).

:func:`free_run` gives the same spikes as ``len(u)`` calls of :func:`~.neurons.lif_step` and the
same surrogate gradients as autograd through them, at a fraction of the cost for small networks.
Autograd records ~40 nodes per time step on ``[B, n]`` tensors this small, and walking that graph
costs far more than the arithmetic. Here the forward pass runs without a graph and keeps the
states. The backward pass computes every factor that does not depend on the incoming gradient for
all steps at once (the surrogate derivative of the spike draw included, through the observation
model's own ``sample``), runs the adjoint recursion with ~20 small operations per step, and reduces
the parameter gradients once over the stacked steps.

Adjoint of one step (``lambda_q = dLoss/dq``; ``z = b + w - theta - beta a`` and
``eta0 = log(r0 dt) + z / delta_u`` as in :mod:`.neurons`; ``D = ds/d eta0`` under the surrogate;
``E_t = exp(s_{t-1} log(1 - U))``; ``lambda_e`` is the gradient of the released transmitter
``e = x s``; quantities of step ``t + 1`` are zero past the last step)::

    lambda_s_t = G_t - theta lambda_w_{t+1} + lambda_a_{t+1} + alpha_rec E_{t+1} x_t log(1 - U) lambda_x_{t+1}
                 + x_t lambda_e_{t+1}
    dz_t       = lambda_s_t D_t / delta_u
    lambda_w_t = dz_t + alpha_m lambda_w_{t+1}
    lambda_a_t = alpha_a lambda_a_{t+1} - beta dz_t
    lambda_I_t = alpha_syn lambda_I_{t+1} + (1 - alpha_m) lambda_w_t
    lambda_e_t = sum_k W_k^T lambda_I_{k,t}
    lambda_x_t = alpha_rec E_{t+1} lambda_x_{t+1} + s_t lambda_e_{t+1}

``G_t`` is the loss's gradient with respect to the recorded spikes of step ``t``.
"""

from __future__ import annotations

import torch

from .neurons import NetworkState, StepParams, lif_step, saturate

__all__ = ["free_run"]

_PARAMS = ("weight", "alpha_syn", "alpha_a", "alpha_rec", "log1m_u", "theta", "beta", "bias", "inv_delta_u",
           "eta_max")


def free_run(p: StepParams, state: NetworkState, uniform: torch.Tensor, observation, spike_fn,
             n_out: int, loops=None) -> tuple[NetworkState, torch.Tensor]:
    """``len(uniform)`` steps of the network from ``state`` without input, differentiable in the
    parameters ``p`` (not in ``state``: truncated backpropagation through time).

    Parameters
    ----------
    p : StepParams
        Resolved parameters (tensors may require grad; ``alpha_m`` and ``log_r0_dt`` are constants).
    state : NetworkState
        Start state (``[B, n]``); no gradient flows into it.
    uniform : torch.Tensor
        ``[L, B, n]`` uniform numbers of the spike draws.
    observation : PoissonObservation or BernoulliObservation
        The count model.
    spike_fn : Surrogate
        Spike nonlinearity with its surrogate gradient.
    n_out : int
        Spikes of the first ``n_out`` neurons are returned (the recorded ones).
    loops : object, optional
        Other implementations of the two loops over time (the compiled ones of
        :mod:`organoid_sim.engine.trajectory`, wrapped by :mod:`organoid_sim.fit.refine`):
        ``loops.forward(p, state, uniform, observation) -> (S, X, A, Wm, Ip, I_last)``, the stacked
        states as :func:`lif_step` gives them (``S, X, A`` ``[L + 1, B, n]`` from the start state
        on, ``Wm`` ``[L, B, n]``, ``Ip`` ``[L, K, B, n]`` the currents before each step, ``I_last``
        after the last), and ``loops.adjoint(G, Dz, S, X, E, q, alpha_m)`` the stacked
        ``lambda_s, lambda_w, lambda_a, lambda_I, lambda_x`` of the recursion below. Either may
        return None (e.g. for a device it does not run on): then ``lif_step`` and the torch
        recursion run.

    Returns
    -------
    state : NetworkState
        State after the last step (no graph).
    spikes : torch.Tensor
        ``[L, B, n_out]`` spike counts, differentiable in the parameters of ``p``.
    """
    tensors = [getattr(p, name) for name in _PARAMS]
    present = [t is not None for t in tensors]
    args = [t for t in tensors if t is not None]
    out = _FreeRun.apply(p, state, uniform, observation, spike_fn, int(n_out), present, loops, *args)
    *fields_, spikes = out
    w, I, a, x, s = fields_
    return NetworkState(w=w, I=I, a=a, x=x, s=s), spikes


class _FreeRun(torch.autograd.Function):
    """Forward: ``lif_step`` without a graph, states kept. Backward: the adjoint recursion."""

    @staticmethod
    def forward(ctx, p, state, uniform, observation, spike_fn, n_out, present, loops, *args):
        st = state.detach()   # autograd.Function.forward already runs without a graph
        states = None if loops is None else loops.forward(p, st, uniform, observation)
        S, X, A, Wm, Ip, I_last = states if states is not None else _stepped(p, st, uniform, observation, spike_fn)
        ctx.save_for_backward(S, X, A, Wm, Ip, uniform, *args)
        ctx.log_r0_dt, ctx.alpha_m = p.log_r0_dt, p.alpha_m    # the constants; the tensors are saved above
        ctx.observation, ctx.spike_fn, ctx.n_out, ctx.present = observation, spike_fn, n_out, present
        ctx.loops = loops
        last = (Wm[-1].clone(), I_last, A[-1].clone(), X[-1].clone(), S[-1].clone())
        ctx.mark_non_differentiable(*last)
        return (*last, S[1:, :, :n_out].clone())

    @staticmethod
    def backward(ctx, gw, gI, ga, gx, gs, g_spikes):
        S, X, A, Wm, Ip, U, *args = ctx.saved_tensors
        it = iter(args)
        q = {name: (next(it) if here else None) for name, here in zip(_PARAMS, ctx.present)}
        n_out = ctx.n_out
        L, B, n = Wm.shape
        S_prev, X_prev = S[:-1], X[:-1]
        z = q["bias"] + Wm - q["theta"] - q["beta"] * A[1:]
        D, D_max = _spike_derivatives(ctx.log_r0_dt + z * q["inv_delta_u"], q["eta_max"], U, ctx.observation,
                                      ctx.spike_fn)
        E = torch.exp(S_prev * q["log1m_u"])              # E_t, t = 1..L
        G = torch.zeros(L, B, n, dtype=Wm.dtype, device=Wm.device)
        G[:, :, :n_out] = g_spikes
        Dz = D * q["inv_delta_u"]
        lams = None if ctx.loops is None else ctx.loops.adjoint(G, Dz, S, X, E, q, ctx.alpha_m)
        lam_s, lam_w, lam_a, lam_I, lam_x = lams if lams is not None else _adjoint(G, Dz, S, X, E, q, ctx.alpha_m)
        dz = lam_s * D * q["inv_delta_u"]
        e = X_prev * S_prev
        grads = {
            "weight": torch.einsum("tkbi,tbj->kij", lam_I, e),
            "alpha_syn": (lam_I * Ip).sum((0, 2, 3)).view(-1, 1, 1),
            "alpha_a": (lam_a * A[:-1]).sum((0, 1)),
            "alpha_rec": (lam_x * (X_prev * E - 1.0)).sum((0, 1)),
            "log1m_u": (lam_x * q["alpha_rec"] * X_prev * E * S_prev).sum((0, 1)),
            "theta": -(dz + lam_w * S_prev).sum((0, 1)),
            "beta": -(dz * A[1:]).sum((0, 1)),
            "bias": dz.sum((0, 1)),
            "inv_delta_u": (lam_s * D * z).sum((0, 1)),
            "eta_max": None if D_max is None else (lam_s * D_max).sum((0, 1)),
        }
        out = [grads[name].sum_to_size(q[name].shape) if ctx.needs_input_grad[8 + i] else None
               for i, name in enumerate(n_ for n_, here in zip(_PARAMS, ctx.present) if here)]
        return (None,) * 8 + tuple(out)


def _stepped(p: StepParams, st: NetworkState, uniform: torch.Tensor, observation, spike_fn):
    """The forward pass by ``lif_step``: ``(S, X, A, Wm, Ip, I_last)`` as :func:`free_run`'s
    ``forward`` returns them."""
    states = [st]
    for k in range(len(uniform)):
        st, _ = lif_step(p, st, None, uniform[k], observation, spike_fn)
        states.append(st)
    S = torch.stack([q.s for q in states])            # [L + 1, B, n], S[0] the start state's
    X = torch.stack([q.x for q in states])
    A = torch.stack([q.a for q in states])
    Wm = torch.stack([q.w for q in states[1:]])       # [L, B, n]
    Ip = torch.stack([q.I for q in states[:-1]])      # [L, K, B, n] synaptic currents before each step
    return S, X, A, Wm, Ip, st.I


def _spike_derivatives(eta0: torch.Tensor, eta_max: torch.Tensor | None, uniform: torch.Tensor, observation,
                       spike_fn) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Surrogate derivatives of every step's spike draw with respect to ``eta0`` (before the
    saturation) and to ``eta_max``, all steps at once: autograd through the observation model's
    own ``sample``, which acts entry by entry."""
    with torch.enable_grad():
        e0 = eta0.detach().requires_grad_(True)
        em = None if eta_max is None else eta_max.detach().expand_as(e0).clone().requires_grad_(True)
        s = observation.sample(saturate(e0, em), uniform, spike_fn)
        leaves = (e0,) if em is None else (e0, em)
        grads = torch.autograd.grad(s, leaves, torch.ones_like(s), allow_unused=True)
    D = torch.zeros_like(e0) if grads[0] is None else grads[0]
    if em is None:
        return D, None
    return D, torch.zeros_like(em) if grads[1] is None else grads[1]


def _transposed_input(W: torch.Tensor, lam_I: torch.Tensor) -> torch.Tensor:
    """``sum_k W_k^T lam_I_k`` (``[B, n_pre]``): the adjoint of
    :func:`~.neurons.synaptic_input`, with its rule for tiny networks (one broadcast
    multiply-and-sum beats a BLAS call there)."""
    k, n_post, n_pre = W.shape
    if lam_I.shape[1] * k * n_post * n_pre <= 32768:
        return (lam_I.unsqueeze(-1) * W.unsqueeze(1)).sum((0, 2))
    return torch.einsum("kbi,kij->bj", lam_I, W)


def _adjoint(G, Dz, S, X, E, q, alpha_m: float):
    """The adjoint recursion from the last step back to the first (module docstring); returns the
    stacked ``lambda_s, lambda_w, lambda_a, lambda_I, lambda_x`` of steps ``1..L``."""
    L = G.shape[0]
    W, alpha_syn, alpha_a = q["weight"], q["alpha_syn"], q["alpha_a"]
    theta, beta, alpha_rec = q["theta"], q["beta"], q["alpha_rec"]
    # factors of step t + 1 seen from step t (index t - 1 for t = 1..L-1)
    recov = alpha_rec * E[1:]                     # d x_{t+1} / d x_t
    through_x = recov * X[1:-1] * q["log1m_u"]    # d x_{t+1} / d s_t
    zero = torch.zeros_like(G[0])
    lw, la, lx, le = zero, zero, zero, zero
    lI = torch.zeros((W.shape[0],) + G.shape[1:], dtype=G.dtype, device=G.device)
    out_s, out_w, out_a, out_I, out_x = [], [], [], [], []
    for t in range(L - 1, -1, -1):                # t is step t + 1 in the docstring's numbering
        if t == L - 1:
            ls = G[t]
            lx_new = zero
        else:
            ls = G[t] - theta * lw + la + through_x[t] * lx + X[t + 1] * le
            lx_new = recov[t] * lx + S[t + 1] * le
        dz = ls * Dz[t]
        lw = dz + alpha_m * lw
        la = alpha_a * la - beta * dz
        lI = alpha_syn * lI + (1.0 - alpha_m) * lw
        le = _transposed_input(W, lI)
        lx = lx_new
        out_s.append(ls), out_w.append(lw), out_a.append(la), out_I.append(lI), out_x.append(lx)
    rev = lambda xs: torch.stack(xs[::-1])  # noqa: E731
    return rev(out_s), rev(out_w), rev(out_a), rev(out_I), rev(out_x)
