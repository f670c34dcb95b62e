"""Fit a model's stimulation coupling to a recorded calibration session: :func:`calibrate`.

The recurrent network stays fixed; the global parameters of
:class:`~organoid_sim.nn.stim_coupling.StimulusCoupling` (membrane pathway: ``gain``,
``q50_nc``, ``hill``, ``length_um``, ``tau_ms``, ``distance_power``; direct pathway, when the
coupling has it: ``direct_gain``, ``direct_q50_nc``, ``direct_hill``, ``direct_length_um``,
``direct_power``, ``direct_tau_ms``, ``velocity_um_per_ms``, ``direct_local_fraction``; see
:func:`default_params`)
move first, then the recorded units' gains (which scale both pathways). The fit matches evoked
responses: for every stimulated electrode x amplitude of the session, the response probability
and median first-spike latency of every recorded unit (:func:`organoid_sim.stats.evoked_responses`)
are compared with those the model predicts (:func:`predict_evoked_responses`), and a Nelder-Mead
search (scipy) in log-parameter space minimises

    mean_gc (P_model - P_rec)^2 + latency_weight * sum_gc w_gc ((lat_model - lat_rec) / 25 ms)^2 / sum_gc w_gc

over the pairs ``gc`` that respond in both, weighted by ``w = min(P_model, P_rec)^2`` so that
reliable responses count and latencies of chance spikes barely do. Model
responses are simulated in one batched run per evaluation: ``n_trials`` trials per condition,
each starting from a state of the model's own spontaneous activity, with the same random numbers
at every evaluation (common random numbers), so the objective is a smooth-enough function of the
parameters for a derivative-free search.

Then (``neuron_gains=True``) :func:`fit_neuron_gains` sets the per-neuron gains of the recorded
units from their mean response probability to pulses on their own (nearby) electrodes.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field

import numpy as np
import torch

from ..events import COLUMNS, StimEvents
from ..models.base import add_event_counts, counts_to_recording
from ..stats import evoked_responses

#: default response window (s after the pulse): the same as the virtual organoid's true responses
WINDOW = (0.002, 0.050)
PARAMS = ("gain", "q50_nc", "hill", "length_um", "tau_ms", "distance_power")
LATENCY_SCALE_S = 0.025
#: Nelder-Mead search in log-parameter space: first simplex step (a factor of 2 per parameter) and
#: the tolerances on the log-parameters and on the loss
SIMPLEX_STEP = math.log(2.0)
NM_XATOL = 0.02
NM_FATOL = 1e-5
#: seed offsets of the spontaneous start states, of the trials' noise and of the spike-time jitter
STATES_SEED_OFFSET, TRIALS_SEED_OFFSET, JITTER_SEED_OFFSET = 1, 2, 3
#: the direct pathway's parameters calibrated by default (when the coupling has that pathway)
DIRECT_PARAMS = ("direct_gain", "direct_q50_nc", "direct_hill", "direct_length_um", "direct_power", "direct_tau_ms",
                 "velocity_um_per_ms", "direct_local_fraction")


def default_params(coupling) -> tuple[str, ...]:
    """The coupling parameters :func:`calibrate` moves by default: :data:`PARAMS`, plus
    :data:`DIRECT_PARAMS` when the coupling's direct pathway is on."""
    return PARAMS + (DIRECT_PARAMS if getattr(coupling, "direct", False) else ())


@dataclass
class CalibrationResult:
    """Outcome of :func:`calibrate`: parameters and loss before/after, and the responses compared."""

    before: dict
    after: dict
    loss_before: float
    loss_after: float
    n_evaluations: int
    interrupted: bool
    observed: object = field(repr=False)
    predicted: object = field(repr=False)

    def to_dict(self) -> dict:
        """JSON-ready summary (no response arrays)."""
        return {"before": self.before, "after": self.after, "loss_before": self.loss_before,
                "loss_after": self.loss_after, "n_evaluations": self.n_evaluations, "interrupted": self.interrupted}


