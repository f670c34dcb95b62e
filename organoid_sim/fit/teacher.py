"""Teacher-forced maximum likelihood for the recorded neurons of a :class:`SpikingNetworkModel`.

With the recorded spikes fed back in place of the model's own, the membrane, currents and
adaptation are linear filters of the data (:mod:`organoid_sim.models.filters`), so the
log-likelihood of all bins is computed at once (no loop over time) and optimised with L-BFGS
(strong-Wolfe line search). The last ``validation_fraction`` of the fitting window is held out:
after every epoch (``iters_per_epoch`` L-BFGS iterations) its bits/spike are measured, the best
parameters are kept, and fitting stops after ``patience`` epochs without improvement.
"""

from __future__ import annotations

import copy

import torch
from tqdm.auto import tqdm

from ..models.base import bits_per_spike
from .checkpoint import Checkpointer

__all__ = ["fit_teacher_forced"]

TF_PARAMS = ("bias", "theta_raw", "log_delta_u", "beta_raw", "weight")


def _slice(feats: dict, a: int, b: int) -> dict:
    return {k: (v[:, a:b] if k == "F1" else v[a:b]) for k, v in feats.items()}


def fit_teacher_forced(model, counts: torch.Tensor, *, validation_fraction: float = 0.1, max_epochs: int = 30,
                       iters_per_epoch: int = 10, patience: int = 3, progress: bool = True,
                       checkpoint: Checkpointer | None = None) -> dict:
    """Fit ``model``'s recorded-neuron parameters to ``counts`` (``[T, n_recorded]``, prepared by the
    observation model, on the model's device). Returns a dict of train/validation bits/spike."""
    obs = model.observation
    feats = model.teacher_features(counts)
    T = counts.shape[0]
    cut = int(T * (1.0 - validation_fraction)) if validation_fraction > 0 else T
    tr, va = _slice(feats, 0, cut), _slice(feats, cut, T)
    y_tr, y_va = counts[:cut], counts[cut:]
    n_tr = float(y_tr.sum().clamp_min(1.0))
    with torch.no_grad():
        ll0_tr = float(obs.null_log_likelihood(y_tr))
        ll0_va = float(obs.null_log_likelihood(y_va)) if len(y_va) else 0.0
    nr = model.n_recorded
    params = [getattr(model, name) for name in TF_PARAMS]
    opt = torch.optim.LBFGS(params, lr=1.0, max_iter=iters_per_epoch, history_size=20,
                            line_search_fn="strong_wolfe", tolerance_grad=1e-6, tolerance_change=1e-9)

    def closure():
        opt.zero_grad()
        loss = -obs.log_likelihood(y_tr, model.teacher_eta(tr)) / n_tr + model.distance_penalty(block=nr)
        loss.backward()
        return loss

    def val_bits() -> float:
        if not len(y_va):
            return float("nan")
        with torch.no_grad():
            return bits_per_spike(float(obs.log_likelihood(y_va, model.teacher_eta(va))), ll0_va, float(y_va.sum()))

    best = {"val": -float("inf"), "state": copy.deepcopy(model.state_dict()), "epoch": 0}
    history = {"train_bits": float("nan"), "val_bits": float("nan")}
    bad = 0
    prev = None
    bar = tqdm(range(max_epochs), disable=not progress, desc="teacher-forced fit", unit="epoch")
    try:
        for epoch in bar:
            loss = float(opt.step(closure).detach())
            with torch.no_grad():
                ll_tr = float(obs.log_likelihood(y_tr, model.teacher_eta(tr)))
            history = {"train_bits": bits_per_spike(ll_tr, ll0_tr, n_tr), "val_bits": val_bits()}
            bar.set_postfix(train=f"{history['train_bits']:.3f} b/sp", held_out=f"{history['val_bits']:.3f} b/sp")
            score = history["val_bits"] if len(y_va) else history["train_bits"]
            if score > best["val"] + 1e-4:
                best = {"val": score, "state": copy.deepcopy(model.state_dict()), "epoch": epoch}
                bad = 0
            else:
                bad += 1
            if checkpoint is not None:
                checkpoint.save(model, "teacher_forced", epoch, history)
            if bad >= patience or (prev is not None and abs(prev - loss) < 1e-7):
                break
            prev = loss
    finally:  # also on KeyboardInterrupt: keep the best parameters and leave a checkpoint
        model.load_state_dict(best["state"])
        if checkpoint is not None:
            checkpoint.save(model, "teacher_forced_best", best["epoch"], history)
        bar.close()
    return {**history, "best_val_bits": best["val"], "epochs": best["epoch"] + 1}
