"""Free-running refinement of a :class:`SpikingNetworkModel` (Bellec et al. 2021 in spirit).

The network runs without teacher forcing: ``batch`` trajectories of ``window_s`` seconds,
continued from one iteration to the next (truncated backpropagation through time, so the chains
stay at the network's own stationary regime). Spikes are sampled exactly; gradients pass through
the samples with the model's surrogate (:mod:`organoid_sim.nn.surrogate`) and back through the
steps by the hand-written adjoint of :func:`organoid_sim.nn.free_run.free_run` (autograd's
gradients at a fraction of its cost on networks this small). The loss compares differentiable
summary statistics of the recorded units (:mod:`organoid_sim.fit.summary`) with the same
statistics of the data; weights, biases, thresholds, adaptation strengths and escape noise move,
the hidden neurons' included (they have no data of their own); the time constants and ``U`` stay
(the teacher-forced likelihood anchor's design depends on them; calibration moves ``U`` and the
recovery time constant).
"""

from __future__ import annotations

import copy
from dataclasses import replace

import numpy as np
import torch
from tqdm.auto import tqdm

from ..engine.trajectory import run_adjoint, run_recorded
from ..nn.free_run import free_run
from .config import (CHECKPOINT_EVERY, GRAD_CLIP_NORM, LOSS_SMOOTHING, MIN_BEST_STEP, REFINE_BURN_IN_SEED_OFFSET,
                     REFINE_NOISE_SEED_OFFSET, RefineConfig)
from .summary import LOSS_WEIGHTS, data_windows, loss_weights, stats_loss, summary_stats
from .teacher import network_term, split_index

#: ``RefineConfig(weights=NOISE_WEIGHTS)``: loss weights from the recording's variability (:func:`noise_weights`)
NOISE_WEIGHTS = "noise"

__all__ = ["refine_free_running"]


def refine_free_running(model, counts: torch.Tensor, config: RefineConfig | None = None, *, seed: int = 0,
                        progress: bool = True, checkpoint=None, design: torch.Tensor | None = None,
                        **options) -> dict:
    """Adam steps on the summary-statistics loss. ``counts``: recorded ``[T, n_recorded]`` counts
    (prepared).

    The model ends with the iterate of the lowest loss (smoothed over iterations). With
    ``average_from`` (a fraction of ``steps``) it ends instead with the average of the parameters
    after each step from ``average_from * steps`` on (Polyak-Ruppert averaging of the noise that
    gradients from short random runs carry; an interruption before the averaging starts keeps the
    best iterate). With few steps it averages unconverged iterates; it is off by default
    (docs/benchmarks.md has the measured effect).

    ``likelihood_weight`` adds the teacher-forced negative log-likelihood per spike (nats, minus
    its value at the start) to the loss, so refinement fixes the free-running statistics without
    giving up the one-step-ahead predictions. The likelihood is taken on the first
    ``1 - validation_fraction`` of ``counts`` only, so the last part stays held out for
    :func:`organoid_sim.fit.fit_network`'s check; ``design`` is ``model.teacher_design(counts)``
    when the caller already has it. The time constants and ``U`` stay as they are (the
    teacher-forced design depends on them).

    ``burst``: ``(max_isi_n in s, n_spikes)`` of the data's ISI_N burst detector
    (:func:`organoid_sim.stats.detect_bursts`); with it the loss also matches the burst
    persistence over ``persistence_ms`` (:mod:`organoid_sim.fit.summary`).

    Parameters
    ----------
    model : SpikingNetworkModel
        The network (built and teacher-forced fitted); updated in place.
    counts : torch.Tensor
        Recorded ``[T, n_recorded]`` counts, prepared by the observation model.
    config : RefineConfig, optional
        The options (default ``RefineConfig()``).
    seed : int
        Seed of the simulated trajectories.
    progress : bool
        Show a progress bar.
    checkpoint : Checkpointer, optional
        Where to leave checkpoints.
    design : torch.Tensor, optional
        ``model.teacher_design(counts)`` when the caller has it.
    **options
        :class:`RefineConfig` fields replacing those of ``config``.

    Returns
    -------
    dict
        ``refine_loss``, ``refine_best_step``, ``refine_averaged`` and the loss terms
        (``refine_<term>``) of the last step.
    """
    c = replace(config or RefineConfig(), **options)
    dt = model.dt_ms
    L = max(2, int(round(c.window_s * 1000.0 / dt)))
    stat_kw = _stat_options(c, dt, L)
    with torch.no_grad():
        windows = data_windows(counts, L)
        target = summary_stats(windows, dt, c.bin_ms, c.n_lags, **stat_kw)
        weights = noise_weights(windows, dt, c, stat_kw) if c.weights == NOISE_WEIGHTS else c.weights
    frozen = ("stim_coupling", "log_tau_rec_ms", "log_tau_adapt_ms", "use_logit")
    params = [p for name, p in model.named_parameters() if not name.startswith(frozen)]
    anchor = _likelihood_anchor(model, counts, c.validation_fraction, design) if c.likelihood_weight > 0 else None
    opt = torch.optim.Adam(params, lr=c.lr)
    gen = torch.Generator(device=model.torch_device())
    gen.manual_seed(int(seed) + REFINE_NOISE_SEED_OFFSET)
    _, state, _ = model.run(int(round(c.burn_in_s * 1000.0 / dt)), batch=c.batch,
                            seed=seed + REFINE_BURN_IN_SEED_OFFSET, record=False)
    best = {"loss": float("inf"), "state": copy.deepcopy(model.state_dict()), "step": -1}
    smooth, parts = None, {}
    prev_state, averaged = best["state"], None
    avg_start = None if c.average_from is None else int(c.average_from * c.steps)
    bar = tqdm(range(c.steps), disable=not progress, desc="free-running refinement", unit="step")
    try:
        for it in bar:
            u = torch.rand((L, c.batch, model.n_neurons), generator=gen, device=model.torch_device())
            st, spikes = free_run(model.step_params(), state, u, model.observation, model.surrogate,
                                  model.n_recorded, loops=CompiledLoops)
            sim = summary_stats(spikes, dt, c.bin_ms, c.n_lags, **stat_kw)
            loss, parts = stats_loss(sim, target, weights)
            if anchor is not None:
                lost = (anchor[1] - anchor[0]()) / anchor[2]
                loss = loss + c.likelihood_weight * lost
                parts["nll_increase"] = float(lost.detach())
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, GRAD_CLIP_NORM)
            opt.step()
            state = st.detach()
            smooth = _smoothed(smooth, parts)
            total = sum(smooth.values())
            # the loss was measured with the parameters before this step
            if total < best["loss"] and it >= MIN_BEST_STEP:
                best = {"loss": total, "state": prev_state, "step": it, "parts": smooth}
            prev_state = copy.deepcopy(model.state_dict())
            if avg_start is not None and it >= avg_start:
                averaged = _running_mean(averaged, prev_state, it - avg_start)
            bar.set_postfix({k: f"{v:.3f}" for k, v in smooth.items()})
            if checkpoint is not None and it % CHECKPOINT_EVERY == CHECKPOINT_EVERY - 1:
                checkpoint.save(model, "refine", it, smooth)
    finally:  # also on KeyboardInterrupt: keep the averaged (or best) parameters and leave a checkpoint
        if averaged is not None:
            model.load_state_dict(averaged)
        elif best["step"] >= 0:
            model.load_state_dict(best["state"])
        if checkpoint is not None:   # the best iterate with its own loss terms, not the last step's
            kept = best["parts"] if averaged is None and best["step"] >= 0 else smooth
            checkpoint.save(model, "refine_best", best["step"], kept or {})
        bar.close()
    return {"refine_loss": best["loss"], "refine_best_step": best["step"], "refine_averaged": averaged is not None,
            **{f"refine_{k}": v for k, v in parts.items()}}


