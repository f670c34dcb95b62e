"""The whole organoid-sim story on the bundled sample, in a few minutes on a laptop CPU (``make demo``).

1. load the virtual organoid's spontaneous recording and calibration session (``data_samples/``);
2. describe it with the standard MEA statistics;
3. fit a SpikingNetworkModel to the first part, compare a free-running simulation with the held-out part;
4. calibrate the model's stimulation coupling on the calibration session (half of the electrodes);
5. probe electrodes the calibration never stimulated, at an amplitude it never used, and compare the
   predicted responses with the organoid's true ones;
6. write everything to an HTML report (figures + tables) in ``demo_out/``; print the headline figures
   (checks passed, probe r and latency error) and every file written.

``--quick`` shortens every stage (used by the tests); ``--out DIR`` changes the output folder.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402

import organoid_sim  # noqa: E402
from organoid_sim import stats  # noqa: E402
from organoid_sim.atomic import atomic_write_text  # noqa: E402
from organoid_sim.report import Report  # noqa: E402
from organoid_sim.stimulation import CL1, concat_trials, probe_electrodes, run_trials  # noqa: E402

PROBE_AMPLITUDE_UA = 2.0   # not one of the calibration amplitudes
PHASE_US = 200.0


def main(argv: list[str] | None = None) -> int:
    """Run the demo; returns the exit status."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="short version (about a minute; used by the tests)")
    ap.add_argument("--out", default=str(_common.ROOT / "demo_out"), help="output folder (default demo_out/)")
    ap.add_argument("--samples", default=None, help="sample folder (default data_samples/)")
    ap.add_argument("--seed", type=int, default=0,
                    help="seed of the fit, the simulations and the probe (default 0)")
    ap.add_argument("--no-progress", action="store_true", help="no progress bars")
    args = ap.parse_args(argv)
    out, quick, progress, seed = _common.make_out(args.out), args.quick, not args.no_progress, args.seed
    timings: dict[str, float] = {}
    rep = Report("organoid-sim demo: virtual organoid" + (" (quick)" if quick else ""))

    # 1-2. load and describe -----------------------------------------------------------------
    t = time.perf_counter()
    sample = _common.load_sample(args.samples)
    rec = sample.spontaneous
    if quick:
        rec = rec.time_slice(rec.t_start, rec.t_start + min(rec.duration, 120.0))
    desc = stats.describe(rec)
    timings["load + describe"] = time.perf_counter() - t
    print(f"[1/5] loaded {sample.folder / 'spontaneous.nwb'}: {rec!r}")
    _section_recording(rep, rec, desc, sample, out / "figures")

    # 3. fit and compare ---------------------------------------------------------------------
    train, held = rec.split(0.75)
    print(f"[2/5] fitting a SpikingNetworkModel on the first {train.duration:.0f} s ({'quick: at most 60 s' if quick else 'full settings'}) ...")
    model, timings["fit"] = _common.fit_model(train, quick=quick, seed=seed, progress=progress)
    model.save(out / "model")
    t = time.perf_counter()
    sim = model.simulate(max(4 * held.duration, 60.0) if not quick else 2 * held.duration, seed=seed + 1,
                         t_start=held.t_start)
    cmp = stats.compare(held, sim)
    timings["simulate + compare"] = time.perf_counter() - t
    print(f"[3/5] model vs held-out recording: {cmp.verdict}")
    _section_model(rep, model, held, sim, cmp, out / "figures")

    # 4. calibrate the stimulation coupling ---------------------------------------------------
    calib_electrodes = np.array([], np.int64)
    if sample.session is not None:
        from organoid_sim.stimulation import calibrate
        from organoid_sim.stimulation.calibrate import check_table

        t = time.perf_counter()
        # the window of the truth the probe is compared with (the direct responses come 2-5 ms after the pulse)
        window = tuple(sample.truth.window) if sample.truth is not None else (0.002, 0.100)
        result = calibrate(model, sample.session, n_trials=4 if quick else 12, window=window,
                           max_evaluations=12 if quick else 60, seed=seed, progress=progress)
        timings["calibrate"] = time.perf_counter() - t
        calib_electrodes = np.unique(sample.session.stim.electrode)
        model.save(out / "model")
        print(f"[4/5] calibrated the coupling on {len(sample.session.stim)} pulses: {_loss_line(result)}")
        print(check_table(result.check))
        _section_calibration(rep, result, sample.session)
    else:
        print("[4/5] no calibration session in the sample: the coupling keeps its physical prior")
        rep.add_heading("Stimulation coupling").add_text(
            "No calibration session was found; the coupling keeps its distance/charge prior.", note=True)

    # 5. probe electrodes never used in calibration --------------------------------------------
    t = time.perf_counter()
    figures = _probe(rep, model, rec, calib_electrodes, sample.truth, out, quick, seed, progress)
    timings["probe"] = time.perf_counter() - t
    rep.add_heading("Run time (s, this machine)")
    rep.add_table({k: round(v, 1) for k, v in timings.items()})
    path = rep.save(out / "report.html")
    passed = sum(ok for _, ok in cmp.checks.values())
    headline = {"checks_passed": passed, "checks": len(cmp.checks), "verdict": cmp.verdict, **figures}
    summary_path = atomic_write_text(out / "summary.json", json.dumps({"timings_s": timings, **headline}, indent=1))
    print(f"[5/5] report written: {path}")
    _print_headline(headline)
    _print_outputs(out, path, summary_path)
    return 0