def conditions_of(events: StimEvents) -> StimEvents:
    """One row per distinct (electrode, amplitude, phase_us, n_phases) of ``events`` (time 0)."""
    if len(events) == 0:
        return events
    keys = np.stack([events.electrode.astype(float), events.amplitude, events.phase_us,
                     events.n_phases.astype(float)], 1)
    uniq = np.unique(keys, axis=0)
    return StimEvents(np.zeros(len(uniq)), uniq[:, 0].astype(np.int64), uniq[:, 1], uniq[:, 2],
                      uniq[:, 3].astype(np.int64), amplitude_unit=events.amplitude_unit)


def _spontaneous_states(model, n: int, burn_in_s: float, seed: int):
    """``n`` independent model states after ``burn_in_s`` s of spontaneous activity."""
    steps = max(1, int(round(burn_in_s * 1000.0 / model.dt_ms)))
    _, state, _ = model.run(steps, batch=n, seed=seed, record=False)
    return state


def _repeat_state(state, lo: int, hi: int):
    """Trials ``lo:hi`` of a tiled batch: trial ``b`` starts from row ``b % n`` of ``state``."""
    from dataclasses import fields

    out = {}
    for f in fields(state):
        v = getattr(state, f.name)
        dim = v.ndim - 2                     # batch is the second-last dimension ([.., B, N])
        n = v.shape[dim]
        idx = torch.arange(lo, hi, device=v.device) % n
        out[f.name] = v.index_select(dim, idx).clone()
    return type(state)(**out)


def predict_evoked_responses(model, events: StimEvents, *, n_trials: int = 16, window=WINDOW, seed: int = 0,
                             burn_in_s: float = 2.0, max_batch: int = 1024, states=None, progress: bool = False):
    """The model's evoked responses to each distinct pulse of ``events`` (an ``EvokedResponses``).

    Every (electrode, amplitude, phase) condition gets ``n_trials`` single-pulse trials, each from an
    independent state of spontaneous activity (``burn_in_s`` s), pulses at a random sub-step phase.
    Trials run side by side (batches of ``max_batch``) and are laid end to end into one recording
    analysed by :func:`organoid_sim.stats.evoked_responses` with ``window`` (s), grouped by amplitude.
    """
    from tqdm.auto import tqdm

    coupling = model.stim_coupling
    if coupling is None:
        raise ValueError("the model has no stim_coupling: fit it to a recording with an electrode layout first")
    cond = conditions_of(events)
    if len(cond) == 0:
        raise ValueError("predict_evoked_responses: no stimulation events given")
    dt_s = model.dt_ms / 1000.0
    pre_s = 2 * dt_s
    n_steps = int(math.ceil((pre_s + dt_s + window[1]) / dt_s)) + 1
    trial_s = n_steps * dt_s
    rng = np.random.default_rng(seed)
    n_total = len(cond) * n_trials
    onset = pre_s + rng.random(n_total) * dt_s            # pulse time inside the trial (s)
    which = np.repeat(np.arange(len(cond)), n_trials)
    if states is None:
        states = _spontaneous_states(model, n_trials, burn_in_s, seed + STATES_SEED_OFFSET)
    counts = np.zeros((n_total * n_steps, model.n_recorded), np.int64)
    with torch.no_grad():
        for lo in tqdm(range(0, n_total, max_batch), disable=not progress, desc="predict responses"):
            hi = min(lo + max_batch, n_total)
            offs = torch.arange(n_steps, dtype=torch.float64)[:, None] * dt_s - torch.as_tensor(onset[lo:hi])
            ext, direct = coupling.pulse_inputs(cond.take(which[lo:hi]), offs, dt_s)    # [T, b, N] each
            if direct is not None:
                direct = direct.to(model.torch_device())
            ev, _, _ = model.run(n_steps, batch=hi - lo, seed=seed + TRIALS_SEED_OFFSET + lo,
                                 ext=ext.to(model.torch_device()), direct=direct, state=_repeat_state(states, lo, hi))
            add_event_counts(counts, ev, steps_per_trajectory=n_steps, first_trajectory=lo)
    t_pulse = np.arange(n_total) * trial_s + onset
    stim = StimEvents(t_pulse, *(getattr(cond, c)[which] for c in COLUMNS[1:]), amplitude_unit=cond.amplitude_unit)
    rec = counts_to_recording(counts, model.dt_ms, model.layout, seed=seed + JITTER_SEED_OFFSET, stim=stim)
    return evoked_responses(rec, window=window, by_amplitude=True)