class CompiledLoops:
    """The two loops over time of :func:`~organoid_sim.nn.free_run.free_run` by the compiled ones
    of :mod:`organoid_sim.engine.trajectory` (CPU tensors; None elsewhere, so the torch loops
    run). Same states and gradients as the torch loops up to the arrays' rounding."""

    @staticmethod
    def forward(p, state, uniform: torch.Tensor, observation):
        """``(S, X, A, Wm, Ip, I_last)`` of ``len(uniform)`` steps from ``state`` (see ``free_run``)."""
        if uniform.device.type != "cpu":
            return None
        L, B, n = uniform.shape
        K = p.weight.shape[0]
        S, X, A = (uniform.new_empty((L + 1, B, n)) for _ in range(3))
        Wm, Ip = uniform.new_empty((L, B, n)), uniform.new_empty((L, K, B, n))
        sat = p.eta_max is not None
        v = _vectors(uniform.dtype, n)
        I_last = run_recorded(_array(p.weight, uniform.dtype), _array(p.alpha_syn, uniform.dtype).reshape(-1),
                              float(p.alpha_m), v(p.alpha_a), v(p.alpha_rec), v(p.log1m_u), v(p.theta), v(p.beta),
                              v(p.bias), v(p.inv_delta_u), float(p.log_r0_dt), v(p.eta_max if sat else 0.0), sat,
                              int(observation.max_count), observation.max_count == 1,   # sample()'s one-spike form
                              *(_array(getattr(state, k), uniform.dtype) for k in ("I", "w", "a", "x", "s")),
                              uniform.numpy(), S.numpy(), X.numpy(), A.numpy(), Wm.numpy(), Ip.numpy())
        return S, X, A, Wm, Ip, torch.from_numpy(I_last).to(uniform.dtype)

    @staticmethod
    def adjoint(G, Dz, S, X, E, q: dict, alpha_m: float):
        """``lambda_s, lambda_w, lambda_a, lambda_I, lambda_x`` (stacked over steps) of the recursion."""
        if G.device.type != "cpu":
            return None
        L, B, n = G.shape
        W = q["weight"]
        lams = [G.new_empty((L, B, n)) for _ in range(3)]
        lam_I, lam_x = G.new_empty((L, W.shape[0], B, n)), G.new_empty((L, B, n))
        v = _vectors(G.dtype, n)
        run_adjoint(*(_array(t, G.dtype) for t in (G, Dz, S, X, E, W)), _array(q["alpha_syn"], G.dtype).reshape(-1),
                    float(alpha_m), v(q["alpha_a"]), v(q["alpha_rec"]), v(q["log1m_u"]), v(q["theta"]), v(q["beta"]),
                    *(t.numpy() for t in lams), lam_I.numpy(), lam_x.numpy())
        return (*lams, lam_I, lam_x)


