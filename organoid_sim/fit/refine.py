"""Free-running refinement of a :class:`SpikingNetworkModel` (Bellec et al. 2021 in spirit).

The network runs without teacher forcing: ``batch`` trajectories of ``window_s`` seconds,
continued from one iteration to the next (truncated backpropagation through time, so the chains
stay at the network's own stationary regime). Spikes are sampled exactly; gradients pass through
the samples with the model's surrogate (:mod:`organoid_sim.nn.surrogate`). The loss compares
differentiable summary statistics of the recorded units (:mod:`organoid_sim.fit.summary`) with
the same statistics of the data; all parameters move, including the hidden neurons' (which have
no data of their own) and the depression/adaptation time constants that shape the bursts.
"""

from __future__ import annotations

import copy

import torch
from tqdm.auto import tqdm

from ..nn.neurons import lif_step
from .summary import data_windows, loss_weights, stats_loss, summary_stats
from .teacher import _data_term, network_link, split_index

__all__ = ["refine_free_running"]


def refine_free_running(model, counts: torch.Tensor, *, steps: int = 60, batch: int = 16, window_s: float = 2.0,
                        bin_ms: float = 10.0, n_lags: int = 100, lr: float = 0.01, burn_in_s: float = 2.0, weights: dict | None = None,
                        likelihood_weight: float = 1.0, validation_fraction: float = 0.0, seed: int = 0,
                        burst: tuple[float, int] | None = None, persistence_ms: float = 60.0,
                        average_from: float | None = None, progress: bool = True, checkpoint=None, design: torch.Tensor | None = None) -> dict:
    """Adam steps on the summary-statistics loss. ``counts``: recorded ``[T, n_recorded]`` counts
    (prepared).

    The model ends with the iterate of the lowest loss (smoothed over iterations). With
    ``average_from`` (a fraction of ``steps``) it ends instead with the average of the parameters
    after each step from ``average_from * steps`` on (Polyak-Ruppert averaging of the noise that
    gradients from short random runs carry; an interruption before the averaging starts keeps the
    best iterate). Measured on three wells in docs/models.md: it raised F2's correlations but
    made D1's bursts too frequent, and with few steps it averages unconverged iterates, so it is
    off by default.

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
    """
    dt = model.dt_ms
    L = max(2, int(round(window_s * 1000.0 / dt)))
    nr = model.n_recorded
    stat_kw = {}
    if burst is not None and loss_weights(weights)["burst_persistence"] > 0:
        # (ISI_N window in s, N) -> (steps, spikes); skipped when a window cannot hold the lags
        win, lags = max(1, int(round(burst[0] * 1000.0 / dt))), max(1, int(round(persistence_ms / dt)))
        if win + lags < L:
            stat_kw = {"burst": (win, float(burst[1])), "persistence_lags": lags}
    with torch.no_grad():
        target = summary_stats(data_windows(counts, L), dt, bin_ms, n_lags, **stat_kw)
    frozen = ("stim_coupling", "log_tau_rec_ms", "log_tau_adapt_ms", "use_logit")
    params = [p for name, p in model.named_parameters() if not name.startswith(frozen)]
    anchor = None
    if likelihood_weight > 0:
        cut = split_index(counts.shape[0], validation_fraction)
        X = model.teacher_design(counts) if design is None else design
        X, y = X[:cut], counts[:cut]
        ll_fn = _data_term(X, y, model.observation, network_link(model))
        n_spk = max(float(y.sum()), 1.0)
        with torch.no_grad():
            ll_start = float(ll_fn(*model.teacher_readout()))
        anchor = (ll_fn, ll_start, n_spk)
    opt = torch.optim.Adam(params, lr=lr)
    gen = torch.Generator(device=model._device())
    gen.manual_seed(int(seed) + 1)
    _, state, _ = model.run(int(round(burn_in_s * 1000.0 / dt)), batch=batch, seed=seed + 2, record=False)
    best = {"loss": float("inf"), "state": copy.deepcopy(model.state_dict()), "step": -1}
    smooth, parts = None, {}
    prev_state, averaged = best["state"], None
    avg_start = None if average_from is None else int(average_from * steps)
    bar = tqdm(range(steps), disable=not progress, desc="free-running refinement", unit="step")
    try:
        for it in bar:
            p = model.step_params()
            u = torch.rand((L, batch, model.n_neurons), generator=gen, device=model._device())
            out = []
            st = state
            for k in range(L):
                st, _ = lif_step(p, st, None, u[k], model.observation, model.surrogate)
                out.append(st.s[:, :nr])
            sim = summary_stats(torch.stack(out), dt, bin_ms, n_lags, **stat_kw)
            loss, parts = stats_loss(sim, target, weights)
            if anchor is not None:
                lost = (anchor[1] - anchor[0](*model.teacher_readout())) / anchor[2]
                loss = loss + likelihood_weight * lost
                parts["nll_increase"] = float(lost.detach())
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            state = st.detach()
            smooth = parts if smooth is None else {k: 0.7 * smooth[k] + 0.3 * v for k, v in parts.items()}
            total = sum(smooth.values())
            # the loss was measured with the parameters before this step
            if total < best["loss"] and it >= 3:
                best = {"loss": total, "state": prev_state, "step": it}
            prev_state = copy.deepcopy(model.state_dict())
            if avg_start is not None and it >= avg_start:
                averaged = _running_mean(averaged, prev_state, it - avg_start)
            bar.set_postfix({k: f"{v:.3f}" for k, v in smooth.items()})
            if checkpoint is not None and it % 10 == 9:
                checkpoint.save(model, "refine", it, smooth)
    finally:  # also on KeyboardInterrupt: keep the averaged (or best) parameters and leave a checkpoint
        if averaged is not None:
            model.load_state_dict(averaged)
        elif best["step"] >= 0:
            model.load_state_dict(best["state"])
        if checkpoint is not None:
            checkpoint.save(model, "refine_best", best["step"], smooth or {})
        bar.close()
    return {"refine_loss": best["loss"], "refine_best_step": best["step"], "refine_averaged": averaged is not None,
            **{f"refine_{k}": v for k, v in parts.items()}}


def _running_mean(mean: dict | None, state: dict, k: int) -> dict:
    """The mean of ``k + 1`` state dicts from the mean of the first ``k`` and the next one
    (floating-point entries only; the others are taken from ``state``)."""
    if mean is None or k == 0:
        return {n: v.clone() for n, v in state.items()}
    return {n: mean[n] + (v - mean[n]) / (k + 1) if v.is_floating_point() else v for n, v in state.items()}
