"""Stimulation from the shell: ``organoid-sim stimulate MODEL_DIR --protocol P.yaml --out evoked.nwb`` runs a
protocol on a saved model; ``organoid-sim calibrate MODEL_DIR SESSION --out CALIBRATED_DIR`` fits the model's
stimulation coupling to a recorded calibration session and prints how well it predicts the session's held-out
electrodes."""

from __future__ import annotations

import argparse
from pathlib import Path

from . import (CLIError, add_limit_argument, add_selection_arguments, apply_limit, check_output, load_recording,
               number)


def register(subparsers) -> None:
    """Add the ``stimulate`` and ``calibrate`` commands."""
    _register_calibrate(subparsers)
    p = subparsers.add_parser(
        "stimulate", help="run a stimulation protocol (YAML/JSON) on a fitted model",
        description="Run a stimulation protocol on a model saved with model.save(dir) and write the evoked "
                    "recording (NWB keeps the pulses as a TimeIntervals table).")
    p.add_argument("model_dir", metavar="MODEL_DIR", help="folder written by model.save()")
    p.add_argument("--protocol", required=True, metavar="P.yaml", help="protocol file (.yaml, .yml or .json)")
    p.add_argument("--out", required=True, metavar="OUT", help="output recording (.nwb, .h5, .npz, .csv)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--trials", type=number(low=1, low_open=False, integer=True), default=1, metavar="N",
                   help="repeat the protocol N times with independent seeds, trials back to back (default 1)")
    p.add_argument("--burn-in", type=number(low=0, low_open=False), default=1.0, metavar="S",
                   help="seconds of spontaneous activity before each trial, discarded (default 1.0)")
    p.add_argument("--device", default=None, metavar="PROFILE",
                   help="validate against a device profile: cl1, maxone, generic, generic-voltage, or 'none' "
                        "to skip the check (default: the protocol's 'device' field, else the generic profile's "
                        "physical limits: |I| <= 100 uA, <= 100 nC and <= 10 ms per phase)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    add_limit_argument(p)
    p.set_defaults(func=run_stimulate)


def run_stimulate(args: argparse.Namespace) -> int:
    """Load the model and protocol, validate, stimulate, save; prints a one-line summary."""
    import organoid_sim
    from ..stimulation import DeviceLimitError, Protocol, default_profile, get_profile
    from ..stimulation.trials import concat_trials, run_trials

    if args.trials < 1:
        raise CLIError(f"--trials must be >= 1, got {args.trials}")
    model_dir = Path(args.model_dir)
    if not model_dir.is_dir():
        raise CLIError(f"{model_dir}: not a model folder (expected the directory written by model.save())")
    check_output(args.out)
    apply_limit(args)
    protocol = Protocol.load(args.protocol)
    if args.device is not None and args.device.lower() == "none":
        profile = None  # the explicit opt-out
    else:
        profile = get_profile(args.device) if args.device else default_profile(protocol)
        try:
            profile.validate(protocol)
        except ValueError as exc:
            raise CLIError(f"{args.protocol}: {exc}"
                           + ("" if args.device or protocol.device or not isinstance(exc, DeviceLimitError) else
                              " (no device named: checked against the generic profile; --device none skips it)"))
    model = organoid_sim.load_model(model_dir)
    if not hasattr(model, "stimulate"):
        raise CLIError(f"{model_dir}: a {type(model).__name__} cannot be stimulated "
                       "(fit a SpikingNetworkModel: organoid-sim fit ... )")
    trials = run_trials(model, protocol, args.trials, seed=args.seed, burn_in_s=args.burn_in, device_profile=None,
                        progress=not args.no_progress)  # validated above
    rec = trials[0] if len(trials) == 1 else concat_trials(trials)
    rec = rec.with_metadata(protocol=protocol.name, protocol_file=str(args.protocol), model_dir=str(model_dir))
    organoid_sim.save(rec, args.out)
    print(f"{args.out}: {rec.n_units} units, {rec.n_spikes} spikes, {len(rec.stim)} pulses, "
          f"{rec.duration:.3f} s ({args.trials} trial{'s' if args.trials > 1 else ''}, seed {args.seed})")
    return 0


def _register_calibrate(subparsers) -> None:
    from ..stats.evoked import EVOKED_WINDOW

    c = subparsers.add_parser(
        "calibrate", help="fit a saved model's stimulation coupling to a recorded calibration session",
        description="Fit the stimulation coupling of a model saved by 'organoid-sim fit' to the evoked responses of "
                    "a calibration session (a recording of the same units with stimulation events), holding a "
                    "share of its stimulated electrodes out as a check, and save the calibrated model. The "
                    "network weights do not change. Prints the check: the prior's and the calibrated coupling's "
                    "predictions of the held-out electrodes' pulses; when the calibration predicts them worse, "
                    "the prior is kept.")
    c.add_argument("model_dir", metavar="MODEL_DIR", help="folder written by 'organoid-sim fit' or model.save()")
    c.add_argument("path", metavar="SESSION", help="calibration recording with stimulation events")
    add_selection_arguments(c)
    c.add_argument("--out", required=True, metavar="OUT_DIR", help="folder for the calibrated model")
    c.add_argument("--window", nargs=2, type=number(low=0, low_open=False), default=list(EVOKED_WINDOW),
                   metavar=("START_S", "STOP_S"),
                   help="seconds after each pulse where first spikes count (default "
                        f"{EVOKED_WINDOW[0]:g} {EVOKED_WINDOW[1]:g}, that of 'organoid-sim' evoked statistics)")
    c.add_argument("--trials", type=number(low=1, low_open=False, integer=True), default=32, metavar="N",
                   help="simulated trials per condition at each evaluation (default 32, as calibrate())")
    c.add_argument("--evaluations", type=number(low=1, low_open=False, integer=True), default=120, metavar="N",
                   help="budget of the coupling's parameter search (default 120, as calibrate())")
    c.add_argument("--check-fraction", type=number(low=0, low_open=False, high=0.9), default=0.25, metavar="F",
                   help="share of the stimulated electrodes held out as the check (default 0.25; 0: none)")
    c.add_argument("--repeats", type=number(low=1, low_open=False, integer=True), default=None, metavar="N",
                   help="whole calibrations run with other seeds and averaged (default: calibrate()'s)")
    c.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    c.set_defaults(func=run_calibrate)


def run_calibrate(args: argparse.Namespace) -> int:
    """Load model and session, calibrate, save the model and print the held-out check."""
    import warnings

    import organoid_sim
    from ..stimulation import calibrate
    from ..stimulation.calibrate import PRIOR_KEPT_WARNING, check_table

    start, stop = args.window
    if not stop > start:
        raise CLIError(f"--window: the stop ({stop:g} s) must come after the start ({start:g} s)")
    model_dir = Path(args.model_dir)
    if not (model_dir / "model.json").is_file():
        raise CLIError(f"{model_dir}: not a saved model (no model.json; fit one with 'organoid-sim fit')")
    model = organoid_sim.load_model(model_dir)
    if getattr(model, "stim_coupling", None) is None:
        raise CLIError(f"{model_dir}: a {type(model).__name__} without a stimulation coupling cannot be calibrated "
                       "(fit a SpikingNetworkModel to a recording with electrode positions)")
    rec = load_recording(args.path, args)
    with warnings.catch_warnings():
        # the table below says what the prior-kept warning would; every other warning passes
        warnings.filterwarnings("ignore", message=PRIOR_KEPT_WARNING)
        try:
            result = calibrate(model, rec, n_trials=args.trials, window=(start, stop), max_evaluations=args.evaluations,
                               check_fraction=args.check_fraction, seed=args.seed, progress=not args.no_progress,
                               repeats=args.repeats)
        except ValueError as exc:
            raise CLIError(f"{args.path}: {exc}") from None
    if result.interrupted:
        raise CLIError("calibration interrupted: nothing saved")
    out = model.save(Path(args.out))
    what = "the prior coupling kept (see the check below)" if result.kept_prior else "coupling fitted"
    # the pulses judged: those whose window runs past the recording's end are left out (with a warning)
    n_fit, n_check = int(result.observed.n_events.sum()), int((result.check or {}).get("n_check_pulses", 0))
    print(f"saved {out}: {what}; calibration on {n_fit + n_check} pulses of {args.path} ({n_fit} fitted, "
          f"{n_check} held out for the check; "
          f"{result.n_evaluations} evaluations, fit loss {result.loss_before:.4f} -> {result.loss_after:.4f}"
          + (f"; the calibrated coupling's {result.loss_calibrated:.4f}, not kept)" if result.kept_prior else ")"))
    print(check_table(result.check))
    _note_stimulation_fit(model)
    return 0


def _note_stimulation_fit(model) -> None:
    """One line when the model was not fitted as advised for stimulation (docs/stimulation.md)."""
    other = model.stimulation_fit_differences() if hasattr(model, "stimulation_fit_differences") else {}
    if other:
        print(f"note: this model was fitted with {', '.join(f'{k}={v:g}' for k, v in other.items())}; fits for "
              "stimulation ('organoid-sim fit --for-stimulation') predicted held-out pulses better on the "
              "stimulation benchmark (docs/stimulation.md, 'Which fit to calibrate')")
