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
from dataclasses import replace

import numpy as np
import torch

from ..stats import compare, detect_bursts
from .calibrate import RECENT_FRACTION, burst_target, calibrate_rates
from .checkpoint import Checkpointer
from .config import (DISCREPANCY_BURN_IN_S, DISCREPANCY_PARALLEL, DISCREPANCY_SEED_OFFSET, MAX_CALIBRATED_RATE_ERR,
                     RESTART_SEED_STRIDE, SELF_CHECK_SEED_OFFSET, FitConfig, RefineConfig)
from .refine import refine_free_running
from .self_check import in_sample_check, judge_comparison, warn_if_missed
from .teacher import fit_teacher_forced, fit_uncoupled, validation_bits

__all__ = ["fit_network", "fit_teacher_forced", "calibrate_with_guard", "Checkpointer", "FitConfig", "RefineConfig"]


def fit_network(model, recording, config: FitConfig | None = None, **options) -> "object":
    """Fit ``model`` to ``recording`` in three stages and return it.

    1. teacher-forced maximum likelihood of the recorded neurons, early-stopped on the last
       ``validation_fraction`` of the window (:func:`fit_teacher_forced`, ``max_epochs``), then
       compared there with the uncoupled null (independent homogeneous Poisson units,
       :func:`~organoid_sim.fit.teacher.fit_uncoupled`): when coupling does not predict the held-out
       part better, the null is kept (``metrics["uncoupled"]``, a warning) with its rates fitted to
       the whole window, and stage 2 is skipped (``metrics["refine_skipped"]``: it has no coupling
       to fit);
    2. free-running refinement (``refine_steps`` Adam steps on ``refine_batch`` trajectories of
       ``refine_window_s`` s, surrogate gradients) matching rates, pairwise correlations, the
       population-rate autocovariance and the burst persistence (under the recording's ISI_N
       burst detector, :func:`organoid_sim.stats.detect_bursts`) of the data, anchored by ``likelihood_weight`` times the
       teacher-forced negative log-likelihood (``refine_options``: more arguments of
       :func:`~organoid_sim.fit.refine.refine_free_running`); hidden neurons are trained here
       (:func:`organoid_sim.fit.refine.refine_free_running`);
    3. ``calibration_rounds`` of rate and burst calibration: long no-gradient simulations, biases
       moved so each unit's simulated rate meets its recorded rate and, when the recording has
       network bursts, the depression's ``U`` and recovery time constant moved so the network burst
       rate and median burst duration meet the recording's (those of the whole window, or with
       ``calibration_options={"recent_fraction": f}`` those of its last fraction ``f``)
       (:func:`organoid_sim.fit.calibrate.calibrate_rates`, ``calibration_options``: its other
       arguments; ``burst_gain=0`` calibrates the rates only).

    Self-check (``self_check=True``): the fitted network then simulates four times as long as
    ``recording`` (:data:`~organoid_sim.fit.self_check.SIM_FACTOR`)
    and is judged against it with the in-sample bars (:mod:`organoid_sim.fit.self_check`); the
    result goes to ``model.provenance["self_check"]`` (saved with the model) and a missed bar
    gives one ``RuntimeWarning`` naming each missed bar.

    Guard: when stages 2-3 lower the teacher-forced held-out figure (stage 1's early-stopping part)
    by more than ``max_likelihood_loss`` bits/spike, or below the uncoupled null's
    (``metrics["uncoupled_val_bits"]``), or leave the calibration's own free-running simulations
    with a median rate error above :data:`~organoid_sim.fit.config.MAX_CALIBRATED_RATE_ERR`
    (a network that runs away or falls silent, which the likelihood cannot see), they are undone
    (see :func:`calibrate_with_guard` for the candidates tried in turn): the model keeps the stage-1
    parameters, ``metrics["refinement_rejected"]`` says so and ``metrics["rejected_val_bits"]`` keeps
    the figure of the undone parameters (a culture without network
    structure gives refinement nothing to fit and only costs likelihood). ``None`` disables it.

    Restarts: stages 2-3 start ``restarts`` times from the stage-1 parameters with different
    seeds (``seed``, ``seed + 1000``, ...), and the candidate whose free-running simulation (as long
    as ``recording``) comes closest to ``recording`` is kept: the smallest sum of the absolute
    relative errors of burst rate and median burst duration, ``1 - r`` of the pairwise
    correlations and the median rate error (:func:`organoid_sim.stats.compare`; figures of the
    fitting window only). Refinement of a bursting network lands in different places from seed to
    seed; this picks the one that fits the data best. ``metrics["restart_discrepancies"]`` and
    ``metrics["restart_chosen"]`` record the choice.

    ``device``: ``"cpu"``/``"cuda"`` (default: where the model is). ``seed`` fixes all randomness.
    ``checkpoint_dir``: where to keep interrupt-safe checkpoints. Timings and figures are stored in
    ``model.provenance["metrics"]``.

    Parameters
    ----------
    model : SpikingNetworkModel
        The network to fit (built for ``recording`` here).
    recording : SpikeRecording
        The fitting window.
    config : FitConfig, optional
        All options (default: ``FitConfig()``).
    **options
        :class:`FitConfig` fields that replace those of ``config`` (unknown names raise TypeError).

    Returns
    -------
    SpikingNetworkModel
        ``model``, fitted.
    """
    cfg = replace(config or FitConfig(), **options)
    if recording.n_units == 0 or recording.n_spikes == 0:
        raise ValueError(f"cannot fit a network to a recording without spikes ({recording!r})")
    torch.manual_seed(cfg.seed)
    model.attach_recording(recording)
    if cfg.device is not None:
        model.to(cfg.device)
    model.set_provenance(recording, {**cfg.settings(), "device": str(model.torch_device())})
    ckpt = Checkpointer(cfg.checkpoint_dir)
    counts = model.observation.prepare(model.binned(recording, device=model.torch_device()))
    t0 = time.perf_counter()
    recent = float((cfg.calibration_options or {}).get("recent_fraction", RECENT_FRACTION))  # calibration's target part
    # refinement and calibration leave the time constants and U alone, so one design serves all stages
    design = model.teacher_design(counts)
    metrics = fit_teacher_forced(model, counts, validation_fraction=cfg.validation_fraction,
                                 max_epochs=cfg.max_epochs, progress=cfg.progress, checkpoint=ckpt, design=design)
    if cfg.validation_fraction > 0:
        _keep_coupling_if_it_helps(model, counts, metrics, cfg.validation_fraction, design)
    metrics["teacher_forced_s"] = time.perf_counter() - t0
    after_tf = copy.deepcopy(model.state_dict())
    if cfg.refine_steps > 0 or cfg.calibration_rounds > 0:
        detected = detect_bursts(recording)   # the window's bursts: refinement's detector, calibration's target
        # an uncoupled culture gives refinement nothing to fit (the guard undid it every time, after
        # minutes on 64 channels): decided here instead
        refine = (_with_burst_detector(cfg, detected.params) if cfg.refine_steps > 0 and not metrics.get("uncoupled")
                  else None)
        if cfg.refine_steps > 0 and refine is None:
            metrics["refine_skipped"] = "uncoupled"
        bursts = burst_target(recording, detected, recent_fraction=recent) if cfg.calibration_rounds > 0 else None
        metrics.update(_best_of_restarts(model, recording, counts, design, metrics, after_tf, cfg, refine, ckpt,
                                         bursts))
    metrics["fit_s"] = time.perf_counter() - t0
    model.provenance["metrics"] = metrics
    if cfg.self_check:
        t3 = time.perf_counter()
        model.provenance["self_check"] = in_sample_check(model, recording, seed=cfg.seed + SELF_CHECK_SEED_OFFSET,
                                                         recent_fraction=recent if cfg.calibration_rounds > 0 else None)
        metrics["self_check_s"] = time.perf_counter() - t3
        warn_if_missed(model.provenance["self_check"], stacklevel=4)
    return model


