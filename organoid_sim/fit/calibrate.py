"""Rate calibration: long free-running simulations without gradients, then each recorded unit's
bias moves by ``gain * delta_u * log(target_rate / simulated_rate)`` (the bias shift that would
correct the rate of an isolated escape-noise neuron exactly). A few rounds settle the recurrent
interactions; the biases of the round that came closest are kept. Cheap, and it pins the
per-unit rates that refinement only approaches."""

from __future__ import annotations

import numpy as np
import torch
from tqdm.auto import tqdm

__all__ = ["calibrate_rates", "simulated_rates"]


def simulated_rates(model, duration_s: float, batch: int, seed: int) -> tuple[np.ndarray, int]:
    """Rates (Hz) of all neurons over ``batch`` free trajectories of ``duration_s`` s each (after a
    2 s burn-in from rest), and the number of saturated bins.

    Parameters
    ----------
    model : SpikingNetworkModel
        The network to simulate.
    duration_s : float
        Length (s) of each trajectory.
    batch : int
        Trajectories.
    seed : int
        Seed of the simulation.

    Returns
    -------
    rates : np.ndarray
        Rate (Hz) of each neuron.
    n_saturated : int
        Bins at the observation's count cap.
    """
    dt = model.dt_ms
    n_steps = int(round(duration_s * 1000.0 / dt))
    events, _, n_sat = model.run(n_steps, batch=batch, seed=seed, burn_in_steps=int(2000.0 / dt))
    total = np.bincount(events[:, 2], weights=events[:, 3], minlength=model.n_neurons)
    return total / (batch * n_steps * dt / 1000.0), n_sat


def calibrate_rates(model, counts: torch.Tensor, *, rounds: int = 5, duration_s: float = 90.0, batch: int = 8,
                    gain: float = 0.4, seed: int = 0, progress: bool = True) -> dict:
    """Adjust recorded-unit biases so free-running rates match ``counts`` (``[T, n_recorded]``).

    Each round simulates ``batch`` trajectories of ``duration_s`` s: a bursting network's rates
    come in bursts, so short runs give noisy rates (30 s runs left A5 of the DIV12 plate 10-20 %
    off). ``gain`` < 1 damps the shifts, because recurrent excitation amplifies a bias change.

    Parameters
    ----------
    model : SpikingNetworkModel
        The fitted network; its recorded neurons' biases are moved in place.
    counts : torch.Tensor
        Recorded ``[T, n_recorded]`` counts (their rates are the target).
    rounds : int
        Simulate-and-shift rounds.
    duration_s : float
        Length (s) of each simulated trajectory.
    batch : int
        Trajectories per round.
    gain : float
        Fraction of the log-rate error corrected per round.
    seed : int
        Seed of the simulations.
    progress : bool
        Show a progress bar.

    Returns
    -------
    dict
        ``calibration_median_rel_err``: the median relative rate error of the kept biases.
    """
    nr = model.n_recorded
    target = counts.mean(0).cpu().numpy() / (model.dt_ms / 1000.0)
    bar = tqdm(range(rounds + 1), disable=not progress, desc="rate calibration", unit="round")
    best = (float("inf"), model.bias.detach().clone())
    for r in bar:
        rates, n_sat = simulated_rates(model, duration_s, batch, seed + 100 + r)
        err = float(np.median(np.abs(rates[:nr] - target) / np.maximum(target, 1e-9)))
        bar.set_postfix(median_rel_err=f"{err:.2f}", saturated=n_sat)
        if err < best[0]:
            best = (err, model.bias.detach().clone())
        if r == rounds:
            break  # the last simulation only measures the last shift
        ratio = (target + 0.01) / (rates[:nr] + 0.01)
        with torch.no_grad():
            du = model.delta_u[:nr].detach()
            shift = gain * du * torch.as_tensor(np.log(ratio), dtype=du.dtype, device=du.device)
            model.bias[:nr] += shift.clamp(-2.0, 2.0)
    bar.close()
    with torch.no_grad():  # keep the round whose rates came closest (a shift can overshoot)
        model.bias.copy_(best[1])
    return {"calibration_median_rel_err": best[0]}
