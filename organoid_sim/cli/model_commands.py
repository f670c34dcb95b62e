"""``organoid-sim fit``, ``simulate`` and ``evaluate``: spiking network models from the shell."""

from __future__ import annotations

from pathlib import Path

from . import CLIError, add_selection_arguments, load_recording


def register(subparsers) -> None:
    """Add the ``fit``, ``simulate`` and ``evaluate`` commands."""
    f = subparsers.add_parser("fit", help="fit a spiking network model to a recording",
                              description="Fit a SpikingNetworkModel (teacher-forced likelihood, free-running "
                                          "refinement, rate calibration) and save it to MODEL_DIR.")
    f.add_argument("path", metavar="PATH", help="recording file (any format organoid-sim reads)")
    add_selection_arguments(f)
    f.add_argument("--out", required=True, metavar="MODEL_DIR", help="directory for the saved model")
    f.add_argument("--hidden", type=int, default=0, help="number of hidden neurons (default 0)")
    f.add_argument("--device", default="cpu", choices=("cpu", "cuda"), help="torch device (default cpu)")
    f.add_argument("--dt-ms", type=float, default=5.0, help="time step in ms (default 5)")
    f.add_argument("--max-epochs", type=int, default=30, help="teacher-forced L-BFGS epochs (default 30)")
    f.add_argument("--refine-steps", type=int, default=60, help="free-running refinement steps (default 60)")
    f.add_argument("--restarts", type=int, default=1,
                   help="refinement restarts; the one closest to the recording is kept (default 1)")
    f.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    f.set_defaults(func=run_fit)

    s = subparsers.add_parser("simulate", help="free-running simulation of a saved model",
                              description="Simulate a saved model and write the spikes (.nwb, .h5, .npz, .csv).")
    s.add_argument("model_dir", metavar="MODEL_DIR", help="directory written by 'organoid-sim fit'")
    s.add_argument("--duration", type=float, default=600.0, help="seconds to simulate (default 600)")
    s.add_argument("--out", required=True, metavar="OUT", help="output file; format from the extension")
    s.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    s.add_argument("--device", default="cpu", choices=("cpu", "cuda"), help="torch device (default cpu)")
    s.set_defaults(func=run_simulate)

    e = subparsers.add_parser("evaluate", help="fit Poisson, GLM and network on 75 %% and judge them on the rest",
                              description="Held-out bits/spike and free-running statistics of the three models "
                                          "next to the recording's own noise floor.")
    e.add_argument("path", metavar="PATH", help="recording file")
    add_selection_arguments(e, progress=False)
    e.add_argument("--split", type=float, default=0.75, help="fraction used for fitting (default 0.75)")
    e.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    e.add_argument("--hidden", type=int, default=8, help="hidden neurons of the network (default 8)")
    e.add_argument("--restarts", type=int, default=1, help="refinement restarts of the network fit (default 1)")
    e.add_argument("--json", action="store_true", help="print JSON instead of a table")
    e.set_defaults(func=run_evaluate)


def _load(args):
    return load_recording(args.path, args)


def run_fit(args) -> int:
    from ..models import SpikingNetworkModel

    if args.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise CLIError("--device cuda: no CUDA device is available")
    rec = _load(args)
    model = SpikingNetworkModel(n_hidden=args.hidden, dt_ms=args.dt_ms, seed=args.seed)
    model.fit(rec, device=args.device, progress=not args.no_progress, max_epochs=args.max_epochs,
              refine_steps=args.refine_steps, restarts=args.restarts, seed=args.seed,
              checkpoint_dir=Path(args.out) / "checkpoint")
    out = model.save(args.out)
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
        from ..fit.self_check import describe_misses, table

        print(f"self-check: free-running simulation ({check['simulated_s']:.0f} s) against the fitting window")
        print(table(check))
        line = describe_misses(check)
        if line:
            print(f"warning: {line}")
    return 0


def run_simulate(args) -> int:
    import organoid_sim

    if not (Path(args.model_dir) / "model.json").exists():
        raise CLIError(f"{args.model_dir}: not a saved model (no model.json)")
    model = organoid_sim.load_model(args.model_dir, device=args.device)
    sim = model.simulate(args.duration, seed=args.seed)
    organoid_sim.save(sim, args.out)
    print(f"wrote {args.out}: {sim!r}")
    return 0


def run_evaluate(args) -> int:
    import organoid_sim

    rec = _load(args)
    report = organoid_sim.evaluate(rec, split=args.split, seed=args.seed, network_options={"n_hidden": args.hidden},
                                   fit_options={"restarts": args.restarts})
    print(report.to_json() if args.json else report)
    return 0