def _align(observed, predicted):
    """Rows of ``predicted`` in the order of ``observed`` (same electrode and amplitude)."""
    key = {(int(e), float(a)): g for g, (e, a) in enumerate(zip(predicted.electrodes, predicted.amplitudes))}
    rows = [key[(int(e), float(a))] for e, a in zip(observed.electrodes, observed.amplitudes)]
    return predicted.response_probability[rows], predicted.median_latency_s[rows]


def response_loss(observed, predicted, latency_weight: float = 0.2) -> float:
    """Mismatch of response probabilities and latencies (see the module docstring)."""
    p_obs, l_obs = observed.response_probability, observed.median_latency_s
    p_sim, l_sim = _align(observed, predicted)
    loss = float(np.mean((p_sim - p_obs) ** 2))
    both = np.isfinite(l_obs) & np.isfinite(l_sim)
    if latency_weight > 0 and both.any():
        w = np.minimum(p_sim, p_obs)[both] ** 2
        err = ((l_sim - l_obs)[both] / LATENCY_SCALE_S) ** 2
        loss += latency_weight * float(np.sum(w * err) / max(np.sum(w), 1e-9))
    return loss


def _check(model, recording) -> None:
    if getattr(model, "stim_coupling", None) is None:
        raise ValueError("calibrate: the model has no stim_coupling (fit it to a recording with electrodes first)")
    if len(recording.stim) == 0:
        raise ValueError("calibrate: the recording has no stimulation events (recording.stim is empty); "
                         "a calibration session needs pulses")
    if recording.n_units != model.n_recorded:
        raise ValueError(f"calibrate: the recording has {recording.n_units} units but the model was fitted to "
                         f"{model.n_recorded}; use a session recorded on the same units")
    ids = np.asarray(model.layout.get("unit_ids", []))
    if len(ids) == recording.n_units and not np.array_equal(ids.astype(str), recording.unit_ids.astype(str)):
        raise ValueError("calibrate: the recording's unit ids differ from the model's recorded units")


def _near_weights(coupling, observed, n_units: int, radius_um: float) -> np.ndarray:
    """``[condition, unit]`` 1 where the condition's electrode lies within ``radius_um`` of the unit, else 0."""
    rows = coupling.electrode_rows(np.asarray(observed.electrodes, dtype=np.int64)).cpu().numpy()
    exy = coupling.electrode_xy_um.cpu().numpy()[rows]
    uxy = coupling.neuron_xy_um.cpu().numpy()[:n_units]
    d = np.sqrt(((exy[:, None, :] - uxy[None]) ** 2).sum(-1))
    return np.nan_to_num((d <= radius_um).astype(float))


def fit_neuron_gains(model, observed, events, *, states, n_trials: int, window, seed: int, n_iterations: int = 4,
                     radius_um: float = 100.0, step: float = 0.7, shrinkage: float = 0.15, floor: float = 0.05,
                     max_abs_log_gain: float = 2.5):
    """Per-recorded-neuron gains (``neuron_log_gain``) by damped log-ratio fixed-point updates.

    Each recorded unit's mean response probability to the calibration pulses of electrodes within
    ``radius_um`` um is matched: ``g += step * log((P_rec + floor) / (P_model + floor))``, then
    shrunk towards 0 by ``shrinkage`` (a unit the session says little about keeps the prior's gain).
    ``observed``: the session's ``EvokedResponses`` (by amplitude); ``events``: its pulses;
    ``states``: model states to start trials from; ``n_trials``, ``window`` (s), ``seed`` as in
    :func:`predict_evoked_responses`; ``floor`` keeps the log-ratio finite for silent units;
    ``max_abs_log_gain`` bounds each gain. Updates the model in place and returns the last
    prediction of the session. Only the calibration session is used.
    """
    coupling = model.stim_coupling
    n_units = observed.response_probability.shape[1]
    w = _near_weights(coupling, observed, n_units, radius_um)
    has = w.sum(0) > 0
    norm = np.maximum(w.sum(0), 1.0)
    p_obs = (w * observed.response_probability).sum(0) / norm
    pred = None
    for it in range(n_iterations + 1):
        pred = predict_evoked_responses(model, events, n_trials=n_trials, window=window, seed=seed, states=states)
        if it == n_iterations:
            break
        p_sim = (w * _align(observed, pred)[0]).sum(0) / norm
        delta = np.where(has, step * np.log((p_obs + floor) / (p_sim + floor)), 0.0)
        with torch.no_grad():
            g = coupling.neuron_log_gain[:n_units]
            new = (g.cpu().numpy() + delta) * (1.0 - shrinkage)
            g.copy_(torch.as_tensor(np.clip(new, -max_abs_log_gain, max_abs_log_gain), dtype=g.dtype))
    return pred


