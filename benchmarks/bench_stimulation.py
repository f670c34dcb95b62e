"""Ground-truth stimulation benchmark: does a fitted model predict evoked responses it never saw?

Two ground truths (``--culture``, see ``benchmarks/stim_cultures.py``): ``ours``, the virtual
organoid of ``organoid_sim.synthetic`` (default), and ``second``, an independent Brian2 culture with
other physics (``benchmarks/cultures/second.py``); ``--culture-dir DIR`` runs the same steps on a
ground truth of your own written as a folder (``stim_cultures.load_folder`` says what it holds). On each:

1. Fit a ``SpikingNetworkModel`` on the spontaneous recording (first ``--fit-s`` s).
2. Predict, with the distance-only prior coupling, the responses to every held-out condition:
   the electrodes the calibration session never stimulated (all amplitudes) and the amplitudes
   it never used (all electrodes).
3. Calibrate the coupling on the calibration session (half of the electrodes, two amplitudes)
   with ``organoid_sim.stimulation.calibrate`` (its defaults) and predict the held-out conditions again.
4. Compare both with the true responses (same window, both through
   ``organoid_sim.stats.evoked_responses``): Pearson r of the per-channel response probability over
   held-out condition x channel pairs, and the median absolute error of the median first-spike
   latency over pairs that respond reliably in the truth (P >= 0.3) and at all in the prediction.
5. Beside them: a model-free lookup baseline (each channel's response to that electrode in the
   calibration session, linearly interpolated between the calibrated amplitudes; for an electrode
   never stimulated, the mean over calibrated electrodes of the channel at the same offset from
   them) and the truth's split-half noise ceiling (the same figures between two disjoint halves of
   the truth's trials), with the r a perfect prediction of the expected responses would reach
   against the whole truth (``attainable_r``: Spearman-Brown from the halves' r), and an
   electrode-agnostic reference (``electrode_agnostic``): each held-out condition predicted from the
   truth's other electrodes by distance and channel alone, the part of the truth that needs no
   knowledge of the stimulated electrode itself; a second model-free baseline (``additive_lookup``)
   builds the same distance-and-channel prediction from the calibration session alone.

Bars: calibrated r >= 0.8 and above the lookup; latency error <= 5 ms, or <= 1.25x the ceiling's
where that is larger; the calibrated figures no worse than the prior's.

``--json`` prints a JSON object as the last line: ``response_probability_r``,
``latency_median_abs_err_ms``, ``prior_only`` (the same two keys), ``lookup``, ``ceiling``,
``electrode_agnostic``, ``additive_lookup``, ``bars`` and details.
Run: ``python benchmarks/bench_stimulation.py [--culture ours|second] [--json]``.
"""

from __future__ import annotations

import argparse
import inspect
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from stim_cultures import load_culture  # noqa: E402

from organoid_sim.events import StimEvents  # noqa: E402
from organoid_sim.models.network import STIMULATION_FIT  # noqa: E402
from organoid_sim.stats import evoked_agreement  # noqa: E402
from organoid_sim.stimulation import calibrate, predict_evoked_responses  # noqa: E402
from organoid_sim.stimulation.reference import distance_channel_prediction, recording_geometry  # noqa: E402

KEYS = ("response_probability_r", "latency_median_abs_err_ms")
#: the benchmark measures calibrate's own defaults (trials per condition, evaluations)
CALIBRATE_DEFAULTS = {k: v.default for k, v in inspect.signature(calibrate).parameters.items()
                      if k in ("n_trials", "max_evaluations")}
#: model trials per held-out condition: a prediction estimates the model's expected response, and
#: its own Monte-Carlo noise lowers r against the truth as the truth's noise does (at 128 trials the
#: predictions' reliability was 0.97 on ours and 0.92 on second, r 0.01-0.02 lower than at 512)
PREDICT_TRIALS = 512


