"""``organoid-sim fit``, ``simulate`` and ``evaluate``: spiking network models from the shell."""

from __future__ import annotations

import shutil
from pathlib import Path

from . import (CLIError, add_limit_argument, add_selection_arguments, apply_limit, check_output, load_recording,
               number)

CHECKPOINT = "checkpoint"


def _add_trim_argument(p) -> None:
    p.add_argument("--keep-silence", action="store_true",
                   help="keep the silence before the first and after the last spike (default: the recording "
                        "is trimmed to first..last spike, as a plate's clock may start long before its culture "
                        "fires)")


def _model_defaults() -> tuple[int, float]:
    """The estimator's hidden neurons and step (ms), imported only when the parser is built."""
    from ..models.network import DEFAULT_DT_MS, DEFAULT_N_HIDDEN

    return DEFAULT_N_HIDDEN, DEFAULT_DT_MS


def register(subparsers) -> None:
    """Add the ``fit``, ``simulate`` and ``evaluate`` commands."""
    f = subparsers.add_parser("fit", help="fit a spiking network model to a recording",
                              description="Fit a SpikingNetworkModel (teacher-forced likelihood, free-running "
                                          "refinement, rate and burst calibration) to the recording, trimmed to its first.."
                                          "last spike, and save it to MODEL_DIR. The fit keeps interrupt-safe "
                                          "checkpoints in MODEL_DIR/checkpoint and removes them when it ends, "
                                          "finished, interrupted (Ctrl-C) or failed: an interrupted fit saves "
                                          "nothing and is run again from the start.")
    f.add_argument("path", metavar="PATH", help="recording file (any format organoid-sim reads)")
    add_selection_arguments(f)
    f.add_argument("--out", required=True, metavar="MODEL_DIR", help="directory for the saved model")
    hidden, dt_ms = _model_defaults()
    from ..fit.config import FitConfig   # the API's defaults, so that the command fits what fit() does

    d = FitConfig()
    f.add_argument("--hidden", type=number(low=0, low_open=False, integer=True), default=None,
                   help=f"number of hidden neurons (default {hidden}; 0 with --for-stimulation)")
    _add_trim_argument(f)
    f.add_argument("--device", default="cpu", choices=("cpu", "cuda"), help="torch device (default cpu)")
    f.add_argument("--dt-ms", type=number(low=0), default=None,
                   help=f"time step in ms (default {dt_ms:g}; 1 with --for-stimulation)")
    f.add_argument("--max-epochs", type=number(low=0, low_open=False, integer=True), default=d.max_epochs,
                   help=f"teacher-forced L-BFGS epochs (default {d.max_epochs})")
    f.add_argument("--refine-steps", type=number(low=0, low_open=False, integer=True), default=None,
                   help=f"free-running refinement steps (default {d.refine_steps}; 0 with --for-stimulation)")
    f.add_argument("--for-stimulation", action="store_true",
                   help="the fit advised for stimulation experiments: no hidden neurons, 1 ms steps, no "
                        "refinement (SpikingNetworkModel.for_stimulation); --hidden, --dt-ms and "
                        "--refine-steps still apply")
    f.add_argument("--restarts", type=number(low=1, low_open=False, integer=True), default=d.restarts,
                   help=f"refinement restarts; the one closest to the recording is kept (default {d.restarts})")
    f.add_argument("--calibration-rounds", type=number(low=0, low_open=False, integer=True),
                   default=d.calibration_rounds,
                   help=f"rounds of rate and burst calibration after refinement (default {d.calibration_rounds}; "
                        "0 skips it)")
    f.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    f.set_defaults(func=run_fit)

    s = subparsers.add_parser("simulate", help="free-running simulation of a saved model",
                              description="Simulate a saved model and write the spikes (.nwb, .h5, .npz, .csv).")
    s.add_argument("model_dir", metavar="MODEL_DIR", help="directory written by 'organoid-sim fit'")
    s.add_argument("--duration", type=number(low=0), default=600.0, help="seconds to simulate (default 600)")
    s.add_argument("--out", required=True, metavar="OUT", help="output file; format from the extension")
    s.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    s.add_argument("--device", default="cpu", choices=("cpu", "cuda"), help="torch device (default cpu)")
    s.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    add_limit_argument(s)
    s.set_defaults(func=run_simulate)

    e = subparsers.add_parser("evaluate", help="fit Poisson, GLM and network on 75 %% and judge them on the rest",
                              description="Held-out bits/spike and free-running statistics of the three models "
                                          "next to the recording's own noise floor; the recording is trimmed "
                                          "to its first..last spike first, as by 'fit'.")
    e.add_argument("path", metavar="PATH", help="recording file")
    add_selection_arguments(e)
    e.add_argument("--split", type=number(low=0, high=0.999), default=0.75,
                   help="fraction used for fitting (default 0.75)")
    e.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    e.add_argument("--hidden", type=number(low=0, low_open=False, integer=True), default=hidden,
                   help=f"hidden neurons of the network (default {hidden})")
    _add_trim_argument(e)
    e.add_argument("--restarts", type=number(low=1, low_open=False, integer=True), default=1,
                   help="refinement restarts of the network fit (default 1)")
    e.add_argument("--json", action="store_true", help="print JSON instead of a table")
    e.set_defaults(func=run_evaluate)