def _array(t: torch.Tensor, dtype) -> np.ndarray:
    """A contiguous NumPy view (or copy) of ``t`` in ``dtype``, cut from autograd."""
    return t.detach().to(dtype).contiguous().numpy()


def _vectors(dtype, n: int):
    """``v(t) -> [n]`` array: a per-neuron parameter (tensor or scalar, broadcast to ``n``)."""
    return lambda t: _array(torch.as_tensor(t).expand(n), dtype)


def noise_weights(windows: torch.Tensor, dt: float, c: RefineConfig, stat_kw: dict) -> dict:
    """Loss weights from the recording's own variability: each term gets the same share of the loss
    that the even and the odd windows (``[L, W, N]``) give each other, the total that share would have
    with :data:`LOSS_WEIGHTS` (``RefineConfig(weights="noise")``; an ablation, not the default).

    Parameters
    ----------
    windows : torch.Tensor
        Recorded counts cut into windows, ``[L, W, N]``.
    dt : float
        Step (ms).
    c : RefineConfig
        The statistics' options.
    stat_kw : dict
        Keywords of :func:`summary_stats` (the burst persistence).

    Returns
    -------
    dict
        Term name -> weight; :data:`LOSS_WEIGHTS` when there are fewer than 4 windows.
    """
    if windows.shape[1] < 4:
        return dict(LOSS_WEIGHTS)
    halves = [summary_stats(windows[:, k::2], dt, c.bin_ms, c.n_lags, **stat_kw) for k in (0, 1)]
    _, noise = stats_loss(halves[0], halves[1], {k: 1.0 for k in LOSS_WEIGHTS})
    total = sum(LOSS_WEIGHTS[k] * v for k, v in noise.items())
    # a term the halves agree on exactly (no bursts in either) would get an unbounded weight
    floor = 1e-3 * max(max(noise.values()), 1e-12)
    return {k: total / (len(noise) * max(v, floor)) for k, v in noise.items()}


def _stat_options(c: RefineConfig, dt: float, L: int) -> dict:
    """Keywords of :func:`summary_stats` for the burst persistence: the data's ISI_N window
    ``(s, N)`` turned into ``(steps, spikes)``; none without a detector, with a zero weight, or
    when a window of ``L`` steps cannot hold the window and its lags."""
    if c.burst is None or (c.weights != NOISE_WEIGHTS and loss_weights(c.weights)["burst_persistence"] <= 0):
        return {}
    win, lags = max(1, int(round(c.burst[0] * 1000.0 / dt))), max(1, int(round(c.persistence_ms / dt)))
    return {"burst": (win, float(c.burst[1])), "persistence_lags": lags} if win + lags < L else {}


def _likelihood_anchor(model, counts: torch.Tensor, validation_fraction: float, design: torch.Tensor | None):
    """``(log-likelihood of the current parameters, a function, its value now, spikes)`` of the
    teacher-forced likelihood on the bins before the held-out part."""
    cut = split_index(counts.shape[0], validation_fraction)
    X = model.teacher_design(counts) if design is None else design
    y = counts[:cut]
    ll_fn = network_term(model, X[:cut], y)
    n_spk = max(float(y.sum()), 1.0)
    with torch.no_grad():
        ll_start = float(ll_fn())
    return ll_fn, ll_start, n_spk


def _smoothed(smooth: dict | None, parts: dict) -> dict:
    """Exponentially smoothed loss terms (:data:`~organoid_sim.fit.config.LOSS_SMOOTHING`)."""
    keep, new = LOSS_SMOOTHING
    return parts if smooth is None else {k: keep * smooth[k] + new * v for k, v in parts.items()}


def _running_mean(mean: dict | None, state: dict, k: int) -> dict:
    """The mean of ``k + 1`` state dicts from the mean of the first ``k`` and the next one
    (floating-point entries only; the others are taken from ``state``)."""
    if mean is None or k == 0:
        return {n: v.clone() for n, v in state.items()}
    return {n: mean[n] + (v - mean[n]) / (k + 1) if v.is_floating_point() else v for n, v in state.items()}
