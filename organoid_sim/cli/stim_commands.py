"""``organoid-sim stimulate MODEL_DIR --protocol P.yaml --out evoked.nwb``: run a protocol on a saved model."""

from __future__ import annotations

import argparse
from pathlib import Path

from . import CLIError, add_limit_argument, apply_limit, number


def register(subparsers) -> None:
    """Add the ``stimulate`` command."""
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