def _keep_coupling_if_it_helps(model, counts: torch.Tensor, metrics: dict, validation_fraction: float,
                               design: torch.Tensor) -> None:
    """Compare the teacher-forced fit with the model's uncoupled null (independent homogeneous
    Poisson units, :func:`fit_uncoupled`) on the held-out part; keep the null when coupling does
    not predict better (a culture without network structure, where the couplings only fit noise).
    Records ``uncoupled_val_bits``, ``coupled_val_bits`` and ``uncoupled`` in ``metrics``."""
    null = copy.deepcopy(model)
    null_metrics = fit_uncoupled(null, counts, validation_fraction=validation_fraction)
    metrics["uncoupled_val_bits"] = null_metrics["best_val_bits"]
    metrics["coupled_val_bits"] = metrics["best_val_bits"]
    metrics["uncoupled"] = bool(null_metrics["best_val_bits"] > metrics["best_val_bits"])
    if metrics["uncoupled"]:
        warnings.warn(f"coupling did not improve the held-out teacher-forced likelihood "
                      f"({metrics['best_val_bits']:.3f} against {null_metrics['best_val_bits']:.3f} bits/spike "
                      "without it): keeping the uncoupled network", RuntimeWarning, stacklevel=4)
        # the split only served the comparison: the null's rates are now fitted to the whole window
        # (as the GLM's and Poisson baselines are); the guard then compares against these parameters
        fit_uncoupled(model, counts, validation_fraction=0.0)
        metrics["best_val_bits"] = validation_bits(model, counts, validation_fraction, design=design)


