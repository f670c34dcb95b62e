"""``organoid-sim info PATH`` and ``organoid-sim convert IN OUT``: look at and convert recordings."""

from __future__ import annotations

import argparse
import json

import numpy as np

from . import add_selection_arguments, check_output, load_recording


def register(subparsers) -> None:
    """Add the ``info`` and ``convert`` commands."""
    p = subparsers.add_parser("info", help="summarise a recording file (format, units, spikes, rates, wells)",
                              description="Print what a recording file holds. For a multi-well file without "
                                          "--well, list its wells.")
    p.add_argument("path", metavar="PATH", help="recording file (format detected from its content)")
    add_selection_arguments(p)
    p.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    p.set_defaults(func=run_info)

    c = subparsers.add_parser("convert", help="convert a recording to NWB, HDF5, NPZ or CSV",
                              description="Read IN (any supported format) and write OUT; the output format "
                                          "comes from OUT's extension (.nwb, .h5/.hdf5, .npz, .csv).")
    c.add_argument("input", metavar="IN", help="input recording")
    c.add_argument("output", metavar="OUT", help="output file (.nwb, .h5, .hdf5, .npz, .csv)")
    add_selection_arguments(c)
    c.set_defaults(func=run_convert)


def _load(args: argparse.Namespace):
    return load_recording(args.path if hasattr(args, "path") else args.input, args)


def summary(rec) -> dict:
    """The numbers ``info`` prints, as a JSON-ready dict (times s, rates Hz)."""
    md = rec.metadata
    rates = rec.firing_rates()
    return {
        "format": md.get("format"), "source": md.get("source"), "well": md.get("well"),
        "detector": md.get("detector"), "units": rec.n_units, "spikes": rec.n_spikes,
        "t_start_s": rec.t_start, "t_stop_s": rec.t_stop, "duration_s": rec.duration,
        "mean_rate_hz": float(rates.mean()) if rec.n_units else 0.0,
        "active_units": int(np.sum(rec.spike_counts > 0)), "electrodes": len(rec.electrodes),
        "units_with_positions": int(np.sum(np.all(np.isfinite(rec.positions), axis=1))),
        "sampling_rate_hz": rec.sampling_rate, "stim_events": len(rec.stim),
        "stim_electrodes": int(len(np.unique(rec.stim.electrode))),
    }


def _print_summary(path: str, info: dict, wells: list[str]) -> None:
    lines = [f"{path}", f"  format          {info['format']}"]
    if info.get("origin_format") not in (None, info["format"]):
        lines.append(f"  converted from  {info['origin_format']} ({info['source']})")
    if wells:
        lines.append(f"  wells           {' '.join(wells)}")
    for key, label in (("well", "well"), ("detector", "detector")):
        if info.get(key):
            lines.append(f"  {label:<15} {info[key]}")
    lines += [f"  units           {info['units']} ({info['active_units']} with spikes)",
              f"  spikes          {info['spikes']:,}",
              f"  window          {info['t_start_s']:.3f} - {info['t_stop_s']:.3f} s ({info['duration_s']:.3f} s)",
              f"  mean rate       {info['mean_rate_hz']:.3f} Hz per unit",
              f"  electrodes      {info['electrodes']} ({info['units_with_positions']} units with positions, um)",
              f"  sampling rate   {info['sampling_rate_hz'] or 'unknown'}"
              + (" Hz" if info['sampling_rate_hz'] else ""),
              f"  stim events     {info['stim_events']}"
              + (f" on {info['stim_electrodes']} electrodes" if info["stim_events"] else "")]
    print("\n".join(lines))


def _choices(args, fmt: str, wells: list[str]) -> tuple[str, list[str]] | None:
    """("well", wells) or ("detector", detectors) when the file needs a choice the user did not make."""
    if len(wells) > 1 and args.well is None:
        return "well", wells
    if fmt == "meanap" and args.detector is None:
        from ..io import meanap

        found = meanap.detectors(args.path)
        if len(found) > 1:
            return "detector", found
    return None


def run_info(args: argparse.Namespace) -> int:
    """Print the summary of one recording; for a multi-well file without ``--well``, list the wells."""
    import organoid_sim
    from ..io import detect_format

    fmt = args.in_format or detect_format(args.path)
    # the formats whose files hold a plate (list_wells detects the format again: not for --format overrides)
    wells = organoid_sim.list_wells(args.path) if fmt in ("axion", "axion_csv", "maxwell") else []
    choices = _choices(args, fmt, wells)
    if choices:
        option, values = choices
        if args.json:
            print(json.dumps({"format": fmt, "source": args.path, f"{option}s": values}))
        else:
            print(f"{args.path}\n  format          {fmt}\n  {option + 's':<15} {' '.join(values)}\n"
                  f"  choose one:     organoid-sim info {args.path} --{option} {values[0]}")
        return 0
    rec = _load(args)
    info = summary(rec)
    # the file's own format; a converted file remembers where it came from in its metadata
    info["origin_format"], info["format"] = info["format"], fmt
    if args.json:
        print(json.dumps({**info, "wells": wells}))
    else:
        _print_summary(args.path, info, wells)
    return 0


def run_convert(args: argparse.Namespace) -> int:
    """Load ``IN`` and save it as ``OUT`` (format from the extension); prints a one-line summary."""
    import organoid_sim

    check_output(args.output)
    rec = _load(args)
    organoid_sim.save(rec, args.output, progress=False if args.no_progress else None)
    print(f"{args.input} -> {args.output}: {rec.n_units} units, {rec.n_spikes:,} spikes, {rec.duration:.3f} s")
    return 0
