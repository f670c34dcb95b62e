"""``organoid-sim describe PATH`` and ``organoid-sim compare A B``: MEA statistics from the shell."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..atomic import atomic_write_text
from . import add_selection_arguments, load_recording


def register(subparsers) -> None:
    """Add the ``describe`` and ``compare`` commands."""
    d = subparsers.add_parser("describe", help="MEA statistics of a recording (rates, ISI, STTC, bursts, avalanches)",
                              description="Describe a recording with the standard MEA statistics and print them "
                                          "as a table; optionally write JSON and figures.")
    d.add_argument("path", metavar="PATH", help="recording file (any format organoid-sim reads)")
    add_selection_arguments(d, progress=False)
    d.add_argument("--json", metavar="OUT.json", default=None, help="write the description as JSON")
    d.add_argument("--full", action="store_true", help="with --json: include the correlation/STTC matrices and bursts")
    d.add_argument("--plots", metavar="DIR", default=None, help="write raster, rate map, matrices, histograms (PNG)")
    d.add_argument("--sttc-dt", type=float, default=0.01, help="STTC window in seconds (default 0.01)")
    d.add_argument("--corr-bin-ms", type=float, default=10.0, help="correlation bin in ms (default 10)")
    d.set_defaults(func=run_describe)

    c = subparsers.add_parser("compare", help="compare two recordings (e.g. recorded vs simulated)",
                              description="Describe reference A and candidate B and print every statistic side "
                                          "by side with its distance and an overall verdict.")
    c.add_argument("a", metavar="A", help="reference recording")
    c.add_argument("b", metavar="B", help="candidate recording (e.g. a simulation)")
    c.add_argument("--well-a", default=None, help="well of A in a multi-well file")
    c.add_argument("--well-b", default=None, help="well of B in a multi-well file")
    c.add_argument("--detector", default=None, help="spike detector of the MEA-NAP .mat file(s) among A and B")
    c.add_argument("--json", metavar="OUT.json", default=None, help="write the comparison as JSON")
    c.add_argument("--plot", metavar="OUT.png", default=None, help="write the two-column comparison figure")
    c.set_defaults(func=run_compare)


def _load(path: str, args: argparse.Namespace, well=None, well_flag: str = "--well"):
    return load_recording(path, args, well=well, well_flag=well_flag)


def write_json(obj: dict, path) -> Path:
    """Write ``obj`` as JSON atomically (temporary file, then ``os.replace``)."""
    return atomic_write_text(path, json.dumps(obj, indent=1, allow_nan=False))


def _detector_if_meanap(path: str, args: argparse.Namespace) -> argparse.Namespace:
    """``args`` for loading one side of ``compare``: ``--detector`` names a MEA-NAP file's
    detector, so a side in another format (e.g. a simulation in NWB) is read without it."""
    from ..io import detect_format

    if args.detector is None or not Path(path).exists() or detect_format(path) == "meanap":
        return args
    return argparse.Namespace(**{**vars(args), "detector": None})


def run_describe(args: argparse.Namespace) -> int:
    from .. import stats

    rec = _load(args.path, args)
    desc = stats.describe(rec, sttc_dt=args.sttc_dt, corr_bin_ms=args.corr_bin_ms)
    print(desc)
    if args.json:
        print(f"wrote {write_json(desc.to_dict(full=args.full), args.json)}")
    if args.plots:
        from .. import plot

        for p in plot.save_description_figures(rec, desc, args.plots):
            print(f"wrote {p}")
    return 0


def run_compare(args: argparse.Namespace) -> int:
    from .. import stats

    ref = _load(args.a, _detector_if_meanap(args.a, args), args.well_a, "--well-a")
    cand = _load(args.b, _detector_if_meanap(args.b, args), args.well_b, "--well-b")
    cmp = stats.compare(ref, cand)
    print(cmp)
    if args.json:
        print(f"wrote {write_json(cmp.to_dict(), args.json)}")
    if args.plot:
        from .. import plot

        print(f"wrote {plot.save(plot.comparison(cmp, ref, cand), args.plot, dpi=80)}")
    return 0
