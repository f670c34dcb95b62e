"""Fitting machinery for the models of :mod:`organoid_sim.models` (solvers kept apart from models).

* :func:`fit_network`: the full fit of a :class:`~organoid_sim.models.SpikingNetworkModel`
  (teacher-forced maximum likelihood, free-running refinement, rate calibration);
* :mod:`.teacher`, :mod:`.refine`, :mod:`.calibrate`: the three stages;
* :class:`.checkpoint.Checkpointer`: atomic checkpoints.
"""

from __future__ import annotations

import copy
import time
import warnings

import torch

from .checkpoint import Checkpointer
from .teacher import fit_teacher_forced, validation_bits

__all__ = ["fit_network", "fit_teacher_forced", "Checkpointer"]


def fit_network(model, recording, *, device=None, progress: bool = True, max_epochs: int = 30,
                validation_fraction: float = 0.1, refine_steps: int = 60, refine_batch: int = 16,
                refine_window_s: float = 2.0, likelihood_weight: float = 1.0, refine_options: dict | None = None,
                calibration_rounds: int = 5, max_likelihood_loss: float | None = 0.25, checkpoint_dir=None,
                seed: int = 0) -> "object":
    """Fit ``model`` to ``recording`` in three stages and return it.

    1. teacher-forced maximum likelihood of the recorded neurons, early-stopped on the last
       ``validation_fraction`` of the window (:func:`fit_teacher_forced`, ``max_epochs``);
    2. free-running refinement (``refine_steps`` Adam steps on ``refine_batch`` trajectories of
       ``refine_window_s`` s, surrogate gradients) matching rates, pairwise correlations, the
       population-rate autocovariance and the burst persistence (under the recording's ISI_N
       burst detector, :func:`organoid_sim.stats.detect_bursts`) of the data, anchored by ``likelihood_weight`` times the
       teacher-forced negative log-likelihood (``refine_options``: more arguments of
       :func:`~organoid_sim.fit.refine.refine_free_running`); hidden neurons are trained here
       (:func:`organoid_sim.fit.refine.refine_free_running`);
    3. ``calibration_rounds`` of rate calibration: long no-gradient simulations, biases moved so
       each unit's simulated rate meets its recorded rate (:func:`organoid_sim.fit.calibrate.calibrate_rates`).

    Guard: when stages 2-3 lower the teacher-forced held-out figure (stage 1's early-stopping part)
    by more than ``max_likelihood_loss`` bits/spike, they are undone: the model keeps the stage-1
    parameters, ``metrics["refinement_rejected"]`` says so and ``metrics["rejected_val_bits"]`` keeps
    the figure of the undone parameters (a culture without network
    structure gives refinement nothing to fit and only costs likelihood). ``None`` disables it.

    ``device``: ``"cpu"``/``"cuda"`` (default: where the model is). ``seed`` fixes all randomness.
    ``checkpoint_dir``: where to keep interrupt-safe checkpoints. Timings and figures are stored in
    ``model.provenance["metrics"]``.
    """
    if recording.n_units == 0 or recording.n_spikes == 0:
        raise ValueError(f"cannot fit a network to a recording without spikes ({recording!r})")
    torch.manual_seed(seed)
    settings = dict(max_epochs=max_epochs, validation_fraction=validation_fraction, refine_steps=refine_steps,
                    refine_batch=refine_batch, refine_window_s=refine_window_s, likelihood_weight=likelihood_weight,
                    calibration_rounds=calibration_rounds, seed=seed)
    model.attach_recording(recording)
    if device is not None:
        model.to(device)
    model._set_provenance(recording, {**settings, "device": str(model._device())})
    ckpt = Checkpointer(checkpoint_dir)
    counts = model.observation.prepare(model._binned(recording, device=model._device()))
    t0 = time.perf_counter()
    # refinement and calibration leave the time constants and U alone, so one design serves all stages
    design = model.teacher_design(counts)
    metrics = fit_teacher_forced(model, counts, validation_fraction=validation_fraction, max_epochs=max_epochs,
                                 progress=progress, checkpoint=ckpt, design=design)
    metrics["teacher_forced_s"] = time.perf_counter() - t0
    after_tf = copy.deepcopy(model.state_dict())
    if refine_steps > 0:
        from .refine import refine_free_running

        t1 = time.perf_counter()
        opts = dict(refine_options or {})
        if "burst" not in opts:
            from ..stats import detect_bursts

            bp = detect_bursts(recording).params
            opts["burst"] = (bp["max_isi_n"], bp["n_spikes"])
        metrics.update(refine_free_running(model, counts, steps=refine_steps, batch=refine_batch,
                                           window_s=refine_window_s, likelihood_weight=likelihood_weight,
                                           validation_fraction=validation_fraction, seed=seed, progress=progress,
                                           checkpoint=ckpt, design=design, **opts))
        metrics["refine_s"] = time.perf_counter() - t1
    if calibration_rounds > 0:
        from .calibrate import calibrate_rates

        t2 = time.perf_counter()
        metrics.update(calibrate_rates(model, counts, rounds=calibration_rounds, seed=seed, progress=progress))
        metrics["calibrate_s"] = time.perf_counter() - t2
    if (refine_steps > 0 or calibration_rounds > 0) and validation_fraction > 0:
        final = validation_bits(model, counts, validation_fraction, design=design)
        metrics["final_val_bits"] = final
        lost = metrics.get("best_val_bits", float("nan")) - final
        metrics["refinement_rejected"] = bool(max_likelihood_loss is not None and lost > max_likelihood_loss)
        if metrics["refinement_rejected"]:
            warnings.warn(f"free-running refinement and rate calibration cost {lost:.3f} bits/spike of held-out "
                          f"teacher-forced likelihood (more than max_likelihood_loss={max_likelihood_loss}): "
                          "keeping the teacher-forced parameters", RuntimeWarning, stacklevel=3)
            model.load_state_dict(after_tf)
            metrics["rejected_val_bits"] = final
            metrics["final_val_bits"] = validation_bits(model, counts, validation_fraction, design=design)
    metrics["fit_s"] = time.perf_counter() - t0
    model.provenance["metrics"] = metrics
    return model