def held_out_events(culture) -> StimEvents:
    """One pulse per held-out (electrode, amplitude) of the culture (cathodic-first, uA)."""
    phase = float(np.unique(culture.session.stim.phase_us)[0])
    return StimEvents.from_columns(np.zeros(len(culture.held_electrodes)), culture.held_electrodes,
                                   -np.asarray(culture.held_amplitudes, float), phase, 2, sort=False)


def _pairs(truth, electrodes, amplitudes, prob, lat, unit_ids):
    """Truth and prediction over (condition, channel) pairs, as flat arrays."""
    ei = {int(x): i for i, x in enumerate(truth.electrodes)}
    ai = {round(float(x), 6): i for i, x in enumerate(truth.amplitudes_ua)}
    cols = [list(truth.unit_ids).index(u) for u in unit_ids]
    p_true, l_true = [], []
    for e, a in zip(electrodes, amplitudes):
        i, j = ei[int(e)], ai[round(abs(float(a)), 6)]
        p_true.append(truth.response_probability[i, j, cols])
        l_true.append(truth.median_latency_s[i, j, cols])
    return np.concatenate(p_true), np.concatenate(l_true), np.ravel(prob), np.ravel(lat)


def compare(truth, predicted) -> dict:
    """Figures of ``predicted`` (``EvokedResponses`` by amplitude) against ``truth`` on its conditions."""
    return evoked_agreement(*_pairs(truth, predicted.electrodes, predicted.amplitudes, predicted.response_probability,
                           predicted.median_latency_s, predicted.unit_ids))


def _interp(x, xs, ys):
    """Linear interpolation of ``ys`` [K, C] at ``x`` over sorted ``xs`` [K], clamped, NaN-aware."""
    if len(xs) == 1:
        return ys[0]
    j = int(np.clip(np.searchsorted(xs, x) - 1, 0, len(xs) - 2))
    w = float(np.clip((x - xs[j]) / (xs[j + 1] - xs[j]), 0.0, 1.0))
    lo, hi = ys[j], ys[j + 1]
    out = (1 - w) * lo + w * hi
    # a side with no response (NaN latency) lends nothing; the other side's value stands in between
    lo_only = lo if w < 1 else np.full_like(lo, np.nan)
    hi_only = hi if w > 0 else np.full_like(hi, np.nan)
    return np.where(np.isnan(lo), hi_only, np.where(np.isnan(hi), lo_only, out))


def lookup_baseline(culture, electrodes, amplitudes) -> dict:
    """Figures of the model-free lookup prediction (:func:`lookup_prediction`) of the held-out conditions."""
    probs, lats = lookup_prediction(culture.session, culture.window, electrodes, amplitudes)
    return evoked_agreement(*_pairs(culture.truth, electrodes, amplitudes, probs, lats, culture.session.unit_ids))


def lookup_prediction(session, window, electrodes, amplitudes):
    """``[K, C]`` response probabilities and median latencies (s) of a model-free lookup: each channel's
    response to that electrode in ``session`` (by amplitude, linear in amplitude between the
    calibrated ones, clamped outside), and for an electrode never stimulated the mean over
    stimulated electrodes of the channel at the same offset from them (median for latencies)."""
    from organoid_sim import stats

    obs = stats.evoked_responses(session, window=window, by_amplitude=True)
    rec = session
    pos = {int(u): tuple(np.round(p, 1)) for u, p in zip(rec.unit_ids, rec.positions)}
    col_at = {v: i for i, v in enumerate(pos.values())}
    exy = {int(e): tuple(np.round(p, 1)) for e, p in zip(rec.electrodes.ids, rec.electrodes.positions)}
    table: dict[int, tuple] = {}
    for e in np.unique(obs.electrodes):
        rows = np.nonzero(obs.electrodes == e)[0]
        rows = rows[np.argsort(np.abs(obs.amplitudes[rows]))]
        table[int(e)] = (np.abs(obs.amplitudes[rows]), obs.response_probability[rows], obs.median_latency_s[rows])

    def at_electrode(e, a):
        xs, p, lat = table[e]
        return _interp(a, xs, p), _interp(a, xs, lat)

    probs, lats = [], []
    for e, a in zip(electrodes, np.abs(amplitudes)):
        e = int(e)
        if e in table:
            p, lat = at_electrode(e, a)
        else:                    # translate every calibrated electrode's response map onto e
            ps, ls = [], []
            for e2 in table:
                p2, l2 = at_electrode(e2, a)
                shift = np.subtract(exy[e2], exy[e])
                src = [col_at.get(tuple(np.round(np.add(xy, shift), 1))) for xy in pos.values()]
                ps.append([p2[s] if s is not None else np.nan for s in src])
                ls.append([l2[s] if s is not None else np.nan for s in src])
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)       # channels no offset reaches
                p, lat = np.nanmean(ps, 0), np.nanmedian(ls, 0)
            p = np.where(np.isnan(p), np.nanmean(p), p)
        probs.append(p), lats.append(lat)
    return np.array(probs), np.array(lats)


