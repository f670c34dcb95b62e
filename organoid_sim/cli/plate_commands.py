"""``organoid-sim fit-plate``: fit every well of one or more plates (or many files) on Dask."""

from __future__ import annotations

from pathlib import Path

from . import CLIError, number


def register(subparsers) -> None:
    """Add the ``fit-plate`` command."""
    p = subparsers.add_parser(
        "fit-plate", help="fit a spiking network to every well of plates or files, on Dask",
        description="Fit a SpikingNetworkModel to every (file, well): one job per well on a local Dask cluster "
                    "(default), an existing scheduler (--scheduler) or serially (--workers 0). Each job writes "
                    "OUT/<file stem>/<well>/ (model/, result.json, report.html); finished jobs are skipped on "
                    "a re-run; OUT/results.csv, results.json and plate.html summarise the run.")
    p.add_argument("paths", nargs="+", metavar="PATH", help="recording files (plates give one job per well)")
    p.add_argument("--wells", default="all", help="'all' (default) or a comma-separated list, e.g. A1,B2")
    p.add_argument("--out", required=True, metavar="DIR", help="output directory")
    p.add_argument("--scheduler", default=None, metavar="ADDRESS",
                   help="address of a running Dask scheduler (e.g. tcp://host:8786) instead of a local cluster")
    p.add_argument("--workers", type=number(low=0, low_open=False, integer=True), default=None,
                   help="local worker processes (default: one per core; 0 runs the jobs in this process)")
    p.add_argument("--evaluate", action="store_true",
                   help="also fit on 75 %% and judge on the rest (organoid_sim.evaluate) and check the fidelity bars")
    from ..fit.config import FitConfig   # the API's defaults, as 'organoid-sim fit' has them

    d = FitConfig()
    p.add_argument("--hidden", type=number(low=0, low_open=False, integer=True), default=None,
                   help="hidden neurons per network (default: SpikingNetworkModel's, as 'organoid-sim fit')")
    p.add_argument("--dt-ms", type=number(low=0), default=None,
                   help="time step in ms (default: SpikingNetworkModel's, as 'organoid-sim fit')")
    p.add_argument("--max-epochs", type=number(low=0, low_open=False, integer=True), default=d.max_epochs,
                   help=f"teacher-forced L-BFGS epochs (default {d.max_epochs})")
    p.add_argument("--refine-steps", type=number(low=0, low_open=False, integer=True), default=d.refine_steps,
                   help=f"free-running refinement steps (default {d.refine_steps})")
    p.add_argument("--restarts", type=number(low=1, low_open=False, integer=True), default=d.restarts,
                   help=f"refinement restarts (default {d.restarts})")
    p.add_argument("--seed", type=int, default=0, help="seed of every job (default 0)")
    p.add_argument("--derive-seeds", action="store_true",
                   help="give each job its own seed from (seed, file name, well) instead")
    p.add_argument("--no-figures", action="store_true", help="skip the per-well report.html")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(func=run_fit_plate)


def well_figures(folder: Path, recording, model, result: dict) -> list[str]:
    """Per-well ``report.html`` in a job folder: the fit's figures, the checks, recorded and simulated rasters.

    Parameters
    ----------
    folder : Path
        The job's (temporary) folder.
    recording : SpikeRecording
        The fitted recording.
    model : SpikingNetworkModel
        The fitted model.
    result : dict
        The job's result so far.

    Returns
    -------
    list of str
        Written files, relative to ``folder``.
    """
    from .. import plot
    from ..report import well_report

    t0 = float(recording.times.min()) if recording.n_spikes else recording.t_start
    t1 = min(recording.t_stop, t0 + 60.0)   # one minute: enough to see bursts, cheap to simulate
    sim = model.simulate(t1 - t0, seed=int(result.get("seed", 0)), t_start=t0)
    figs = {"recorded": plot.raster(recording, t0=t0, t1=t1), "simulated (free-running)": plot.raster(sim, t0=sim.t_start, t1=sim.t_stop)}
    well_report(result, figs).save(folder / "report.html")
    return ["report.html"]


def run_fit_plate(args) -> int:
    from ..batch import SERIAL, fit_many
    from ..report import plate_overview

    missing = [p for p in args.paths if not Path(p).is_file()]
    if missing:
        raise CLIError(f"no such file: {', '.join(missing)}")
    if args.scheduler and args.workers is not None:
        raise CLIError("--workers sizes the local cluster; with --scheduler the cluster's own workers run the jobs")
    client = args.scheduler or (SERIAL if args.workers == 0 else None)
    results = fit_many(args.paths, args.out, client=client, wells=args.wells, workers=args.workers, seed=args.seed,
                       derive_seeds=args.derive_seeds, evaluate=args.evaluate,
                       figures=None if args.no_figures else well_figures, progress=not args.no_progress,
                       max_epochs=args.max_epochs, refine_steps=args.refine_steps, restarts=args.restarts,
                       **({} if args.hidden is None else {"n_hidden": args.hidden}),
                       **({} if args.dt_ms is None else {"dt_ms": args.dt_ms}))
    page = plate_overview(results, Path(args.out) / "plate.html")
    failed = [r for r in results if r.get("status") != "ok"]
    skipped = sum(bool(r.get("skipped")) for r in results)
    print(f"{len(results) - len(failed)} of {len(results)} jobs ok ({skipped} skipped as already finished), "
          f"{len(failed)} failed; table {Path(args.out) / 'results.csv'}, overview {page}")
    for r in failed:
        err = r.get("error") or {}
        print(f"  failed {r['job']}: {err.get('type')}: {err.get('message')}")
    return 1 if failed else 0