def _best_of_restarts(model, recording, counts, design, tf_metrics: dict, after_tf: dict, cfg: FitConfig,
                      refine: RefineConfig | None, checkpoint: Checkpointer, bursts=None) -> dict:
    """Stages 2-3 from ``after_tf`` once per restart (calibration towards ``bursts``, a
    :class:`~organoid_sim.fit.calibrate.BurstTarget` or None); the model ends with the candidate
    closest to ``recording`` (see :func:`fit_network`). Returns the chosen candidate's metrics. An
    interrupt keeps the best candidate finished so far."""
    best, scores = None, []
    restarts = int(cfg.restarts)
    try:
        for k in range(restarts):
            if k:
                model.load_state_dict(after_tf)
            seed_k = cfg.seed + RESTART_SEED_STRIDE * k
            cand = _free_running_stages(model, recording, counts, design, tf_metrics, after_tf, seed_k, cfg, refine,
                                        checkpoint, bursts)
            if restarts == 1:
                score = 0.0
            elif "calibration_discrepancy" in cand:   # the guard's closest rule simulated it with this seed
                score = cand["calibration_discrepancy"]
            else:
                score = _discrepancy(model, recording, seed_k, cfg.discrepancy_sim_factor, cfg.discrepancy_rule)
            scores.append(score)
            if best is None or score < best[0]:
                best = (score, cand, copy.deepcopy(model.state_dict()), k)
    finally:  # also on KeyboardInterrupt
        if best is not None:
            model.load_state_dict(best[2])
    metrics = dict(best[1])
    if restarts > 1:
        metrics.update(restart_chosen=best[3], restart_discrepancies=scores)
    return metrics


def _with_burst_detector(cfg: FitConfig, bp: dict) -> RefineConfig:
    """Stage 2's :class:`RefineConfig`, with ``burst`` = the recording's ISI_N detector
    ``(max_isi_n s, n_spikes)`` (``bp``: the ``params`` of :func:`organoid_sim.stats.detect_bursts`
    on it) unless the caller set it in ``refine_options``; detected once for all restarts."""
    if "burst" in (cfg.refine_options or {}):
        return cfg.refine_config()
    return cfg.refine_config(burst=(bp["max_isi_n"], bp["n_spikes"]))


def _free_running_stages(model, recording, counts, design, tf_metrics: dict, after_tf: dict, seed: int, cfg: FitConfig,
                         refine: RefineConfig | None, checkpoint: Checkpointer, bursts=None) -> dict:
    """Stages 2 (refinement, ``refine``) and 3 (rate and burst calibration towards ``bursts``, a
    :class:`~organoid_sim.fit.calibrate.BurstTarget` or None) and the likelihood guard, with ``seed``."""
    metrics = {}
    if refine is not None:
        t1 = time.perf_counter()
        metrics.update(refine_free_running(model, counts, refine, seed=seed, progress=cfg.progress,
                                           checkpoint=checkpoint, design=design))
        metrics["refine_s"] = time.perf_counter() - t1
    metrics.update(calibrate_with_guard(model, counts, design, tf_metrics, after_tf, seed, cfg, bursts, recording))
    return metrics