def attainable_r(split_half_r: float) -> float:
    """The highest response-probability r any prediction can reach against the whole truth, from the r
    between its two halves: the whole truth's reliability by the Spearman-Brown formula (twice the
    trials), ``rho = 2 r / (1 + r)``, and a perfect prediction of the expected responses correlates
    with it by ``sqrt(rho)``. NaN for r <= 0."""
    r = float(split_half_r)
    return float(np.sqrt(2 * r / (1 + r))) if r > 0 else float("nan")


def ceiling(culture, electrodes, amplitudes) -> dict:
    """The truth's split-half figures: one half against the other, averaged over both directions, and
    the r attainable against the whole truth (:func:`attainable_r`)."""
    a, b = culture.halves
    out = []
    for x, y in ((a, b), (b, a)):
        cols = np.arange(len(x.unit_ids))
        pred_p, pred_l = [], []
        ei = {int(v): i for i, v in enumerate(y.electrodes)}
        ai = {round(float(v), 6): i for i, v in enumerate(y.amplitudes_ua)}
        for e, amp in zip(electrodes, amplitudes):
            pred_p.append(y.response_probability[ei[int(e)], ai[round(abs(float(amp)), 6)], cols])
            pred_l.append(y.median_latency_s[ei[int(e)], ai[round(abs(float(amp)), 6)], cols])
        out.append(evoked_agreement(*_pairs(x, electrodes, amplitudes, np.array(pred_p), np.array(pred_l), x.unit_ids)))
    figures = {k: round(float(np.mean([o[k] for o in out])), 4) for k in (*KEYS, "probability_mean_abs_err")}
    return figures | {"n_trials_per_half": int(a.n_trials),
                      "attainable_r": round(attainable_r(figures["response_probability_r"]), 4)}


def electrode_agnostic_prediction(truth, positions, electrode_xy, electrodes, amplitudes):
    """``[K, C]`` probabilities and latencies (s) of each held-out condition predicted from the truth's
    *other* electrodes (:func:`organoid_sim.stimulation.reference.distance_channel_prediction`: by
    distance and channel alone): a prediction that knows everything of the held-out session except
    the electrode's own responses, and nothing specific to that electrode (how strongly it sets off
    the network). ``positions``: [C, 2] um of the truth's channels; ``electrode_xy``: {id: (x, y) um}."""
    e, a = np.meshgrid(truth.electrodes, truth.amplitudes_ua, indexing="ij")
    have = np.isfinite(truth.response_probability).any(-1)                     # [E, A] measured
    n_c = truth.response_probability.shape[-1]
    return distance_channel_prediction(e[have], a[have], truth.response_probability[have].reshape(-1, n_c),
                                       truth.median_latency_s[have].reshape(-1, n_c), positions, electrode_xy,
                                       electrodes, amplitudes)


def electrode_agnostic_reference(culture, electrodes, amplitudes) -> dict:
    """Figures of :func:`electrode_agnostic_prediction` against the truth: how far distance and channel
    alone carry, learnt from the truth itself; what lies above it needs each electrode's own effect."""
    pos, exy = recording_geometry(culture.session, culture.truth.unit_ids)
    p, lat = electrode_agnostic_prediction(culture.truth, pos, exy, electrodes, amplitudes)
    return evoked_agreement(*_pairs(culture.truth, electrodes, amplitudes, p, lat, culture.truth.unit_ids))


