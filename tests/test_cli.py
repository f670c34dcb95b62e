"""The command-line entry point: every command is registered and errors are one line, not tracebacks."""

import subprocess
import sys

import pytest

from organoid_sim.cli import build_parser, main

COMMANDS = ("info", "convert", "describe", "compare", "fit", "simulate", "evaluate", "stimulate", "calibrate")


def test_every_command_is_registered():
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    assert set(COMMANDS) <= set(sub.choices)


@pytest.mark.parametrize("argv", [["info", "no_such_file.nwb"], ["describe", "no_such_file.h5"],
                                  ["fit", "no_such_file.h5", "--out", "m"],
                                  ["simulate", "no_such_model_dir", "--out", "x.nwb"]])
def test_missing_input_is_a_one_line_error(argv, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "no_such" in err and "Traceback" not in err and len(err.splitlines()) == 1


def test_console_entry_point_runs_as_module():
    out = subprocess.run([sys.executable, "-m", "organoid_sim", "--help"], capture_output=True, text=True)
    assert out.returncode == 0
    assert all(c in out.stdout for c in COMMANDS)