def _lost_bits(model, counts, design, tf_metrics: dict, cfg: FitConfig, moved_depression: bool,
               tf_whole: float) -> tuple:
    """``(held-out teacher-forced bits/spike now, loss against stage 1, why it is too much or None)``.
    Too much: more than ``max_likelihood_loss`` lost on the held-out part or on the whole window
    (``tf_whole``: stage 1's figure there), or below the uncoupled null on the held-out part."""
    # the calibrated U and tau_rec change the teacher-forced design
    now = model.teacher_design(counts) if moved_depression else design
    final = validation_bits(model, counts, cfg.validation_fraction, design=now)
    lost = tf_metrics.get("best_val_bits", float("nan")) - final
    cap = cfg.max_likelihood_loss
    if cap is None:
        return final, lost, None
    if lost > cap:
        return final, lost, f"more than max_likelihood_loss={cap}"
    # a change of the depression can help the held-out end and cost the rest of the window
    lost_whole = tf_whole - validation_bits(model, counts, 1.0, design=now)
    if lost_whole > cap:
        return final, lost, f"{lost_whole:.3f} bits/spike over the whole window, more than max_likelihood_loss={cap}"
    if final < tf_metrics.get("uncoupled_val_bits", float("-inf")):
        return final, lost, f"below the uncoupled network's {tf_metrics['uncoupled_val_bits']:.3f}"
    return final, lost, None


def _unusable_free_run(cal: dict) -> str | None:
    """Why a calibrated candidate is not kept whatever its likelihood, or None: its calibration's
    own simulations ended with a median rate error above :data:`MAX_CALIBRATED_RATE_ERR` (a
    free-running network that runs away or falls silent)."""
    err = cal.get("calibration_median_rel_err")
    if err is None or not err > MAX_CALIBRATED_RATE_ERR:
        return None
    return (f"its free-running rates stayed {100 * err:.0f} % off after calibration, more than "
            f"{100 * MAX_CALIBRATED_RATE_ERR:.0f} %")


