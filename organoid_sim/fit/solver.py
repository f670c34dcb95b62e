"""The solver shared by the likelihood fits (nemos-style: kept apart from model and observation).

:func:`lbfgs_early_stopping` minimises a full-batch objective with L-BFGS (strong-Wolfe line
search) in epochs of ``iters_per_epoch`` iterations; after each epoch it evaluates a held-out
score (higher is better), keeps the best parameters, shows both on a tqdm bar and stops after
``patience`` epochs without improvement. An interrupt (Ctrl-C) restores the best parameters and
leaves a checkpoint before the ``KeyboardInterrupt`` propagates.
"""

from __future__ import annotations

import copy
from typing import Callable

import torch
from tqdm.auto import tqdm

__all__ = ["lbfgs_early_stopping"]


def lbfgs_early_stopping(module: torch.nn.Module, params: list, objective: Callable[[], torch.Tensor],
                         metrics: Callable[[], dict], *, max_epochs: int = 30, iters_per_epoch: int = 10,
                         patience: int = 3, progress: bool = True, desc: str = "fit", checkpoint=None,
                         stage: str = "fit", min_improvement: float = 1e-4) -> dict:
    """Minimise ``objective()`` over ``params`` (tensors of ``module``); returns the last metrics.

    ``metrics()`` returns a dict with ``"train_bits"`` and ``"val_bits"`` (bits/spike; the latter
    drives early stopping, or the former when the latter is NaN). The starting parameters count
    as epoch 0: if no epoch beats them on the held-out part, they are kept.

    Parameters
    ----------
    module : torch.nn.Module
        Owner of ``params`` (its state is checkpointed and restored).
    params : list of torch.Tensor
        The tensors to optimise.
    objective : callable
        ``objective() -> scalar tensor`` to minimise.
    metrics : callable
        ``metrics() -> dict`` with ``train_bits`` and ``val_bits``.
    max_epochs, iters_per_epoch, patience : int
        L-BFGS epochs, iterations per epoch, epochs without improvement before stopping.
    progress : bool
        Show a progress bar (``desc`` its label).
    desc : str
        Progress-bar label.
    checkpoint : Checkpointer, optional
        Where to save each epoch (``stage`` its name).
    stage : str
        Checkpoint stage name.
    min_improvement : float
        Bits/spike an epoch must gain on the held-out score to count as progress.

    Returns
    -------
    dict
        The last epoch's metrics, ``best_val_bits`` (of the kept parameters) and ``epochs``.
    """
    opt = torch.optim.LBFGS(params, lr=1.0, max_iter=iters_per_epoch, history_size=20,
                            line_search_fn="strong_wolfe", tolerance_grad=1e-7, tolerance_change=1e-10)

    def closure():
        opt.zero_grad()
        loss = objective()
        loss.backward()
        return loss

    with torch.no_grad():  # the starting point is a candidate too: fitting must not make it worse
        history: dict = metrics()
    start = history["val_bits"] if history["val_bits"] == history["val_bits"] else history["train_bits"]
    best = {"score": start, "state": copy.deepcopy(module.state_dict()), "epoch": -1, "metrics": history}
    bad, prev = 0, None
    bar = tqdm(range(max_epochs), disable=not progress, desc=desc, unit="epoch")
    try:
        for epoch in bar:
            loss = float(opt.step(closure).detach())
            with torch.no_grad():
                history = metrics()
            bar.set_postfix(train=f"{history['train_bits']:.3f} b/sp", held_out=f"{history['val_bits']:.3f} b/sp")
            score = history["val_bits"] if history["val_bits"] == history["val_bits"] else history["train_bits"]
            if score > best["score"] + min_improvement:
                best = {"score": score, "state": copy.deepcopy(module.state_dict()), "epoch": epoch, "metrics": history}
                bad = 0
            else:
                bad += 1
            if checkpoint is not None:
                checkpoint.save(module, stage, epoch, history)
            if bad >= patience or (prev is not None and abs(prev - loss) < 1e-8) or loss != loss:
                break
            prev = loss
    finally:  # also on KeyboardInterrupt: keep the best parameters and leave a checkpoint
        module.load_state_dict(best["state"])
        if checkpoint is not None:   # the kept parameters with their own figures, not the last epoch's
            checkpoint.save(module, stage + "_best", best["epoch"], best["metrics"])
        bar.close()
    return {**history, "best_val_bits": best["score"], "epochs": best["epoch"] + 1}