def additive_lookup_prediction(session, window, electrodes, amplitudes):
    """``[K, C]`` probabilities and latencies (s) of a second model-free baseline: the calibration
    session's own responses by distance and channel
    (:func:`organoid_sim.stimulation.reference.distance_channel_prediction`), linear in amplitude
    between the session's amplitudes (clamped outside)."""
    from organoid_sim import stats

    obs = stats.evoked_responses(session, window=window, by_amplitude=True)
    pos, exy = recording_geometry(session, obs.unit_ids)
    return distance_channel_prediction(obs.electrodes, obs.amplitudes, obs.response_probability,
                                       obs.median_latency_s, pos, exy, electrodes, amplitudes)


#: distance bands (um, electrode to channel) of the breakdown: own channel, neighbours, mid, far
DISTANCE_BANDS_UM = (0.0, 1.0, 260.0, 520.0, np.inf)


def breakdown(culture, electrodes, amplitudes, prob, lat) -> dict:
    """Where a prediction (``[K, C]`` probabilities and latencies s of the held-out conditions) agrees
    with the truth: by kind of condition (electrodes never stimulated, amplitudes never used on a
    calibrated electrode), by electrode-channel distance band (:data:`DISTANCE_BANDS_UM`) and by
    amplitude; each with r, latency error, mean |P error| and the mean signed P error (``bias``:
    > 0 predicts too many responses) and signed latency error (``latency_bias_ms``: > 0 too late)."""
    rec = culture.session
    p_t, l_t, p_p, l_p = _pairs(culture.truth, electrodes, amplitudes, prob, lat, rec.unit_ids)
    n_c = len(rec.unit_ids)
    exy = {int(e): p for e, p in zip(rec.electrodes.ids, rec.electrodes.positions)}
    d = np.concatenate([np.hypot(*(np.asarray(rec.positions) - exy[int(e)]).T) for e in electrodes])
    unseen_e = np.repeat(~np.isin(electrodes, culture.calibration_electrodes), n_c)
    amp = np.repeat(np.abs(np.asarray(amplitudes, float)), n_c)

    def figures(mask) -> dict:
        f = evoked_agreement(p_t[mask], l_t[mask], p_p[mask], l_p[mask])
        ok = mask & np.isfinite(p_t) & np.isfinite(p_p)
        rel = ok & (p_t >= 0.3) & np.isfinite(l_t) & np.isfinite(l_p)
        return {k: f[k] for k in (*KEYS, "probability_mean_abs_err", "n_pairs")} | {
            "bias": round(float(np.mean(p_p[ok] - p_t[ok])), 4) if ok.any() else None,
            "latency_bias_ms": round(float(np.median(l_p[rel] - l_t[rel]) * 1e3), 3) if rel.any() else None,
            "mean_truth_p": round(float(np.mean(p_t[ok])), 4) if ok.any() else None}

    out = {"unseen_electrodes": figures(unseen_e), "unseen_amplitudes": figures(~unseen_e)}
    lo = DISTANCE_BANDS_UM
    for a, b in zip(lo[:-1], lo[1:]):
        out[f"distance_{a:g}-{b:g}um"] = figures((d >= a) & (d < b))
    for x in np.unique(amp):
        out[f"amplitude_{x:g}uA"] = figures(amp == x)
    return out


def bars(calibrated: dict, prior: dict, lookup: dict, ceil: dict) -> dict:
    """The issue's bars: which the calibrated prediction meets."""
    lat_bar = max(5.0, 1.25 * (ceil["latency_median_abs_err_ms"] or 0.0))
    r, lat = calibrated["response_probability_r"], calibrated["latency_median_abs_err_ms"]
    pr, pl = prior["response_probability_r"], prior["latency_median_abs_err_ms"]
    return {"r_at_least_0.8": bool(r >= 0.8), "r_above_lookup": bool(r > lookup["response_probability_r"]),
            "latency_bar_ms": round(lat_bar, 3), "latency_within_bar": bool(lat is not None and lat <= lat_bar),
            "not_worse_than_prior": bool(r >= pr - 1e-9 and (lat is None or pl is None or lat <= pl + 1e-9))}


