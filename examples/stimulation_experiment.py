"""A virtual stimulation experiment: an amplitude sweep on a fitted model (input-output curves).

What a user would write before spending wetware: a CL1-legal protocol (4 electrodes x 6 currents,
biphasic 200 us per phase, random order, one pulse every 0.4 s), run on the fitted model for several
trials, analysed with the package's evoked-response statistics:

* ``amplitude_sweep.yaml``: the protocol (load it back with ``Protocol.load``, or run it from the
  shell with ``organoid-sim stimulate MODEL_DIR --protocol amplitude_sweep.yaml --out evoked.nwb``);
* ``evoked.nwb``: the simulated session with every pulse in its stimulation table;
* ``curves.json``: the input-output curves below, per electrode;
* ``stim_io_curve.png``: response probability and first-spike latency of the channel under each
  stimulated electrode vs the charge per phase; ``stim_psth.png``: PSTH at the largest amplitude.

Usage: ``python examples/stimulation_experiment.py [--model MODEL_DIR] [--out DIR] [--quick]``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402

import organoid_sim  # noqa: E402
from organoid_sim import stats  # noqa: E402
from organoid_sim.stimulation import CL1, amplitude_sweep, concat_trials, run_trials  # noqa: E402

AMPLITUDES_UA = (0.5, 1.0, 1.5, 2.0, 2.5, 3.0)
PHASE_US = 200.0
WINDOW = (0.002, 0.100)  # s after the pulse in which first spikes count


def run(model, out: Path, *, n_trials: int, seed: int = 0, progress: bool = True) -> dict:
    """Design, validate, save and run the sweep; returns the input-output curves (JSON-ready)."""
    recorded = np.unique(model.layout["electrode_ids"])
    electrodes = recorded[np.linspace(0, len(recorded) - 1, 4).round().astype(int)]
    protocol = amplitude_sweep(electrodes, AMPLITUDES_UA, phase_us=PHASE_US, n_repeats=1, interval_s=0.4,
                               seed=seed, name="amplitude sweep")
    CL1.validate(protocol)                       # refuses anything the real rig could not deliver
    protocol.save(out / "amplitude_sweep.yaml")
    evoked = concat_trials(run_trials(model, protocol, n_trials, seed=seed, progress=progress))
    organoid_sim.save(evoked, out / "evoked.nwb")
    resp = stats.evoked_responses(evoked, window=WINDOW, by_amplitude=True)
    curves = {}
    for e in electrodes:
        col = int(np.flatnonzero(evoked.electrode_ids == e)[0])  # the channel under the electrode
        rows = np.flatnonzero(resp.electrodes == e)
        order = rows[np.argsort(np.abs(resp.amplitudes[rows]))]
        curves[int(e)] = {"amplitude_uA": np.abs(resp.amplitudes[order]).tolist(),
                          "charge_nC": (np.abs(resp.amplitudes[order]) * PHASE_US * 1e-3).tolist(),
                          "response_probability": resp.response_probability[order, col].tolist(),
                          "median_latency_ms": (resp.median_latency_s[order, col] * 1e3).tolist()}
    _figures(evoked, curves, out)
    return {"electrodes": electrodes.tolist(), "n_trials": n_trials, "n_pulses": len(evoked.stim), "curves": curves}


def _figures(evoked, curves: dict, out: Path) -> None:
    from matplotlib.figure import Figure

    from organoid_sim import plot

    fig = Figure(figsize=(9, 3.8), layout="constrained")
    ax1, ax2 = fig.subplots(1, 2)
    for e, c in curves.items():
        ax1.plot(c["charge_nC"], c["response_probability"], "o-", label=f"electrode {e}")
        ax2.plot(c["charge_nC"], c["median_latency_ms"], "o-")
    ax1.set_xlabel("charge per phase (nC)")
    ax1.set_ylabel("P(response) of the channel under it")
    ax1.set_ylim(-0.02, 1.02)
    ax1.legend(fontsize=8)
    ax2.set_xlabel("charge per phase (nC)")
    ax2.set_ylabel("median first-spike latency (ms)")
    fig.suptitle(f"Amplitude sweep on the fitted model ({WINDOW[0] * 1e3:g}-{WINDOW[1] * 1e3:g} ms window)")
    plot.save(fig, out / "stim_io_curve.png")
    top = evoked.stim.take(np.abs(evoked.stim.amplitude) == max(AMPLITUDES_UA))
    p = stats.psth(evoked, top.time, window=(-0.02, 0.1), bin_ms=2.0)
    plot.save(plot.psth(p, window=WINDOW, title=f"PSTH, {max(AMPLITUDES_UA):g} uA pulses ({p.n_events} pulses)"),
              out / "stim_psth.png")


def main(argv: list[str] | None = None) -> int:
    """Command line entry point."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None, help="model folder (default: fit one on the bundled sample)")
    ap.add_argument("--out", default=str(_common.ROOT / "demo_out" / "amplitude_sweep"),
                    help="output folder (default demo_out/amplitude_sweep/)")
    ap.add_argument("--quick", action="store_true", help="few trials (tests)")
    ap.add_argument("--seed", type=int, default=0,
                    help="seed of the fit, the protocol's order and the trials (default 0)")
    ap.add_argument("--no-progress", action="store_true", help="no progress bars")
    args = ap.parse_args(argv)
    out = _common.make_out(args.out)
    model = _common.get_model(args.model, quick=args.quick, seed=args.seed, progress=not args.no_progress)
    result = run(model, out, n_trials=5 if args.quick else 30, seed=args.seed, progress=not args.no_progress)
    (out / "curves.json").write_text(json.dumps(result, indent=1))
    for e, c in result["curves"].items():
        probs = ", ".join(f"{a:g} uA: {p:.2f}" for a, p in zip(c["amplitude_uA"], c["response_probability"]))
        print(f"electrode {e}: P(response) {probs}")
    print(f"wrote {out / 'amplitude_sweep.yaml'}, {out / 'evoked.nwb'}, {out / 'curves.json'}, "
          f"{out / 'stim_io_curve.png'}, {out / 'stim_psth.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