def calibrate(model, recording, *, params=None, n_trials: int = 16, window=WINDOW, max_evaluations: int = 80,
              latency_weight: float = 0.2, burn_in_s: float = 2.0, seed: int = 0, progress: bool = True,
              neuron_gains: bool = True) -> CalibrationResult:
    """Fit ``model.stim_coupling`` to the evoked responses of ``recording`` (a calibration session).

    ``recording`` holds the same units as the model and stimulation events in ``recording.stim``.
    ``params``: which coupling parameters move (others keep their value; default
    :func:`default_params`); ``n_trials``: simulated
    trials per condition; ``window`` (s after the pulse) where first spikes count;
    ``max_evaluations``: budget of the Nelder-Mead search. ``neuron_gains``: then fit the recorded
    units' ``neuron_log_gain`` (:func:`fit_neuron_gains`). The network weights never change.
    The model is updated in place with the best parameters found (also on Ctrl-C, after which the
    result says ``interrupted=True``). Same ``seed``, same result.
    """
    from scipy.optimize import minimize
    from tqdm.auto import tqdm

    _check(model, recording)
    coupling = model.stim_coupling
    params = default_params(coupling) if params is None else tuple(params)
    names = getattr(coupling, "parameter_names", PARAMS)
    unknown = set(params) - set(names)
    if unknown:
        raise ValueError(f"calibrate: unknown coupling parameters {sorted(unknown)}; choose from {tuple(names)}")
    observed = evoked_responses(recording, window=window, by_amplitude=True)
    events = recording.stim
    states = _spontaneous_states(model, n_trials, burn_in_s, seed + STATES_SEED_OFFSET)
    logs = [getattr(coupling, "log_" + p) for p in params]
    x0 = np.array([float(v.detach()) for v in logs])
    before = coupling.values()

    def set_params(x) -> None:
        with torch.no_grad():
            for v, xi in zip(logs, x):
                v.fill_(float(xi))

    best = {"loss": np.inf, "x": x0.copy(), "pred": None, "n": 0}
    bar = tqdm(total=max_evaluations, disable=not progress, desc="calibrate", unit="eval")

    def objective(x) -> float:
        set_params(x)
        pred = predict_evoked_responses(model, events, n_trials=n_trials, window=window, seed=seed,
                                        states=states)
        loss = response_loss(observed, pred, latency_weight)
        if loss < best["loss"]:
            best.update(loss=loss, x=np.array(x, float), pred=pred)
        best["n"] += 1
        bar.update(1)
        bar.set_postfix(loss=f"{loss:.4f}", best=f"{best['loss']:.4f}")
        return loss

    interrupted, loss0 = False, float("nan")
    try:
        loss0 = objective(x0)
        simplex = np.vstack([x0] + [x0 + np.eye(len(x0))[i] * SIMPLEX_STEP for i in range(len(x0))])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            minimize(objective, x0, method="Nelder-Mead",
                     options={"maxfev": max(1, max_evaluations - 1), "initial_simplex": simplex,
                              "xatol": NM_XATOL, "fatol": NM_FATOL})
    except KeyboardInterrupt:
        interrupted = True
    finally:
        bar.close()
        set_params(best["x"])
    if neuron_gains and not interrupted:
        pred = fit_neuron_gains(model, observed, events, states=states, n_trials=n_trials, window=window, seed=seed)
        best.update(pred=pred, loss=response_loss(observed, pred, latency_weight))
    return CalibrationResult(before=before, after=coupling.values(), loss_before=float(loss0),
                             loss_after=float(best["loss"]), n_evaluations=int(best["n"]), interrupted=interrupted,
                             observed=observed, predicted=best["pred"])
