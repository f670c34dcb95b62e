"""Command-line interface: ``organoid-sim COMMAND ...``.

Each ``*_commands`` module in this package registers its sub-commands through
``register(subparsers)``; nothing in the library imports the CLI.
"""

from __future__ import annotations

import argparse
import importlib
import math
import os
import re
import sys
import warnings

# Command modules in the order their commands appear in ``--help``.
COMMAND_MODULES = ("io_commands", "stats_commands", "model_commands", "stim_commands", "plate_commands")


DESCRIPTION = ("Load, describe and compare MEA spike recordings, fit spiking network models\n"
               "to them and run virtual stimulation experiments on the fitted models.\n"
               "'organoid-sim COMMAND --help' lists the options of one command.")

#: the library's option syntax in error messages (``detector=...``) and the flags that set them here
_API_OPTIONS = re.compile(r"\b(well|detector|recording|format)=(?:\.\.\.)?")


class CLIError(Exception):
    """An error to show the user as one line, without a traceback."""


def number(*, low: float | None = None, high: float | None = None, low_open: bool = True,
           integer: bool = False):
    """An argparse ``type`` for a finite number within bounds (``low_open``: ``> low``, else ``>=``).

    ``--duration nan`` or ``--split 2`` then fails with argparse's one-line usage error naming
    the option, before any work starts.
    """
    def parse(text: str):
        try:
            value = int(text) if integer else float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {'an integer' if integer else 'a number'}") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"{text!r}: must be a finite number")
        if low is not None and (value <= low if low_open else value < low):
            raise argparse.ArgumentTypeError(f"{text!r}: must be {'>' if low_open else '>='} {low:g}")
        if high is not None and value > high:
            raise argparse.ArgumentTypeError(f"{text!r}: must be <= {high:g}")
        return value
    parse.__name__ = "integer" if integer else "number"  # argparse names the type in its messages
    return parse


def add_limit_argument(p: argparse.ArgumentParser) -> None:
    """``--max-request-gb``: the request-size limit of :mod:`organoid_sim.limits` for this run."""
    p.add_argument("--max-request-gb", type=number(low=0), default=None, metavar="GB",
                   help="refuse requests whose estimated memory passes GB gigabytes (default 2, or "
                        "$ORGANOID_SIM_MAX_REQUEST_GB; 'inf' switches the check off)")


def apply_limit(args: argparse.Namespace) -> None:
    """Set the request-size limit from ``--max-request-gb`` when given."""
    if getattr(args, "max_request_gb", None) is not None:
        from ..limits import set_max_request_gb

        set_max_request_gb(args.max_request_gb)


def cli_wording(message: str, flags: dict | None = None) -> str:
    """A library message with its option syntax (``detector=...``) as the command's flags
    (``--detector``; ``flags`` renames some, e.g. ``{"well": "--well-a"}``)."""
    flags = flags or {}
    return _API_OPTIONS.sub(lambda m: flags.get(m.group(1), f"--{m.group(1)}")
                            + ("" if m.group(0).endswith("...") else " "), message)


def add_selection_arguments(p: argparse.ArgumentParser, *, progress: bool = True) -> None:
    """Options that choose what to read from a recording file (shared by every command that loads one)."""
    p.add_argument("--well", default=None, help="well of a multi-well file (Axion 'D1', MaxTwo 'well000')")
    p.add_argument("--detector", default=None, help="spike detector of an MEA-NAP .mat file (e.g. thr4)")
    p.add_argument("--recording", default=None, help="recording group of a MaxWell file (e.g. rec0000)")
    p.add_argument("--format", default=None, dest="in_format",
                   help="input format instead of detecting it (nwb, generic_h5, maxwell, axion, mcs, meanap, npz, csv)")
    if progress:
        p.add_argument("--no-progress", action="store_true", help="hide progress bars")


def load_recording(path: str, args: argparse.Namespace, *, well=None, well_flag: str = "--well"):
    """Load ``path`` with the options of :func:`add_selection_arguments` (``well`` overrides ``--well``;
    ``well_flag`` is the flag that sets it, named in error messages, e.g. ``--well-a``)."""
    from pathlib import Path

    import organoid_sim

    if not Path(path).exists():
        raise CLIError(f"no such file: {path}")
    try:
        return organoid_sim.load(path, well=well if well is not None else getattr(args, "well", None),
                                 detector=getattr(args, "detector", None), recording=getattr(args, "recording", None),
                                 format=getattr(args, "in_format", None),
                                 progress=False if getattr(args, "no_progress", False) else None)
    except ValueError as exc:  # the readers speak the API's options; say the command's flags
        raise CLIError(cli_wording(str(exc), {"well": well_flag})) from None


def check_output(path: str) -> None:
    """Refuse an output recording ``path`` that ``organoid_sim.save`` would refuse (unknown extension,
    missing folder) before the command loads or simulates anything."""
    from pathlib import Path

    from ..io import WRITERS

    out = Path(path)
    if out.suffix.lower() not in WRITERS:
        raise CLIError(f"{path}: unknown output extension {out.suffix.lower()!r}; use one of {', '.join(WRITERS)}")
    if not (out.parent if str(out.parent) else Path(".")).is_dir():
        raise CLIError(f"{path}: directory {out.parent} does not exist")


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every available sub-command."""
    from .. import __version__

    parser = argparse.ArgumentParser(prog="organoid-sim", description=DESCRIPTION,
                                     formatter_class=lambda prog: argparse.RawDescriptionHelpFormatter(prog, max_help_position=14))
    parser.add_argument("--version", action="version", version=f"organoid-sim {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"{__name__}.{name}":
                continue  # that family of commands is not built yet
            raise
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``organoid-sim`` console script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return _run(args)
    finally:
        _reset_limit(args)


def _reset_limit(args: argparse.Namespace) -> None:
    """``--max-request-gb`` holds for one command (``main`` may run several in one process)."""
    if getattr(args, "max_request_gb", None) is not None:
        from ..limits import set_max_request_gb

        set_max_request_gb(None)


def _run(args: argparse.Namespace) -> int:
    """Run the parsed command; errors of ours become one line and exit status 2."""
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _one_line_warning(args.command)
            return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # the reader of our output went away (e.g. `| head`): not an error of the command;
        # point stdout at devnull so the interpreter's final flush does not fail again
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except (CLIError, ValueError, FileNotFoundError, KeyError, OSError) as exc:
        print(f"organoid-sim {args.command}: error: {exc}", file=sys.stderr)
        return 2


def _one_line_warning(command: str):
    """``warnings.showwarning`` printing ``organoid-sim COMMAND: warning: ...`` (no source lines)."""
    def show(message, category, filename, lineno, file=None, line=None) -> None:
        text = " ".join(str(message).split())
        print(f"organoid-sim {command}: warning: {text}", file=sys.stderr if file is None else file)
    return show


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