def calibrate_with_guard(model, counts, design, tf_metrics: dict, after_tf: dict, seed: int, cfg: FitConfig,
                         bursts=None, recording=None) -> dict:
    """Stage 3 (``cfg.calibration_rounds`` of rate and, towards ``bursts``, burst calibration) on the
    refined ``model``, then the likelihood guard of :func:`fit_network`, trying the candidates of
    :func:`_calibrated_candidates` in turn (from the refined parameters, then from the stage-1
    parameters ``after_tf``: burst-calibrated, the burst calibration's move of the depression cut
    to each of ``cfg.partial_burst_fractions``, rates only). Of the candidates the guard accepts
    (its likelihood figures and its calibration's free-running rates, see :func:`fit_network`)
    from the first start where it accepts any, the one kept is, with
    ``cfg.calibration_choice="closest"`` (default) and ``recording``, the one whose free-running
    simulation lies closest to ``recording``, as the restarts are chosen (every discrepancy in
    ``calibration_discrepancies``, keyed by :func:`_candidate_label`, the kept one's in
    ``calibration_discrepancy``, and ``burst_calibration_outvoted`` when an accepted larger move
    of the depression lay further away); with ``"first"`` or without ``recording``, the first
    (``metrics["burst_calibration_fraction"]``: the part of the depression's move kept, 1 to 0;
    ``metrics["burst_calibration_rejected"]`` when it is a rates-only one,
    ``metrics["refinement_rejected"]`` when it starts from stage 1). When the guard accepts none,
    the model keeps the stage-1 parameters uncalibrated, as without stage 3.

    Parameters
    ----------
    model : SpikingNetworkModel
        The refined network (changed in place).
    counts, design : torch.Tensor
        Prepared counts of the fitting window and the stage-1 teacher-forced design.
    tf_metrics : dict
        Stage 1's metrics (``best_val_bits``, ``uncoupled_val_bits``).
    after_tf : dict
        The stage-1 state dict.
    seed : int
        Seed of the calibration's simulations.
    cfg : FitConfig
        The fit's options.
    bursts : BurstTarget, optional
        The fitting window's burst statistics (:func:`~organoid_sim.fit.calibrate.burst_target`).
    recording : SpikeRecording, optional
        The fitting window; needed by ``cfg.calibration_choice="closest"`` (without it: ``"first"``).

    Returns
    -------
    dict
        The kept calibration's figures, ``calibrate_s``, and with a held-out part
        ``final_val_bits``, ``refinement_rejected`` (and ``rejected_val_bits``: the refined and
        calibrated parameters' figure), ``burst_calibration_rejected`` (and
        ``burst_rejected_val_bits``: the refined, burst-calibrated parameters' figure).
    """
    vf, rounds = cfg.validation_fraction, cfg.calibration_rounds
    after_refine = copy.deepcopy(model.state_dict())
    tf_whole = float("nan")
    if vf > 0:   # stage 1's teacher-forced figure on the whole window
        model.load_state_dict(after_tf)
        tf_whole = validation_bits(model, counts, 1.0, design=design)
        model.load_state_dict(after_refine)
    starts = [("refined", after_refine), ("stage 1", after_tf)] if rounds > 0 and vf > 0 else [("refined", after_refine)]
    closest = cfg.calibration_choice == "closest" and recording is not None and vf > 0 and rounds > 0
    t2, first = time.perf_counter(), None
    for start, state in starts:
        accepted = []   # (fraction, figures, final bits, discrepancy, state dict) of the candidates the guard accepts
        for _, fraction, cal in _calibrated_candidates(model, counts, [(start, state)], bursts, seed, cfg):
            if vf <= 0:
                return {**cal, **({"calibrate_s": time.perf_counter() - t2} if rounds > 0 else {})}
            final, lost, why = _lost_bits(model, counts, design, tf_metrics, cfg, "calibrated_use" in cal, tf_whole)
            if cfg.max_likelihood_loss is not None:
                why = why or _unusable_free_run(cal)
            first = first or (final, lost, why)
            if why is None:
                if not closest:
                    accepted.append((fraction, cal, final, None, None))
                    break
                gap = _discrepancy(model, recording, seed, cfg.discrepancy_sim_factor, cfg.discrepancy_rule)
                accepted.append((fraction, cal, final, gap, copy.deepcopy(model.state_dict())))
        if not accepted:
            continue
        fraction, cal, final, _, kept_state = min(accepted, key=lambda a: 0.0 if a[3] is None else a[3])
        if kept_state is not None:
            model.load_state_dict(kept_state)
        if start != "refined":
            warnings.warn(f"free-running refinement was undone ({first[2]}; it cost {first[1]:.3f} "
                          "bits/spike of held-out teacher-forced likelihood): keeping the teacher-forced "
                          "parameters, calibrated", RuntimeWarning, stacklevel=5)
        with_bursts = bursts is not None and rounds > 0
        outvoted = any(a[0] > fraction for a in accepted)   # a larger move was accepted, and lay further away
        return {**cal, "final_val_bits": final, "calibrate_s": time.perf_counter() - t2,
                "refinement_rejected": start != "refined",
                "burst_calibration_rejected": with_bursts and fraction == 0.0 and not outvoted,
                **({"burst_calibration_fraction": fraction} if with_bursts else {}),
                **({"calibration_discrepancies": {_candidate_label(a[0], a[1]): a[3] for a in accepted},
                    "calibration_discrepancy": min(a[3] for a in accepted),
                    "burst_calibration_outvoted": with_bursts and outvoted} if closest else {}),
                **({"burst_rejected_val_bits": first[0]} if with_bursts and fraction < 1.0 and not outvoted else {}),
                **({"rejected_val_bits": first[0]} if start != "refined" else {})}
    final, lost, why = first
    warnings.warn(f"free-running refinement and rate calibration were undone ({why}; they cost {lost:.3f} "
                  "bits/spike of held-out teacher-forced likelihood): keeping the teacher-forced parameters",
                  RuntimeWarning, stacklevel=5)
    model.load_state_dict(after_tf)
    return {"final_val_bits": validation_bits(model, counts, vf, design=design), "refinement_rejected": True,
            "rejected_val_bits": final, **({"calibrate_s": time.perf_counter() - t2} if rounds > 0 else {})}