def fitted_model(culture, a):
    """The spontaneous fit (cached in ``benchmarks/out/<culture>/`` with ``--cache-model``: the fit is
    deterministic for its settings and seed, and calibration variants can then share it)."""
    import organoid_sim
    from organoid_sim.models import SpikingNetworkModel

    key = f"model_h{a.hidden}_dt{a.dt_ms:g}_e{a.epochs}_s{a.fit_s:g}_r{a.refine_steps}_seed{a.seed}"
    cache = ROOT / "benchmarks" / "out" / culture.name / key
    if a.cache_model and (cache / "model.json").exists():
        return organoid_sim.load_model(cache)
    spont = culture.spontaneous
    model = SpikingNetworkModel(n_hidden=a.hidden, dt_ms=a.dt_ms, seed=a.seed, max_epochs=a.epochs,
                                refine_steps=a.refine_steps, progress=not a.json, fit_seed=a.seed)
    train = spont.time_slice(spont.t_start, spont.t_start + a.fit_s)
    model.fit(train)
    if a.cache_model:
        model.save(cache)
    return model


def _responses(d: dict):
    """``EvokedResponses`` from its ``to_dict``."""
    from organoid_sim.stats import EvokedResponses

    return EvokedResponses(**{k: (tuple(v) if k == "window" else v if k == "amplitude_unit" else np.asarray(
        v, dtype=float if k in ("amplitudes", "response_probability", "median_latency_s", "mean_latency_s")
        else None)) for k, v in d.items()})


def package_digest(pkg: Path | None = None) -> str:
    """First 10 hex digits of the SHA-256 of every source file (path and text) of the package folder
    ``pkg`` (default: the ``organoid_sim`` imported): the cached predictions belong to the code that made
    them, so any change of the package starts new ones."""
    import hashlib

    import organoid_sim

    h = hashlib.sha256()
    pkg = Path(organoid_sim.__file__).parent if pkg is None else Path(pkg)
    for path in sorted(pkg.rglob("*.py")):
        h.update(str(path.relative_to(pkg)).encode())
        h.update(path.read_bytes())
    return h.hexdigest()[:10]