def _print_headline(h: dict) -> None:
    """The figures a reader wants first: the model's checks and the probe's agreement with the truth."""
    print(f"model vs held-out recording: {h['checks_passed']}/{h['checks']} checks pass")
    if "response_probability_r" in h:
        print(f"probe of {len(h['probe_electrodes'])} electrodes never used in calibration: response-probability "
              f"r = {h['response_probability_r']:.2f}, median latency error "
              f"{h['latency_median_abs_err_ms']:.1f} ms ({h['n_trials']} trials)")


def _print_outputs(out: Path, report: Path, summary: Path) -> None:
    """Every file the demo wrote, one per line."""
    listed = {report.resolve(), summary.resolve()}
    print("outputs:")
    print(f"  {report}  (HTML report: figures and tables)")
    print(f"  {summary.resolve()}  (headline figures and timings, JSON)")
    for p in sorted(out.resolve().rglob("*")):
        if p.is_file() and p not in listed:
            print(f"  {p}")


def _section_recording(rep: Report, rec, desc, sample, figs: Path) -> None:
    from organoid_sim import plot

    rep.add_heading("1. The recording")
    rep.add_text(f"{rec!r}. Source: {sample.folder}. The virtual organoid (organoid_sim.synthetic) is a "
                 "bursting network of adaptive neurons under a CL1-like 8x8 electrode grid; each channel "
                 "is the multi-unit activity near one electrode.")
    rep.add_pre(str(desc))
    rep.add_figure(plot.raster(rec, t1=min(rec.t_stop, rec.t_start + 60.0)),
                   "Raster with detected network bursts (shaded) and population rate", png_path=figs / "raster.png")


def _section_model(rep: Report, model, held, sim, cmp, figs: Path) -> None:
    from organoid_sim import plot

    rep.add_heading("2. Fitted model vs held-out recording")
    rep.add_text(f"SpikingNetworkModel, {model.n_recorded} recorded + {model.n_hidden} hidden neurons, "
                 f"dt = {model.dt_ms:g} ms. Free-running simulation of {sim.duration:.0f} s compared with the "
                 f"last {held.duration:.0f} s of the recording, which the fit never saw.")
    rep.add_pre(str(cmp))  # every statistic, its distance, the notes and the verdict
    rep.add_figure(plot.comparison(cmp, held, sim, labels=("recording (held out)", "model")),
                   "Recording (left) vs model (right)", png_path=figs / "comparison.png")


def _loss_line(result) -> str:
    """The calibration's loss, prior -> kept coupling, and the calibrated one's when the prior was kept."""
    return (f"loss {result.loss_before:.4f} -> {result.loss_after:.4f}"
            + (f" (the prior kept; the calibrated coupling's {result.loss_calibrated:.4f})" if result.kept_prior
               else ""))


