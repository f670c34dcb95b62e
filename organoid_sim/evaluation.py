"""`evaluate`: fit Poisson, coupled GLM and spiking network on the first part of a recording and
judge them on the rest, side by side with the recording's own noise floor.

For each model: held-out teacher-forced bits/spike (``model.score``) and a free-running
simulation of ``sim_factor`` times the held-out duration compared with the held-out spikes by
:func:`organoid_sim.stats.compare` (per-unit rates, network bursts, pairwise correlations). The
``"recording"`` row compares the fitting part itself with the held-out part: how different two
stretches of the same culture are, the floor under which no model can be judged. The
``"in_sample"`` row is the network's self-check (:mod:`organoid_sim.fit.self_check`): its
free-running simulation against the fitting part itself (bits/spike teacher-forced on the fitting
part), and ``rows["network"]["capped_bin_fraction"]`` the fraction of the network's simulated bins
(all neurons) at the count cap.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from typing import Mapping

from .jsonable import finite_or_none
from .recording import SpikeRecording
from .fit.config import SELF_CHECK_SEED_OFFSET
from .fit.self_check import Bar, capped_fraction, describe_misses, in_sample_check, judge
from .models import CoupledGLM, PoissonModel, SpikingNetworkModel
from .models.base import DEFAULT_DT_MS
from .models.network import DEFAULT_N_HIDDEN
from .stats import compare

__all__ = ["evaluate", "EvaluationReport", "FIGURES", "held_out_bars", "judge_evaluation"]

FIGURES = ("bits_per_spike", "rate_r", "rate_median_rel_err", "burst_rate_rel_err", "burst_duration_rel_err",
           "corr_matrix_r")
ROWS = ("poisson", "glm", "network", "recording", "in_sample")
#: free-running simulations: trajectories side by side and burn-in (s) from rest
SIM_PARALLEL = 8
SIM_BURN_IN_S = 5.0


@dataclass
class EvaluationReport:
    """Per-row figures (``rows[name][figure]``), fit/simulation times (s) and notes."""

    rows: dict
    timings: dict = field(default_factory=dict)
    notes: list = field(default_factory=list)
    settings: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        """``{"poisson": {...}, "glm": {...}, "network": {...}, "recording": {...}, "in_sample": {...}}`` plus
        ``"timings_s"``, ``"notes"`` and ``"settings"``; NaN where a figure is undefined."""
        return {**{k: dict(v) for k, v in self.rows.items()}, "timings_s": dict(self.timings),
                "notes": list(self.notes), "settings": dict(self.settings)}

    def to_json(self) -> str:
        """JSON text of :meth:`to_dict` (NaN written as null)."""
        return json.dumps(finite_or_none(self.to_dict()), indent=2)

    def __str__(self) -> str:
        head = f"{'':<10}" + "".join(f"{f:>24}" for f in FIGURES)
        lines = [head]
        for name, row in self.rows.items():
            lines.append(f"{name:<10}" + "".join(f"{row.get(f, float('nan')):>24.3f}" for f in FIGURES))
        cf = self.rows.get("network", {}).get("capped_bin_fraction")
        if cf is not None:
            lines.append(f"network simulation: {100 * cf:.3f} % of bins at the count cap")
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines)


def held_out_bars():
    """The held-out bars of the network row: rate r >= 0.9, median rate error <= 20 %, burst rate
    and median burst duration within 25 %, correlation-matrix r >= 0.7 (each also met when no
    worse than the recording's own figure); bits/spike is judged by :func:`judge_evaluation`."""
    return (Bar("rate_r", 0.9, "min", "rate r"), Bar("rate_median_rel_err", 0.20, "abs_max", "median rate error"),
            Bar("burst_rate_rel_err", 0.25, "abs_max", "burst rate"),
            Bar("burst_duration_rel_err", 0.25, "abs_max", "burst duration"),
            Bar("corr_matrix_r", 0.7, "min", "correlation r"))


def judge_evaluation(result: dict) -> dict:
    """Pass/fail per bar of an :meth:`EvaluationReport.to_dict` result.

    Parameters
    ----------
    result : ``evaluate(...).to_dict()`` (with the ``"network"`` row; ``"glm"``, ``"recording"``
        and ``"in_sample"`` when present).

    Returns
    -------
    dict with ``held_out`` (bar -> bool: ``bits_per_spike`` > 0 and >= the GLM's, then
    :func:`held_out_bars` against the ``"recording"`` floor), ``passed`` (every held-out bar),
    ``recording_held_out`` (bar -> bool: the recording's own first part against its held-out part,
    judged by the absolute bars alone; where it misses one, the culture drifted past that bar
    and the network can meet it only by being no worse than the drift) and, with an
    ``"in_sample"`` row, ``in_sample`` (bar -> bool, :data:`organoid_sim.fit.self_check.IN_SAMPLE_BARS`;
    as in the self-check, the burst bars are met when neither side has a network burst)
    and ``in_sample_passed``.
    """
    net = result["network"]
    bits = _number(net.get("bits_per_spike", float("nan")))
    glm_bits = _number(result.get("glm", {}).get("bits_per_spike", float("-inf")))
    held = {"bits_per_spike": bool(math.isfinite(bits) and bits > 0 and not bits < glm_bits)}
    held.update(judge(net, held_out_bars(), floor=result.get("recording")))
    out = {"held_out": held, "passed": all(held.values())}
    if "recording" in result:
        out["recording_held_out"] = judge(result["recording"], held_out_bars())
    if "in_sample" in result:
        ins = judge(result["in_sample"])
        if _neither_bursts(result["in_sample"]):   # the self-check's rule (judge_comparison)
            ins.update(burst_rate_rel_err=True, burst_duration_rel_err=True)
        out.update(in_sample=ins, in_sample_passed=all(ins.values()))
    return out


def _number(v) -> float:
    """A figure as a float: ``to_json`` writes an undefined (NaN) figure as null."""
    return float("nan") if v is None else float(v)


def _neither_bursts(row: dict) -> bool:
    """Whether a row's figures say that neither side had a network burst: a burst-rate error of
    0 (both rates 0) with an undefined duration error (either side bursting gives a duration, or
    a rate error of -1 or inf)."""
    rate, dur = row.get("burst_rate_rel_err"), row.get("burst_duration_rel_err")
    return rate == 0 and (dur is None or not math.isfinite(dur))


def _figures(held: SpikeRecording, candidate: SpikeRecording) -> dict:
    s = compare(held, candidate, noise_floor=False).summary  # the figures only, not the verdict
    return {k: float(s.get(k, float("nan"))) for k in FIGURES[1:]}


def _estimators(models, seed: int, network_options, glm_options, fit_options, device, progress) -> dict:
    """Name -> unfitted estimator: ``models`` itself when it maps names to estimators, else the
    default estimator of each name (``"poisson"``, ``"glm"``, ``"network"``) with the options."""
    if isinstance(models, Mapping):
        return dict(models)
    net = {"seed": seed, "n_hidden": DEFAULT_N_HIDDEN, **(network_options or {})}
    fit = {SpikingNetworkModel.legacy_fit_names.get(k, k): v for k, v in (fit_options or {}).items()}
    dt = net.get("dt_ms", DEFAULT_DT_MS)   # the baselines score the same bins as the network
    defaults = {
        "poisson": lambda: PoissonModel(dt_ms=dt),
        "glm": lambda: CoupledGLM(**{"progress": progress, "device": device, "dt_ms": dt, **(glm_options or {})}),
        "network": lambda: SpikingNetworkModel(**{"fit_seed": seed, "device": device, "progress": progress,
                                                  **net, **fit}),
    }
    unknown = [m for m in models if m not in defaults]
    if unknown:
        raise ValueError(f"evaluate: unknown model name(s) {unknown}; expected some of {list(defaults)} "
                         "or a mapping of names to estimators")
    return {name: defaults[name]() for name in models}


def evaluate(recording: SpikeRecording, split: float = 0.75, seed: int = 0, *, sim_factor: float = 4.0,
             network_options: dict | None = None, glm_options: dict | None = None, fit_options: dict | None = None,
             models=("poisson", "glm", "network"), trim_silence: bool = True, device=None,
             progress: bool = False) -> EvaluationReport:
    """Fit on the first ``split`` of ``recording`` and judge on the rest (see module docstring).

    ``sim_factor``: free-running simulation length in units of the held-out duration (>= 4 keeps
    the model side from being the noisy one). ``network_options`` / ``glm_options``: constructor
    arguments of :class:`SpikingNetworkModel` (default ``n_hidden=8``) / :class:`CoupledGLM`;
    ``fit_options``: the network's fit options (constructor parameters such as ``refine_steps``;
    ``seed`` is taken as ``fit_seed``). ``trim_silence`` first cuts the recording to its
    first..last spike (:meth:`SpikeRecording.trim_silence`, the rule of ``organoid-sim fit`` too;
    ``False`` keeps the silence). ``seed`` fixes fitting and simulation randomness. ``progress``:
    a tqdm bar over the stages (each model's fit and simulation), with the fits' and simulations'
    own bars below it.

    Parameters
    ----------
    recording : SpikeRecording
        The recording to split in time.
    split : float
        Fraction of the (trimmed) recording used for fitting.
    seed : int
        Seed of fitting and simulation.
    sim_factor : float
        Simulation length in held-out durations.
    network_options, glm_options, fit_options : dict, optional
        Constructor arguments of the default estimators (see above).
    models : sequence of str or Mapping[str, estimator]
        Names of default estimators (``"poisson"``, ``"glm"``, ``"network"``), or name ->
        unfitted estimator (anything with ``fit(recording)``, ``score`` and ``simulate``).
    trim_silence : bool
        Cut the recording to its first..last spike first.
    device : str, optional
        Where the default GLM and network fit (``"cpu"``/``"cuda"``).
    progress : bool
        Progress bars of the default estimators.

    Returns
    -------
    EvaluationReport
        One row per estimator plus ``"recording"`` (the fitting part judged against the held-out part);
        ``settings["fit_metrics"]`` holds each fitted estimator's scalar fit figures (its
        ``provenance["metrics"]``: stage timings in s, held-out teacher-forced bits/spike, the
        likelihood guard's decisions).
    """
    from tqdm.auto import tqdm

    if trim_silence:
        recording = recording.trim_silence()
    train, held = recording.split(split)
    if held.n_spikes == 0 or train.n_spikes == 0:
        raise ValueError(f"evaluate: no spikes in the {'held-out' if held.n_spikes == 0 else 'fitting'} part "
                         f"(split={split}: fitting {train.t_start:.6g}-{train.t_stop:.6g} s, held out "
                         f"{held.t_start:.6g}-{held.t_stop:.6g} s) of {recording!r}")
    sim_s = sim_factor * held.duration
    estimators = _estimators(models, seed, network_options, glm_options, fit_options, device, progress)
    rows, timings, notes, in_row, fit_figures = {}, {}, [], None, {}
    bar = tqdm(total=2 * len(estimators), desc="evaluate", unit="stage", disable=not progress)
    for name, model in estimators.items():
        bar.set_postfix_str(f"fitting {name}")
        t0 = time.perf_counter()
        model.fit(train)
        timings[f"{name}_fit"] = time.perf_counter() - t0
        bar.update()
        bar.set_postfix_str(f"simulating {name}")
        t1 = time.perf_counter()
        sim = model.simulate(sim_s, seed=seed, t_start=held.t_start, n_parallel=SIM_PARALLEL, burn_in_s=SIM_BURN_IN_S,
                             progress=progress)
        timings[f"{name}_simulate"] = time.perf_counter() - t1
        bar.update()
        rows[name] = {"bits_per_spike": model.score(held), **_figures(held, sim)}
        if isinstance(model, SpikingNetworkModel):
            rows[name]["capped_bin_fraction"] = capped_fraction(sim, model)
            in_sample = (model.provenance.get("self_check")
                         or in_sample_check(model, train, seed=seed + SELF_CHECK_SEED_OFFSET))
            in_row = {"bits_per_spike": model.score(train),
                      **{k: in_sample["figures"].get(k, float("nan")) for k in FIGURES[1:]}}
            if in_sample["missed"]:
                notes.append(describe_misses(in_sample))
        sat = sim.metadata.get("saturated_bins", 0)
        if sat:
            notes.append(f"{name}: {sat} simulated bins hit the count cap (run-away activity)")
        if sim.n_spikes == 0:
            notes.append(f"{name}: the free-running simulation fell silent")
        fit_metrics = getattr(model, "provenance", {}).get("metrics", {})
        if fit_metrics:   # the scalar figures of the fit (its stages, timings, the guard's decisions)
            fit_figures[name] = {k: v for k, v in fit_metrics.items() if isinstance(v, (bool, int, float, str))}
        if fit_metrics.get("uncoupled"):
            notes.append(f"{name}: coupling did not predict the fitting window's held-out end better "
                         f"({fit_metrics['coupled_val_bits']:.3f} against {fit_metrics['uncoupled_val_bits']:.3f} "
                         "bits/spike), so the uncoupled network was kept")
        if fit_metrics.get("refinement_rejected"):
            notes.append(f"{name}: free-running refinement was undone by the likelihood guard")
        if fit_metrics.get("burst_calibration_rejected"):
            notes.append(f"{name}: the burst calibration was undone by the likelihood guard (rates calibrated only)")
        elif fit_metrics.get("burst_calibration_outvoted"):
            notes.append(f"{name}: the burst calibration was accepted, but a smaller move of the depression "
                         f"({100 * fit_metrics['burst_calibration_fraction']:.0f} % of it) simulated the fitting "
                         "window more closely and was kept")
        elif 0.0 < fit_metrics.get("burst_calibration_fraction", 1.0) < 1.0:
            notes.append(f"{name}: the likelihood guard kept {100 * fit_metrics['burst_calibration_fraction']:.0f} % "
                         "of the burst calibration's change of the depression")
    bar.close()
    rows["recording"] = {"bits_per_spike": float("nan"), **_figures(held, train)}
    if in_row is not None:
        rows["in_sample"] = in_row
    settings = {"split": split, "seed": seed, "sim_factor": sim_factor, "fit_window_s": [train.t_start, train.t_stop],
                "held_out_window_s": [held.t_start, held.t_stop], "source": recording.metadata.get("source"),
                "well": recording.metadata.get("well"), "fit_metrics": fit_figures}
    return EvaluationReport(rows=rows, timings=timings, notes=notes, settings=settings)
