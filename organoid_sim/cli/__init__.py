"""Command-line interface: ``organoid-sim COMMAND ...``.

Each ``*_commands`` module in this package registers its sub-commands through
``register(subparsers)``; nothing in the library imports the CLI.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

# Command modules in the order their commands appear in ``--help``.
COMMAND_MODULES = ("io_commands", "stats_commands", "model_commands", "stim_commands", "plate_commands")


class CLIError(Exception):
    """An error to show the user as one line, without a traceback."""


def add_selection_arguments(p: argparse.ArgumentParser, *, progress: bool = True) -> None:
    """Options that choose what to read from a recording file (shared by every command that loads one)."""
    p.add_argument("--well", default=None, help="well of a multi-well file (Axion 'D1', MaxTwo 'well000')")
    p.add_argument("--detector", default=None, help="spike detector of an MEA-NAP .mat file (e.g. thr4)")
    p.add_argument("--recording", default=None, help="recording group of a MaxWell file (e.g. rec0000)")
    p.add_argument("--format", default=None, dest="in_format",
                   help="input format instead of detecting it (nwb, generic_h5, maxwell, axion, mcs, meanap, npz, csv)")
    if progress:
        p.add_argument("--no-progress", action="store_true", help="hide progress bars")


def load_recording(path: str, args: argparse.Namespace, *, well=None):
    """Load ``path`` with the options of :func:`add_selection_arguments` (``well`` overrides ``--well``)."""
    from pathlib import Path

    import organoid_sim

    if not Path(path).exists():
        raise CLIError(f"no such file: {path}")
    return organoid_sim.load(path, well=well if well is not None else getattr(args, "well", None),
                             detector=getattr(args, "detector", None), recording=getattr(args, "recording", None),
                             format=getattr(args, "in_format", None),
                             progress=False if getattr(args, "no_progress", False) else None)


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every available sub-command."""
    from .. import __version__

    parser = argparse.ArgumentParser(prog="organoid-sim", description=__doc__.splitlines()[0])
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


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