def model_predictions(culture, held, a, options):
    """Fit (or load) the model, predict ``held`` with the prior, calibrate, predict again. With
    ``--cache-model`` the three results are kept in ``benchmarks/out/<culture>/`` (deterministic for
    the settings, the seed and the package's code, :func:`package_digest`), so the truth can be
    compared later or again without re-running."""
    key = (f"pred_h{a.hidden}_dt{a.dt_ms:g}_e{a.epochs}_s{a.fit_s:g}_r{a.refine_steps}_seed{a.seed}_t{a.trials}"
           f"_p{a.predict_trials}_ev{a.evaluations}_{package_digest()}_"
           + "_".join(f"{k}{v}" for k, v in sorted(options.items())).replace(" ", ""))
    cache = ROOT / "benchmarks" / "out" / culture.name / f"{key}.json"
    if a.cache_model and cache.exists():
        d = json.loads(cache.read_text())
        return _responses(d["prior"]), d["calibration"], _responses(d["calibrated"]), d["fit_s"], d["stim_s"]
    window = tuple(culture.window)
    t0 = time.perf_counter()
    model = fitted_model(culture, a)
    t_fit = time.perf_counter() - t0
    t1 = time.perf_counter()
    # both predictions with one trial seed (common random numbers: they differ by the coupling alone),
    # other than the calibration's own
    prior_pred = predict_evoked_responses(model, held, n_trials=a.predict_trials, window=window, seed=a.seed + 1)
    result = calibrate(model, culture.session, n_trials=a.trials, window=window, max_evaluations=a.evaluations,
                       seed=a.seed, progress=not a.json, **options).to_dict()
    pred = predict_evoked_responses(model, held, n_trials=a.predict_trials, window=window, seed=a.seed + 1)
    t_stim = time.perf_counter() - t1
    if a.cache_model:
        from organoid_sim.atomic import atomic_write_text

        atomic_write_text(cache, json.dumps({"prior": prior_pred.to_dict(), "calibrated": pred.to_dict(),
                                             "calibration": result, "fit_s": t_fit, "stim_s": t_stim},
                                            default=float))
    return prior_pred, result, pred, t_fit, t_stim


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--culture", default="ours", choices=("ours", "second"), help="which ground truth")
    ap.add_argument("--samples", default=str(ROOT / "data_samples"), help="folder with ours' sample files")
    ap.add_argument("--culture-dir", default=None,
                    help="a ground truth of your own instead of --culture: a folder with culture.json, "
                         "spontaneous.h5, calibration.h5 and heldout.h5 (stim_cultures.load_folder)")
    ap.add_argument("--json", action="store_true", help="print a JSON object as the last line")
    # the fit's defaults are those SpikingNetworkModel.for_stimulation() advises
    ap.add_argument("--hidden", type=int, default=STIMULATION_FIT["n_hidden"], help="hidden neurons of the fitted model")
    ap.add_argument("--dt-ms", type=float, default=STIMULATION_FIT["dt_ms"], help="model time step (ms)")
    ap.add_argument("--epochs", type=int, default=30, help="teacher-forced epochs of the fit")
    ap.add_argument("--fit-s", type=float, default=120.0, help="seconds of the spontaneous recording to fit on")
    ap.add_argument("--refine-steps", type=int, default=STIMULATION_FIT["refine_steps"],
                    help="free-running refinement steps of the fit")
    ap.add_argument("--trials", type=int, default=CALIBRATE_DEFAULTS["n_trials"],
                    help="model trials per condition in the calibration (default: calibrate's, %(default)s)")
    ap.add_argument("--predict-trials", type=int, default=PREDICT_TRIALS,
                    help="model trials per held-out condition in the predictions (default: %(default)s)")
    ap.add_argument("--evaluations", type=int, default=CALIBRATE_DEFAULTS["max_evaluations"],
                    help="calibration budget, model evaluations (default: calibrate's, %(default)s)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (small per-step products: 1 is fastest)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--coarse", type=float, nargs="*", default=None,
                    help="calibrate's coarse_factors (default: calibrate's own default)")
    ap.add_argument("--check-fraction", type=float, default=None, help="calibrate's check_fraction (default: its own)")
    ap.add_argument("--no-pair-gains", action="store_true",
                    help="calibrate without electrode x unit pair gains (the calibration before they existed)")
    ap.add_argument("--joint-timing", action="store_true",
                    help="search the timing parameters together with the response law (calibrate's "
                         "separate_timing=False, the calibration before the timing stage existed)")
    ap.add_argument("--predict-only", action="store_true",
                    help="fit, calibrate and predict (cached with --cache-model), without the truth")
    ap.add_argument("--cache-model", action="store_true", help="keep/reuse the spontaneous fit in benchmarks/out/")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    culture = load_culture(a.culture, Path(a.samples), progress=not a.json, with_truth=not a.predict_only,
                           folder=a.culture_dir)
    window = tuple(culture.window)
    held = held_out_events(culture)
    options = {k: v for k, v in (("coarse_factors", a.coarse), ("check_fraction", a.check_fraction),
                                 ("pair_gains", False if a.no_pair_gains else None),
                                 ("separate_timing", False if a.joint_timing else None)) if v is not None}
    prior_pred, result, pred, t_fit, t_stim = model_predictions(culture, held, a, options)
    if a.predict_only:
        print(f"{culture.name}: predictions of {len(held)} held-out conditions cached; calibration {result}")
        return {}
    prior, calibrated = compare(culture.truth, prior_pred), compare(culture.truth, pred)
    e, amp = held.electrode, np.abs(held.amplitude)
    look, ceil = lookup_baseline(culture, e, amp), ceiling(culture, e, amp)
    agnostic = electrode_agnostic_reference(culture, e, amp)
    add_p, add_l = additive_lookup_prediction(culture.session, culture.window, e, amp)
    additive = evoked_agreement(*_pairs(culture.truth, e, amp, add_p, add_l, culture.session.unit_ids))
    look_p, look_l = lookup_prediction(culture.session, culture.window, e, amp)
    where = {name: breakdown(culture, r.electrodes, r.amplitudes, r.response_probability, r.median_latency_s)
             for name, r in (("prior", prior_pred), ("calibrated", pred))}
    where["lookup"] = breakdown(culture, e, amp, look_p, look_l)
    where["additive_lookup"] = breakdown(culture, e, amp, add_p, add_l)

    out = {**{k: calibrated[k] for k in KEYS}, "prior_only": {k: prior[k] for k in KEYS},
           "lookup": {k: look[k] for k in KEYS}, "ceiling": ceil, "electrode_agnostic": {k: agnostic[k] for k in KEYS},
           "additive_lookup": {k: additive[k] for k in KEYS}, "bars": bars(calibrated, prior, look, ceil),
           "culture": culture.name, "culture_description": culture.description,
           "calibrated_details": calibrated, "prior_details": prior, "lookup_details": look,
           "coupling_prior": result["before"], "coupling_calibrated": result["after"],
           "calibration_loss": [round(result["loss_before"], 5), round(result["loss_after"], 5)],
           "targets": {"response_probability_r": ">= 0.8 and above the lookup",
                       "latency_median_abs_err_ms": "<= 5, or <= 1.25 x the split-half ceiling where larger"},
           "breakdown": where, "calibration": result, "n_held_out_conditions": int(len(held)), "window_s": list(window),
           "fit_time_s": round(t_fit, 1), "calibrate_and_predict_time_s": round(t_stim, 1), "threads": a.threads,
           "model": {"fit_window_s": a.fit_s, "n_hidden": a.hidden, "dt_ms": a.dt_ms, "epochs": a.epochs,
                     "refine_steps": a.refine_steps, "trials": a.trials, "predict_trials": a.predict_trials,
                     "evaluations": a.evaluations,
                     "calibrate_options": options}}
    print(f"{culture.name}: {culture.description}")
    print(f"held-out conditions: {len(held)} (electrodes never stimulated + amplitudes never used), "
          f"window {window[0] * 1e3:g}-{window[1] * 1e3:g} ms")
    for name, d in (("distance-only prior", prior), ("calibrated", calibrated), ("model-free lookup", look),
                    ("additive lookup", additive),
                    ("split-half ceiling", ceil)):
        print(f"{name:20s} response-probability r = {d['response_probability_r']:.3f}   "
              f"median |latency error| = {d['latency_median_abs_err_ms']} ms")
    print(f"{'':20s} r attainable against the whole truth (from its halves): {ceil['attainable_r']:.3f}")
    print(f"{'':20s} r of the truth's other electrodes by distance and channel alone: "
          f"{agnostic['response_probability_r']:.3f} (latency {agnostic['latency_median_abs_err_ms']} ms)")
    print(f"{'breakdown (r / latency ms / bias)':36s}" + "".join(f"{n:>26s}" for n in where))
    for part in where["prior"]:
        print(f"  {part:34s}" + "".join(
            f"{str(where[n][part]['response_probability_r']):>8s} {str(where[n][part]['latency_median_abs_err_ms']):>8s}"
            f" {str(where[n][part]['bias']):>8s}" for n in where))
    print(f"bars: {out['bars']}")
    print(f"calibration: {result}")
    print(f"fit {t_fit:.1f} s, calibration + predictions {t_stim:.1f} s")
    if a.json:
        print(json.dumps(out, default=float))
    return out


if __name__ == "__main__":
    main()