def _candidate_label(fraction: float, cal: dict) -> str:
    """``"burst"``, ``"burst variant k"``, ``"0.5 of the burst move"`` or ``"rates only"``."""
    if fraction == 1.0:
        k = cal.get("burst_calibration_variant")
        return f"burst variant {k}" if k else "burst"
    return "rates only" if fraction == 0.0 else f"{fraction:g} of the burst move"


#: the depression's parameters that a burst calibration moves
_DEPRESSION = ("use_logit", "log_tau_rec_ms")


def _calibrated_candidates(model, counts, starts: list, bursts, seed: int, cfg: FitConfig):
    """Yield ``(start, fraction, calibration figures)`` per candidate, the model holding its
    parameters: from each ``(name, state dict)`` of ``starts``, burst-calibrated towards ``bursts``
    (fraction 1), then with each of ``cfg.burst_variants`` (fraction 1, figures with
    ``burst_calibration_variant``: its number from 1); then, the depression moved by each of
    ``cfg.partial_burst_fractions`` of the first burst calibration's move (log-odds of ``U``, log
    ``tau_rec``) and the biases calibrated again for the rates alone; then rates only (fraction 0).
    Each candidate is made only when the caller asks for it (after rejecting, or also judging, the
    earlier ones). Without calibration rounds: each start
    as it is."""
    rounds, opts = cfg.calibration_rounds, dict(cfg.calibration_options or {})

    def calibrate(target, variant=None):
        return calibrate_rates(model, counts, rounds=rounds, seed=seed, progress=cfg.progress,
                               **{"bursts": target, **opts, **(variant or {})})

    def rates_only():   # with burst_gain 0 the target only sizes the rounds (min_bursts_per_round)
        return calibrate(bursts, {"burst_gain": 0.0})

    for start, state in starts:
        model.load_state_dict(state)
        if rounds <= 0:
            yield start, 0.0, {}
            continue
        if bursts is not None:
            yield start, 1.0, calibrate(bursts)
            moved = {k: getattr(model, k).detach().clone() for k in _DEPRESSION}
            for k, variant in enumerate(cfg.burst_variants, 1):
                model.load_state_dict(state)
                yield start, 1.0, {**calibrate(bursts, variant), "burst_calibration_variant": k}
            for fraction in cfg.partial_burst_fractions:
                model.load_state_dict(state)
                with torch.no_grad():
                    for k in _DEPRESSION:
                        p = getattr(model, k)
                        p.add_(fraction * (moved[k] - p))
                cal = rates_only()
                cal.update(calibrated_use=float(model.use.detach().median()),
                           calibrated_tau_rec_ms=float(torch.exp(model.log_tau_rec_ms.detach()).median()))
                yield start, fraction, cal
            model.load_state_dict(state)
        yield start, 0.0, rates_only()


def _discrepancy(model, recording, seed: int, sim_factor: float = 1.0, rule: str = "sum") -> float:
    """How far a free-running simulation of ``sim_factor`` times ``recording``'s duration lies
    from ``recording``: ``s = |burst rate error| + |median burst duration error| + (1 -
    correlation-matrix r) + median rate error`` (:func:`organoid_sim.stats.compare`; undefined
    figures, e.g. no bursts on either side, count 0, an infinite one 1); with ``rule="bars"``,
    ``n + s / (1 + s)`` for ``n`` in-sample bars missed (:func:`~.self_check.judge_comparison`)."""
    sim = model.simulate(sim_factor * recording.duration, seed=seed + DISCREPANCY_SEED_OFFSET,
                         t_start=recording.t_start, n_parallel=DISCREPANCY_PARALLEL, burn_in_s=DISCREPANCY_BURN_IN_S,
                         progress=False)
    cmp = compare(recording, sim)
    s = cmp.summary
    terms = [abs(s.get("burst_rate_rel_err", np.nan)), abs(s.get("burst_duration_rel_err", np.nan)),
             1.0 - s.get("corr_matrix_r", np.nan), s.get("rate_median_rel_err", np.nan)]
    total = float(sum(np.nan_to_num(np.asarray(terms, float), nan=0.0, posinf=1.0)))
    if rule == "sum":
        return total
    missed = sum(not ok for ok in judge_comparison(cmp)[1].values())
    return missed + total / (1.0 + total)
