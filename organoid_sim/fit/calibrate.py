"""Rate and burst calibration: long free-running simulations without gradients, then each recorded
unit's bias moves toward ``delta_u * log(target_rate / simulated_rate)`` (the bias shift that would
correct the rate of an isolated escape-noise neuron exactly), damped for the part common to all
units; with a burst target, the depression's utilisation ``U`` and recovery time constant move too,
so that the network burst rate and the median burst duration meet the recording's. The rounds are
a stochastic approximation; the averaged parameters of the later rounds are kept. Cheap, and it
pins the per-unit rates and the burst statistics that refinement only approaches (refinement
cannot move the time constants and ``U``: the teacher-forced design depends on them)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

from ..stats import detect_bursts

__all__ = ["calibrate_rates", "round_duration", "simulated_rates", "recent_rates", "BurstTarget", "burst_target",
           "RECENT_FRACTION"]

#: fewest network bursts in the fitting window for a burst target (fewer: rates only)
MIN_TARGET_BURSTS = 5
#: largest change of log U-odds and of log tau_rec in one round
MAX_BURST_STEP = 0.5
#: bounds of the calibrated depression: U and tau_rec (ms)
U_RANGE, TAU_REC_RANGE_MS = (0.02, 0.98), (20.0, 10000.0)
#: standard error of a log median / that of a log mean, for log-normal-like samples (sqrt(pi / 2))
MEDIAN_SE_FACTOR = math.sqrt(math.pi / 2.0)
#: the part of the fitting window (its last fraction) whose rates and bursts the calibration aims
#: at by default: all of it. Targets from the window's end (0.5, 0.33) helped the tune wells' held-out
#: rate bar and did not hold on the validation wells (docs/models.md, "Targets from the end of the window")
RECENT_FRACTION = 1.0


@dataclass(frozen=True)
class BurstTarget:
    """The network-burst statistics a calibration aims at, and the detector that measures them.

    Parameters
    ----------
    rate_hz : network bursts per second of the recording.
    median_duration_s : median burst duration (s).
    params : keyword arguments of :func:`organoid_sim.stats.detect_bursts` (the recording's own
        detector, so that simulations are measured the same way).
    n_bursts : bursts counted in the recording.
    log_duration_sd : standard deviation of the log burst durations.
    """

    rate_hz: float
    median_duration_s: float
    params: dict
    n_bursts: int = 0
    log_duration_sd: float = 0.0


def burst_target(recording, bursts=None, recent_fraction: float = RECENT_FRACTION) -> BurstTarget | None:
    """The :class:`BurstTarget` of ``recording`` (its detector with the default rule), or None when
    it has fewer than :data:`MIN_TARGET_BURSTS` network bursts.

    With ``recent_fraction`` < 1 the burst rate and durations are those of the bursts that start
    in the last ``recent_fraction`` of the window (the detector stays the whole window's), unless
    that part holds fewer than :data:`MIN_TARGET_BURSTS` bursts (then the whole window's).

    Parameters
    ----------
    recording : SpikeRecording
        The fitting window.
    bursts : NetworkBursts, optional
        ``detect_bursts(recording)`` when the caller already has it.
    recent_fraction : float
        Last part of the window (a fraction of its duration) that sets the target (default
        :data:`RECENT_FRACTION`, as :func:`calibrate_rates`).

    Returns
    -------
    BurstTarget or None
    """
    b = detect_bursts(recording) if bursts is None else bursts
    if len(b) < MIN_TARGET_BURSTS or recording.duration <= 0:
        return None
    duration, dur = recording.duration, b.duration
    if recent_fraction < 1.0:
        recent = b.start >= recording.t_stop - recent_fraction * recording.duration
        if int(recent.sum()) >= MIN_TARGET_BURSTS:
            duration, dur = recent_fraction * recording.duration, dur[recent]
    logd = np.log(np.maximum(dur, 1e-6))
    return BurstTarget(len(dur) / duration, float(np.median(dur)), dict(b.params), len(dur), float(np.std(logd)))


def recent_rates(counts: torch.Tensor, dt_ms: float, recent_fraction: float = 1.0) -> np.ndarray:
    """Rate (Hz) of each column of ``counts`` (``[T, n]`` per ``dt_ms`` step) over its last
    ``recent_fraction`` of steps (at least one step).

    Parameters
    ----------
    counts : torch.Tensor
        Counts per step, ``[T, n]``.
    dt_ms : float
        Step (ms).
    recent_fraction : float
        Last part of the steps used, in (0, 1].

    Returns
    -------
    np.ndarray
        Rates (Hz), ``[n]``.
    """
    if not 0.0 < recent_fraction <= 1.0:
        raise ValueError(f"recent_fraction must be in (0, 1], got {recent_fraction}")
    first = min(int(round((1.0 - recent_fraction) * counts.shape[0])), counts.shape[0] - 1)
    return counts[first:].mean(0).cpu().numpy() / (dt_ms / 1000.0)


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


def _burst_errors(model, target: BurstTarget, duration_s: float, batch: int, seed: int,
                  shrink: float = 1.0) -> tuple:
    """``(rates Hz [n recorded], saturated bins, log burst-rate ratio, log duration ratio)`` of
    ``batch`` free trajectories of ``duration_s`` s (after a 2 s burn-in), joined in time. Each log
    ratio (simulated / recorded) is shrunk towards 0 by its standard error (both sides' counting
    noise; ``shrink`` times it), so the depression does not chase noise. A simulation without
    bursts gives the log rate ratio of half a burst and no duration ratio (0)."""
    sim = model.simulate(duration_s * batch, seed=seed, n_parallel=batch, burn_in_s=2.0, progress=False)
    rates = sim.spike_counts / sim.duration
    b = detect_bursts(sim, **target.params)
    n, n0 = len(b), max(target.n_bursts, 1)
    half = 0.5 / sim.duration          # half a burst: a finite ratio when there is none
    log_rate = math.log((n / sim.duration + half) / (target.rate_hz + half))
    log_rate = _shrink(log_rate, shrink * math.sqrt(1.0 / max(n, 1) + 1.0 / n0))
    log_dur = 0.0
    if n:
        sd = math.sqrt(float(np.var(np.log(np.maximum(b.duration, 1e-6)))) / n + target.log_duration_sd ** 2 / n0)
        log_dur = _shrink(math.log(float(np.median(b.duration)) / target.median_duration_s),
                          shrink * MEDIAN_SE_FACTOR * sd)
    return rates, int(sim.metadata.get("saturated_bins") or 0), log_rate, log_dur


def _shrink(x: float, se: float) -> float:
    """Soft threshold: ``x`` moved towards 0 by ``se`` (0 inside ``[-se, se]``)."""
    return math.copysign(max(abs(x) - se, 0.0), x)


def round_duration(duration_s: float, batch: int, bursts: BurstTarget | None, min_bursts: float,
                   max_duration_s: float) -> float:
    """Seconds per trajectory of a calibration round: ``duration_s``, lengthened (up to
    ``max_duration_s``, never shortened) so that ``batch`` trajectories hold ``min_bursts`` network
    bursts at the target's burst rate (Hz); ``duration_s`` without a target or with ``min_bursts`` 0.

    Parameters
    ----------
    duration_s : float
        Seconds per trajectory asked for.
    batch : int
        Trajectories per round.
    bursts : BurstTarget or None
        The recording's burst statistics.
    min_bursts : float
        Network bursts wanted per round.
    max_duration_s : float
        Longest trajectory (s).

    Returns
    -------
    float
        Seconds per trajectory.
    """
    if bursts is None or not min_bursts > 0 or not bursts.rate_hz > 0:
        return float(duration_s)
    wanted = min_bursts / (batch * bursts.rate_hz)
    return float(max(duration_s, min(wanted, max_duration_s)))


#: which burst error moves which depression parameter (see :func:`calibrate_rates`)
BURST_PAIRINGS = ("duration-U", "rate-U")


def _move_depression(model, log_rate: float, log_dur: float, gain: float, pairing: str = "duration-U") -> None:
    """``"duration-U"``: bursts too long, a larger ``U`` (resources run out sooner); bursts too
    frequent, a slower recovery. ``"rate-U"``: bursts too frequent, a smaller ``U`` (with the
    rates pinned, fewer and longer bursts); bursts too long, a slower recovery. Both as log-odds /
    log steps of ``gain`` times the log error, clipped."""
    if pairing == "duration-U":
        du, dr = gain * log_dur, gain * log_rate
    else:
        du, dr = -gain * log_rate, gain * log_dur
    with torch.no_grad():
        du = float(np.clip(du, -MAX_BURST_STEP, MAX_BURST_STEP))
        dr = float(np.clip(dr, -MAX_BURST_STEP, MAX_BURST_STEP))
        lo, hi = (math.log(u / (1 - u)) for u in U_RANGE)
        model.use_logit.add_(du).clamp_(lo, hi)
        model.log_tau_rec_ms.add_(dr).clamp_(*(math.log(t) for t in TAU_REC_RANGE_MS))


def calibrate_rates(model, counts: torch.Tensor, *, rounds: int = 12, duration_s: float = 60.0, batch: int = 8,
                    gain: float = 0.4, unit_gain: float = 1.0, average_from: float = 0.5, seed: int = 0,
                    bursts: BurstTarget | None = None, burst_gain: float = 0.3,
                    burst_warmup: float = 0.0, recent_fraction: float = RECENT_FRACTION,
                    burst_shrink: float = 1.0, burst_pairing: str = "duration-U", min_bursts_per_round: float = 0.0,
                    max_duration_s: float = 180.0, progress: bool = True) -> dict:
    """Adjust recorded-unit biases so free-running rates match ``counts`` (``[T, n_recorded]``).

    Each round simulates ``batch`` trajectories of ``duration_s`` s and splits each unit's log
    rate error ``log(target / simulated)`` into the part common to all units (its median) and
    the unit's own part. In a bursting network the common part is mostly noise of the burst count
    (all rates rise and fall with the number of bursts in a run: repeated 720 s runs of one
    model scatter by 10-25 % in every unit together), and a common bias change is amplified by the
    recurrent excitation, so it moves by ``gain`` < 1 of the isolated-neuron correction
    (``delta_u * log ratio``); a unit's own part is far less noisy and moves by ``unit_gain``.
    Rounds are a stochastic approximation around the biases that match the rates: the model
    ends with the mean of the biases of the rounds from ``average_from * rounds`` on
    (Polyak-Ruppert averaging), not the round that looked best (a minimum over noisy rounds is an
    optimistic pick that the next simulation does not confirm).

    With ``bursts`` (and ``burst_gain > 0``) each round also measures the simulation's network
    bursts with the recording's detector and, from ``burst_warmup`` of the rounds on, moves every
    neuron's depression: the log-odds of ``U`` by ``burst_gain`` times the log ratio of the median
    burst durations (simulated / recorded), the log recovery time constant by ``burst_gain`` times
    the log ratio of the burst rates, each ratio first shrunk towards 0 by its standard error
    (counting noise of both sides). With the
    rates pinned by the biases, burst rate and duration trade against each other, so the duration
    mostly sets ``U`` and the rate the recovery. These parameters are averaged like the biases.

    Parameters
    ----------
    model : the network (its ``bias``, and with ``bursts`` its ``U`` and ``tau_rec``, change in place).
    counts : recorded ``[T, n_recorded]`` counts per step.
    rounds : simulation rounds.
    duration_s : seconds per trajectory and round (after a 2 s burn-in).
    batch : trajectories per round.
    gain, unit_gain : damping of the common and of the per-unit part of the bias shift.
    average_from : fraction of the rounds after which the biases are averaged; ``None`` keeps
        instead the biases (and depression) of the round with the smallest measured median error (the calibration
        before 2026-12-01, with ``rounds=6, duration_s=90, unit_gain=0.4``: an ablation arm).
    seed : seed of the simulations.
    bursts : the recording's :class:`BurstTarget` (:func:`burst_target`), optional.
    burst_gain : damping of the depression steps (0: rates only).
    burst_warmup : fraction of the rounds before the depression moves (0: from the first; a third
        did not do better on the tune wells).
    burst_shrink : how many standard errors each log burst ratio is shrunk towards 0 before a
        step (1: errors within one standard error move nothing; 0: every error moves the
        depression and only the averaging of the later rounds damps the noise).
    burst_pairing : ``"duration-U"`` (the duration error moves ``U``, the burst-rate error the
        recovery time constant) or ``"rate-U"`` (the burst-rate error moves ``U``, the duration
        error the recovery time constant; see :data:`BURST_PAIRINGS`).
    min_bursts_per_round : with ``bursts`` (also with ``burst_gain=0``), lengthen each round's
        trajectories so that a round holds at least this many network bursts at the recorded burst
        rate (each trajectory at most ``max_duration_s`` s): in a bursting network every unit's
        rate moves with the number of bursts in a run, so a round with few bursts measures the
        rates with a large common error (0: ``duration_s`` always).
    max_duration_s : upper bound (s) of a trajectory lengthened by ``min_bursts_per_round``.
    recent_fraction : the target rates are those of the last ``recent_fraction`` of ``counts``
        (default :data:`RECENT_FRACTION`, 1: the whole window; :func:`recent_rates`). Pass the
        same fraction to :func:`burst_target` for the burst target.
    progress : show a tqdm bar.

    Returns
    -------
    dict with ``calibration_median_rel_err`` (mean over the averaged rounds of the median relative
    rate error, a fraction) and ``calibration_rounds_err`` (that error per round); with a burst
    target also ``calibration_burst_log_errors`` (per round, ``[log rate ratio, log duration
    ratio]``), ``calibrated_use`` and ``calibrated_tau_rec_ms`` (medians over neurons).
    """
    if burst_pairing not in BURST_PAIRINGS:
        raise ValueError(f"burst_pairing must be one of {BURST_PAIRINGS}, got {burst_pairing!r}")
    nr = model.n_recorded
    target = recent_rates(counts, model.dt_ms, recent_fraction)
    with_bursts = bursts is not None and burst_gain > 0
    duration_s = round_duration(duration_s, batch, bursts, min_bursts_per_round, max_duration_s)
    bar = tqdm(range(rounds), disable=not progress, desc="rate calibration", unit="round")
    average = average_from
    first_avg = 0 if average is None else min(int(average * rounds), rounds - 1)
    names = ("bias", "use_logit", "log_tau_rec_ms") if with_bursts else ("bias",)
    errs, kept, burst_errs = [], [], []
    for r in bar:
        if with_bursts:
            rates, n_sat, log_rate, log_dur = _burst_errors(model, bursts, duration_s, batch, seed + 100 + r,
                                                            burst_shrink)
            burst_errs.append([log_rate, log_dur])
        else:
            rates, n_sat = simulated_rates(model, duration_s, batch, seed + 100 + r)
        err = float(np.median(np.abs(rates[:nr] - target) / np.maximum(target, 1e-9)))
        errs.append(err)
        bar.set_postfix(median_rel_err=f"{err:.2f}", saturated=n_sat)
        if average is None:  # keep-the-best variant: the parameters this round measured (depression too)
            if err <= min(errs):
                best = [getattr(model, k).detach().clone() for k in names]
            if r == rounds - 1:
                break  # the last simulation only measures the last shift
        log_ratio = np.log((target + 0.01) / (rates[:nr] + 0.01))
        common = float(np.median(log_ratio))
        step = gain * common + unit_gain * (log_ratio - common)
        with torch.no_grad():
            du = model.delta_u[:nr].detach()
            shift = du * torch.as_tensor(step, dtype=du.dtype, device=du.device)
            model.bias[:nr] += shift.clamp(-2.0, 2.0)
        if with_bursts and r >= int(burst_warmup * rounds):
            _move_depression(model, log_rate, log_dur, burst_gain, burst_pairing)
        if average is not None and r >= first_avg:
            kept.append([getattr(model, k).detach().clone() for k in names])
    bar.close()
    with torch.no_grad():
        for i, k in enumerate(names):
            getattr(model, k).copy_(best[i] if average is None else torch.stack([v[i] for v in kept]).mean(0))
    out = {"calibration_median_rel_err": float(min(errs) if average is None else np.mean(errs[first_avg:])),
           "calibration_rounds_err": errs}
    if with_bursts:
        out.update(calibration_burst_log_errors=burst_errs, calibrated_use=float(model.use.detach().median()),
                   calibrated_tau_rec_ms=float(torch.exp(model.log_tau_rec_ms.detach()).median()))
    return out
