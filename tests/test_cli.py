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


@pytest.mark.parametrize("option, value", [("--hidden", "-1"), ("--dt-ms", "0"), ("--max-epochs", "-2"),
                                           ("--refine-steps", "1.5"), ("--restarts", "0")])
def test_fit_plate_refuses_impossible_settings_before_any_job(option, value, capsys, tmp_path):
    """As 'organoid-sim fit' does: one line naming the option, not one failed job per well."""
    with pytest.raises(SystemExit) as exc:
        main(["fit-plate", "plate.h5", "--out", str(tmp_path / "out"), option, value])
    assert exc.value.code == 2
    assert option in capsys.readouterr().err and not (tmp_path / "out").exists()


def test_fit_plate_defaults_are_the_apis():
    from organoid_sim.fit import FitConfig

    a, d = build_parser().parse_args(["fit-plate", "plate.h5", "--out", "o"]), FitConfig()
    assert (a.max_epochs, a.refine_steps, a.restarts) == (d.max_epochs, d.refine_steps, d.restarts)
