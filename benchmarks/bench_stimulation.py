"""Ground-truth stimulation benchmark: does a fitted model predict evoked responses it never saw?

1. Fit a ``SpikingNetworkModel`` on the virtual organoid's spontaneous recording
   (``data_samples/spontaneous.nwb``).
2. Predict, with the distance-only prior coupling, the responses to every held-out condition:
   the electrodes the calibration session never stimulated (all amplitudes) and the amplitudes
   it never used (all electrodes).
3. Calibrate the coupling on ``data_samples/stim_session.nwb`` (half of the electrodes, two
   amplitudes) and predict the held-out conditions again.
4. Compare both with the organoid's true responses (``data_samples/true_responses.json``,
   measured on the ground truth with many trials, the same window, both through
   ``organoid_sim.stats.evoked_responses``): Pearson r of the per-channel response probability over
   held-out condition x channel pairs (target >= 0.8), and the median absolute error of the
   median first-spike latency over pairs that respond reliably in the truth (P >= 0.3) and at
   all in the model (target <= 5 ms).

``--json`` prints a JSON object as the last line: ``response_probability_r``,
``latency_median_abs_err_ms``, ``prior_only`` (the same two keys) and details.
Run: ``python benchmarks/bench_stimulation.py [--json] [--samples data_samples]``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import organoid_sim  # noqa: E402
from organoid_sim.events import StimEvents  # noqa: E402
from organoid_sim.stimulation.calibrate import calibrate, predict_evoked_responses  # noqa: E402
from organoid_sim.synthetic import load_true_responses, write_data_samples  # noqa: E402

RELIABLE_P = 0.3


def held_out_events(truth, calib_electrodes, calib_amplitudes) -> StimEvents:
    """One pulse per held-out (electrode, amplitude) of the truth table (cathodic-first, uA)."""
    e, a = np.meshgrid(truth.electrodes, truth.amplitudes_ua, indexing="ij")
    e, a = e.ravel(), a.ravel()
    keep = ~np.isin(e, calib_electrodes) | ~np.isin(np.round(a, 6), np.round(calib_amplitudes, 6))
    return StimEvents.from_columns(np.zeros(keep.sum()), e[keep], -a[keep], truth.phase_us, 2, sort=False)


def compare(truth, predicted) -> dict:
    """Response-probability r and latency error of ``predicted`` against ``truth`` on its conditions."""
    ei = {int(x): i for i, x in enumerate(truth.electrodes)}
    ai = {round(float(x), 6): i for i, x in enumerate(truth.amplitudes_ua)}
    cols = [list(truth.unit_ids).index(u) for u in predicted.unit_ids]
    p_true, p_pred, l_true, l_pred = [], [], [], []
    for g, (e, a) in enumerate(zip(predicted.electrodes, predicted.amplitudes)):
        i, j = ei[int(e)], ai[round(abs(float(a)), 6)]
        p_true.append(truth.response_probability[i, j, cols])
        l_true.append(truth.median_latency_s[i, j, cols])
        p_pred.append(predicted.response_probability[g])
        l_pred.append(predicted.median_latency_s[g])
    p_true, p_pred = np.concatenate(p_true), np.concatenate(p_pred)
    l_true, l_pred = np.concatenate(l_true), np.concatenate(l_pred)
    r = float(np.corrcoef(p_true, p_pred)[0, 1]) if p_pred.std() > 0 else float("nan")
    reliable = (p_true >= RELIABLE_P) & np.isfinite(l_true)
    both = reliable & np.isfinite(l_pred)
    err = np.abs(l_pred[both] - l_true[both]) * 1e3
    return {"response_probability_r": round(r, 4),
            "latency_median_abs_err_ms": round(float(np.median(err)), 3) if err.size else None,
            "probability_mean_abs_err": round(float(np.mean(np.abs(p_pred - p_true))), 4),
            "n_pairs": int(len(p_true)), "n_latency_pairs": int(both.sum()),
            "latency_coverage": round(float(both.sum() / max(reliable.sum(), 1)), 3)}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--samples", default=str(ROOT / "data_samples"), help="folder with the sample files")
    ap.add_argument("--json", action="store_true", help="print a JSON object as the last line")
    ap.add_argument("--hidden", type=int, default=0, help="hidden neurons of the fitted model")
    ap.add_argument("--dt-ms", type=float, default=1.0, help="model time step (ms)")
    ap.add_argument("--epochs", type=int, default=30, help="teacher-forced epochs of the fit")
    ap.add_argument("--fit-s", type=float, default=120.0, help="seconds of the spontaneous recording to fit on")
    ap.add_argument("--refine-steps", type=int, default=0, help="free-running refinement steps of the fit")
    ap.add_argument("--trials", type=int, default=32, help="model trials per condition")
    ap.add_argument("--evaluations", type=int, default=120, help="calibration budget (model evaluations)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (small per-step products: 1 is fastest)")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    samples = Path(a.samples)
    if not (samples / "true_responses.json").exists():
        print(f"{samples} has no sample files: generating them (a few minutes)", file=sys.stderr)
        write_data_samples(samples, seed=0, progress=not a.json)
    t0 = time.perf_counter()
    spont = organoid_sim.load(samples / "spontaneous.nwb")
    session = organoid_sim.load(samples / "stim_session.nwb")
    meta = json.loads((samples / "true_responses.json").read_text())
    truth = load_true_responses(samples / "true_responses.json")
    window = tuple(truth.window)

    from organoid_sim.models import SpikingNetworkModel

    model = SpikingNetworkModel(n_hidden=a.hidden, dt_ms=a.dt_ms, seed=a.seed, max_epochs=a.epochs,
                                refine_steps=a.refine_steps, progress=not a.json, fit_seed=a.seed)
    train = spont.time_slice(spont.t_start, spont.t_start + a.fit_s)
    model.fit(train)
    t_fit = time.perf_counter() - t0
    held = held_out_events(truth, meta["calibration_electrodes"], meta["calibration_amplitudes_uA"])

    t1 = time.perf_counter()
    prior_pred = predict_evoked_responses(model, held, n_trials=a.trials, window=window, seed=a.seed)
    prior = compare(truth, prior_pred)
    result = calibrate(model, session, n_trials=a.trials, window=window, max_evaluations=a.evaluations,
                       seed=a.seed, progress=not a.json)
    pred = predict_evoked_responses(model, held, n_trials=a.trials, window=window, seed=a.seed + 1)
    calibrated = compare(truth, pred)
    t_stim = time.perf_counter() - t1

    out = {**{k: calibrated[k] for k in ("response_probability_r", "latency_median_abs_err_ms")},
           "prior_only": {k: prior[k] for k in ("response_probability_r", "latency_median_abs_err_ms")},
           "calibrated_details": calibrated, "prior_details": prior,
           "coupling_prior": result.before, "coupling_calibrated": result.after,
           "calibration_loss": [round(result.loss_before, 5), round(result.loss_after, 5)],
           "n_held_out_conditions": int(len(held)), "window_s": list(window),
           "targets": {"response_probability_r": ">= 0.8", "latency_median_abs_err_ms": "<= 5"},
           "fit_time_s": round(t_fit, 1), "calibrate_and_predict_time_s": round(t_stim, 1),
           "threads": a.threads,
           "model": {"fit_window_s": a.fit_s, "n_hidden": a.hidden, "dt_ms": a.dt_ms, "epochs": a.epochs,
                     "refine_steps": a.refine_steps}}
    print(f"held-out conditions: {len(held)} (electrodes never stimulated + amplitudes never used)")
    for name, d in (("distance-only prior", prior), ("calibrated", calibrated)):
        print(f"{name:20s} response-probability r = {d['response_probability_r']:.3f}   "
              f"median |latency error| = {d['latency_median_abs_err_ms']} ms "
              f"({d['n_latency_pairs']} reliable pairs, coverage {d['latency_coverage']:.2f})")
    print(f"coupling after calibration: {result.after}")
    print(f"fit {t_fit:.1f} s, calibration + predictions {t_stim:.1f} s")
    if a.json:
        print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()