def _load(args):
    return load_recording(args.path, args)


def _check_device(device: str) -> None:
    """Refuse ``--device cuda`` without CUDA up front (torch would fail with a traceback later)."""
    if device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise CLIError("--device cuda: no CUDA device is available")


def unfitted_model(args, checkpoint_dir=None):
    """The ``SpikingNetworkModel`` that ``organoid-sim fit`` fits: the API's defaults, or
    :meth:`~organoid_sim.models.SpikingNetworkModel.for_stimulation` with ``--for-stimulation``,
    and the options given on the command line over either."""
    from ..models import SpikingNetworkModel

    given = {k: v for k, v in (("n_hidden", args.hidden), ("dt_ms", args.dt_ms), ("refine_steps", args.refine_steps))
             if v is not None}
    make = SpikingNetworkModel.for_stimulation if args.for_stimulation else SpikingNetworkModel
    return make(**given, seed=args.seed, device=args.device, progress=not args.no_progress,
                max_epochs=args.max_epochs, restarts=args.restarts, fit_seed=args.seed,
                calibration_rounds=args.calibration_rounds, checkpoint_dir=checkpoint_dir)


def run_fit(args) -> int:
    _check_device(args.device)
    rec = _trimmed(_load(args), args)
    out_dir = Path(args.out)
    ckpt = out_dir / CHECKPOINT
    model = unfitted_model(args, checkpoint_dir=ckpt)
    made_dir = not out_dir.exists()
    try:
        model.fit(rec)
    except BaseException:
        # an interrupted or failed fit is not resumed: its checkpoints go, and so does a folder the fit made
        shutil.rmtree(ckpt, ignore_errors=True)
        if made_dir and out_dir.is_dir() and not any(out_dir.iterdir()):
            out_dir.rmdir()
        raise
    out = model.save(out_dir)
    shutil.rmtree(ckpt, ignore_errors=True)  # the saved model replaces them
    m = model.provenance.get("metrics", {})
    # the saved model's figure: after refinement and calibration when they ran, else the teacher-forced one
    val = m.get("final_val_bits", m.get("best_val_bits", float("nan")))
    # the uncoupled null's rates are refitted on the whole window, validation part included
    where = "validation part (in the rates' refit)" if m.get("uncoupled") else "held-out (validation)"
    print(f"saved {out}: {model.n_recorded} recorded + {model.n_hidden} hidden neurons, "
          f"{where} {val:.3f} bits/spike, fit {m.get('fit_s', 0):.1f} s")
    if m.get("uncoupled"):
        print(f"no coupling kept: it predicted the held-out part worse ({m['coupled_val_bits']:.3f} bits/spike) "
              f"than independent Poisson units ({m['uncoupled_val_bits']:.3f})")
    check = model.provenance.get("self_check")
    if check:
        from ..fit.self_check import table

        # a missed bar was already reported by the fit's own warning line; the table shows which
        print(f"self-check: free-running simulation ({check['simulated_s']:.0f} s) against the fitting window")
        print(table(check))
    return 0


def _trimmed(rec, args):
    """``rec`` trimmed to its first..last spike unless ``--keep-silence``; says what was cut."""
    if args.keep_silence:
        return rec
    out = rec.trim_silence()
    cut = rec.duration - out.duration
    if cut > 1.0:
        print(f"trimmed {out.t_start - rec.t_start:.1f} s of silence before the first spike and "
              f"{rec.t_stop - out.t_stop:.1f} s after the last (fitting {out.t_start:.3f}-{out.t_stop:.3f} s; "
              "--keep-silence keeps them)")
    return out


def run_simulate(args) -> int:
    import organoid_sim

    if not (Path(args.model_dir) / "model.json").exists():
        raise CLIError(f"{args.model_dir}: not a saved model (no model.json)")
    _check_device(args.device)
    check_output(args.out)
    apply_limit(args)
    model = organoid_sim.load_model(args.model_dir, device=args.device)
    kwargs = {"progress": False} if args.no_progress else {}
    sim = model.simulate(args.duration, seed=args.seed, **kwargs)
    organoid_sim.save(sim, args.out)
    print(f"wrote {args.out}: {sim!r}")
    return 0


def run_evaluate(args) -> int:
    import organoid_sim

    rec = _load(args)
    report = organoid_sim.evaluate(rec, split=args.split, seed=args.seed, network_options={"n_hidden": args.hidden},
                                   fit_options={"restarts": args.restarts}, trim_silence=not args.keep_silence,
                                   progress=not args.no_progress)
    print(report.to_json() if args.json else report)
    return 0