def _section_calibration(rep: Report, result, session) -> None:
    from organoid_sim.stimulation.calibrate import check_table

    rep.add_heading("3. Calibrating the stimulation coupling")
    rep.add_text(f"Calibration session: {len(session.stim)} pulses on {len(np.unique(session.stim.electrode))} "
                 "electrodes (half of the array). The coupling's global parameters were fitted to the recorded "
                 "response probabilities and latencies; the network weights stay fixed.")
    # result.after is the coupling the model keeps: the prior itself when the check kept the prior
    kept = "kept (the prior)" if result.kept_prior else "calibrated"
    rows = [{"parameter": k, "prior": result.before[k], kept: result.after[k]} for k in result.before]
    rep.add_table(rows, caption=f"{_loss_line(result)} ({result.n_evaluations} evaluations)")
    rep.add_text("The calibration's own check: a quarter of the stimulated electrodes were held out of the fit; "
                 "the prior and the calibrated coupling both predict their pulses, and the calibration is kept "
                 "only when it predicts them no worse (saved as the model's provenance[\"evoked_check\"]).")
    rep.add_pre(check_table(result.check))


def _probe(rep: Report, model, rec, calib_electrodes, truth, out: Path, quick: bool, seed: int,
           progress: bool) -> dict:
    from organoid_sim import plot

    candidates = np.setdiff1d(model.electrodes.ids, calib_electrodes)
    if truth is not None:
        candidates = np.intersect1d(candidates, truth.electrodes)
    chosen = candidates[:: max(1, len(candidates) // (4 if quick else 8))][: 4 if quick else 8]
    protocol = CL1.assign(probe_electrodes(chosen, amplitude=PROBE_AMPLITUDE_UA, phase_us=PHASE_US, n_repeats=1,
                                           interval_s=0.25, seed=seed, name="probe held-out electrodes"))
    protocol.save(out / "probe.yaml")
    n_trials = 10 if quick else 40
    print(f"[5/5] probing {len(chosen)} electrodes x {n_trials} trials at {PROBE_AMPLITUDE_UA} uA ...")
    evoked = concat_trials(run_trials(model, protocol, n_trials, seed=seed + 2, progress=progress))
    organoid_sim.save(evoked, out / "evoked.nwb")
    window = tuple(truth.window) if truth is not None else (0.002, 0.100)
    pred = stats.evoked_responses(evoked, window=window)
    rep.add_heading("4. Virtual stimulation: probing electrodes the calibration never used")
    rep.add_text(f"The {protocol} (saved as probe.yaml, valid on the CL1 profile), {n_trials} trials, "
                 f"biphasic {PROBE_AMPLITUDE_UA} uA x {PHASE_US:g} us per phase. Evoked recording: evoked.nwb.")
    p = stats.psth(evoked, evoked.stim.time, window=(-0.02, 0.1), bin_ms=2.0)
    rep.add_figure(plot.psth(p, window=window), "PSTH of the model's responses to the probe pulses",
                   png_path=out / "figures" / "probe_psth.png")
    figures = {"probe_electrodes": chosen.tolist(), "n_trials": n_trials}
    if truth is not None:
        figures.update(_against_truth(rep, pred, truth, model.electrodes, out / "figures"))
    return figures


def _response_maps(pred, truth, a: int, electrodes):
    """Model (top row) and true (bottom row) response probability of every channel, on the array."""
    from matplotlib.figure import Figure

    n = len(pred.electrodes)
    ncol = min(n, 4)  # at most four maps a row, so that titles stay legible in the report
    nrow = 2 * int(np.ceil(n / ncol))
    fig = Figure(figsize=(2.9 * ncol + 1, 2.7 * nrow), layout="constrained")
    axes = fig.subplots(nrow, ncol, squeeze=False)
    for g in range(n, (nrow // 2) * ncol):  # empty places of the last row pair
        axes[2 * (g // ncol), g % ncol].set_axis_off()
        axes[2 * (g // ncol) + 1, g % ncol].set_axis_off()
    xy = electrodes.position_of(np.asarray(pred.unit_ids, np.int64))
    im = None
    for g, e in enumerate(pred.electrodes):
        row = int(np.flatnonzero(truth.electrodes == e)[0])
        cols = [int(np.flatnonzero(truth.unit_ids == u)[0]) for u in pred.unit_ids]
        r0, c0 = 2 * (g // ncol), g % ncol
        for ax, p, label in ((axes[r0, c0], pred.response_probability[g], "model"),
                             (axes[r0 + 1, c0], truth.response_probability[row, a, cols], "truth")):
            im = ax.scatter(xy[:, 0], xy[:, 1], c=p, vmin=0, vmax=1, s=60, cmap="viridis", marker="s")
            ax.plot(*electrodes.position_of([e])[0], marker="*", mfc="none", mec="red", mew=1.5, ms=16)
            ax.set_aspect("equal")
            ax.invert_yaxis()
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(f"{label}: stimulated electrode {e}", fontsize=10)
    fig.colorbar(im, ax=axes, label="P(response)", shrink=0.8)
    return fig


def _against_truth(rep: Report, pred, truth, electrodes, figs: Path) -> dict:
    from matplotlib.figure import Figure

    a = int(np.argmin(np.abs(truth.amplitudes_ua - PROBE_AMPLITUDE_UA)))
    unit_pos = {u: i for i, u in enumerate(truth.unit_ids.tolist())}
    cols = [unit_pos[u] for u in pred.unit_ids.tolist()]
    p_pred, p_true, l_pred, l_true = [], [], [], []
    for g, e in enumerate(pred.electrodes):
        row = int(np.flatnonzero(truth.electrodes == e)[0])
        p_pred.append(pred.response_probability[g])
        p_true.append(truth.response_probability[row, a, cols])
        l_pred.append(pred.median_latency_s[g])
        l_true.append(truth.median_latency_s[row, a, cols])
    p_pred, p_true = np.concatenate(p_pred), np.concatenate(p_true)
    l_pred, l_true = np.concatenate(l_pred), np.concatenate(l_true)
    r = float(np.corrcoef(p_pred, p_true)[0, 1]) if np.std(p_pred) > 0 and np.std(p_true) > 0 else float("nan")
    both = np.isfinite(l_pred) & np.isfinite(l_true)
    lat_err = float(np.median(np.abs(l_pred[both] - l_true[both])) * 1e3) if both.any() else float("nan")
    fig = Figure(figsize=(9, 4), layout="constrained")
    ax1, ax2 = fig.subplots(1, 2)
    ax1.scatter(p_true, p_pred, s=10, alpha=0.6)
    ax1.plot([0, 1], [0, 1], color="0.5", lw=1)
    ax1.set_xlabel("true response probability")
    ax1.set_ylabel("model response probability")
    ax1.set_title(f"per electrode x channel, r = {r:.2f}")
    ax2.scatter(l_true[both] * 1e3, l_pred[both] * 1e3, s=10, alpha=0.6, color="tab:orange")
    lim = [0, float(truth.window[1] * 1e3)]
    ax2.plot(lim, lim, color="0.5", lw=1)
    ax2.set_xlabel("true median first-spike latency (ms)")
    ax2.set_ylabel("model median latency (ms)")
    lat_r = (float(np.corrcoef(l_true[both], l_pred[both])[0, 1])
             if both.sum() > 2 and np.std(l_true[both]) > 0 and np.std(l_pred[both]) > 0 else float("nan"))
    ax2.set_title(f"r = {lat_r:.2f}, median |error| = {lat_err:.1f} ms ({int(both.sum())} pairs)")
    rep.add_figure(fig, "Predicted vs true evoked responses on electrodes and amplitude never used in calibration",
                   png_path=figs / "probe_vs_truth.png")
    rep.add_figure(_response_maps(pred, truth, a, electrodes), "Response probability on the array for each probed "
                   "electrode (star): model (top) vs ground truth (bottom)", png_path=figs / "probe_maps.png")
    figures = {"response_probability_r": r, "latency_median_abs_err_ms": lat_err, "latency_r": lat_r,
               "n_pairs": int(len(p_pred)), "n_latency_pairs": int(both.sum())}
    rep.add_table(figures, caption="Prediction vs ground truth (held-out electrodes, unseen amplitude)")
    return figures


if __name__ == "__main__":
    sys.exit(main())
