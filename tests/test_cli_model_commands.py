"""``organoid-sim fit``/``evaluate``/``simulate`` as a new user meets them: one trim rule, one
hidden-unit default, checkpoints that do not outlive the fit, and errors and warnings in the
command's own words."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import organoid_sim
from organoid_sim.cli import build_parser, main
from organoid_sim.cli.model_commands import unfitted_model
from organoid_sim.models import SpikingNetworkModel

ROOT = Path(__file__).resolve().parents[1]
FAST = ["--max-epochs", "2", "--refine-steps", "0", "--calibration-rounds", "0", "--no-progress"]


def _with_lead_in(rec, silence_s: float):
    """``rec`` with ``silence_s`` seconds of silence before it and 5 s after it (an Axion plate's clock)."""
    shifted = rec.shifted(silence_s - rec.t_start)
    return shifted.replace(t_start=0.0, t_stop=shifted.t_stop + 5.0)


@pytest.fixture(scope="module")
def silent_lead_in(tmp_path_factory):
    rng = np.random.default_rng(3)
    trains = [np.sort(rng.uniform(0, 40.0, rng.poisson(r * 40.0))) for r in rng.uniform(2.0, 6.0, 5)]
    rec = organoid_sim.SpikeRecording.from_spike_times(trains, t_start=0.0, t_stop=40.0)
    path = tmp_path_factory.mktemp("lead_in") / "plate.npz"
    organoid_sim.save(_with_lead_in(rec, 30.0), path)
    return path


def test_fit_and_evaluate_trim_the_same_silence(silent_lead_in, tmp_path):
    rec = organoid_sim.load(silent_lead_in)
    first, last = float(rec.times.min()), float(rec.times.max())
    assert rec.t_start == 0.0 and first > 29.0  # 30 s of silence before the first spike
    out = tmp_path / "model"
    assert main(["fit", str(silent_lead_in), "--out", str(out), "--hidden", "0", *FAST]) == 0
    window = organoid_sim.load_model(out).provenance["fit_window_s"]
    assert window[0] == first and window[1] == pytest.approx(last, abs=1e-5)
    rep = organoid_sim.evaluate(rec, models=("poisson",), sim_factor=1.0)
    assert rep.settings["fit_window_s"][0] == first  # evaluate: the same rule, the same window
    kept = tmp_path / "kept"
    assert main(["fit", str(silent_lead_in), "--out", str(kept), "--hidden", "0", "--keep-silence", *FAST]) == 0
    assert organoid_sim.load_model(kept).provenance["fit_window_s"] == [rec.t_start, rec.t_stop]


def test_trim_rule_on_the_div12_plate(d1):
    """The DIV12 plate's well D1: its clock starts at 0 s, its first spike comes 164 s later."""
    trimmed = d1.trim_silence()
    assert d1.t_start == 0.0 and trimmed.t_start == float(d1.times.min()) > 160.0
    assert trimmed.n_spikes == d1.n_spikes and trimmed.t_stop <= d1.t_stop


def test_one_hidden_unit_default():
    parser = build_parser()
    fit = unfitted_model(parser.parse_args(["fit", "x.npz", "--out", "m"]))
    ev = parser.parse_args(["evaluate", "x.npz"])
    assert fit.n_hidden == ev.hidden == SpikingNetworkModel().n_hidden == 8
    readme = (ROOT / "README.md").read_text()
    assert "SpikingNetworkModel(n_hidden=8)" in readme  # the README's example says the same


def test_finished_fit_leaves_no_checkpoint(silent_lead_in, tmp_path):
    out = tmp_path / "model"
    assert main(["fit", str(silent_lead_in), "--out", str(out), "--hidden", "0", "--max-epochs", "2",
                 "--refine-steps", "2", "--calibration-rounds", "1", "--no-progress"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["model.json", "weights.safetensors"]


def test_interrupted_fit_cleans_up_its_checkpoint(tmp_path):
    """Ctrl-C (SIGINT) during a real fit: exit status 130, and neither checkpoint/ nor an empty
    model folder is left behind (an interrupted fit is run again, not resumed)."""
    rng = np.random.default_rng(0)
    trains = [np.sort(rng.uniform(0, 300.0, rng.poisson(r * 300.0))) for r in rng.uniform(2.0, 8.0, 12)]
    src = tmp_path / "long.npz"
    organoid_sim.save(organoid_sim.SpikeRecording.from_spike_times(trains, t_start=0.0, t_stop=300.0), src)
    out = tmp_path / "model"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "organoid_sim", "fit", str(src), "--out", str(out),
                             "--max-epochs", "200", "--refine-steps", "500", "--no-progress"],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 240
        while not (out / "checkpoint" / "checkpoint.json").exists():
            assert proc.poll() is None, proc.communicate()[1][-2000:]
            assert time.monotonic() < deadline, "no checkpoint appeared"
            time.sleep(0.2)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err[-2000:]
    assert "interrupted" in err
    assert not out.exists()


def test_failed_fit_cleans_up_its_checkpoint(silent_lead_in, tmp_path, monkeypatch):
    """A fit that fails after writing checkpoints leaves neither them nor the folder it made."""
    def failing(self, recording):
        (self.get_params()["checkpoint_dir"]).mkdir(parents=True)
        (self.get_params()["checkpoint_dir"] / "checkpoint.json").write_text("{}")
        raise RuntimeError("fit failed")

    monkeypatch.setattr(SpikingNetworkModel, "fit", failing)
    out = tmp_path / "model"
    with pytest.raises(RuntimeError, match="fit failed"):
        main(["fit", str(silent_lead_in), "--out", str(out), "--hidden", "0", *FAST])
    assert not out.exists()


def test_duration_nan_is_a_clear_error(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["simulate", "m", "--out", "x.npz", "--duration", "nan"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "--duration" in err and "finite" in err and "convert" not in err


def test_help_reads_as_text(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "``" not in out and "Command-line interface" not in out
    assert "'organoid-sim COMMAND --help' lists the options" in out


def test_reader_errors_name_the_command_options(div12_path, capsys):
    assert main(["describe", str(div12_path)]) == 2
    err = capsys.readouterr().err
    assert "--well" in err and "well=" not in err and "D1" in err


def test_fit_warnings_are_one_line(tmp_path, capsys):
    """Independent Poisson trains: the fit keeps its uncoupled null and warns; the command shows
    the warning as one line of its own, without the library's source line."""
    rng = np.random.default_rng(5)
    trains = [np.sort(rng.uniform(0, 80.0, rng.poisson(r * 80.0))) for r in rng.uniform(1.0, 4.0, 8)]
    src = tmp_path / "poisson.npz"
    organoid_sim.save(organoid_sim.SpikeRecording.from_spike_times(trains, t_start=0.0, t_stop=80.0), src)
    assert main(["fit", str(src), "--out", str(tmp_path / "m"), "--hidden", "0", *FAST]) == 0
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if "warning" in ln.lower()]
    assert lines and all(ln.startswith("organoid-sim fit: warning: ") for ln in lines)
    assert "RuntimeWarning" not in err and "warnings.warn" not in err and ".py:" not in err


def test_fit_command_defaults_are_the_api_defaults():
    from organoid_sim.cli import build_parser
    from organoid_sim.fit import FitConfig

    a = unfitted_model(build_parser().parse_args(["fit", "rec.nwb", "--out", "m"])).get_params()
    d = FitConfig()
    assert (a["max_epochs"], a["refine_steps"], a["restarts"], a["calibration_rounds"]) == (
        d.max_epochs, d.refine_steps, d.restarts, d.calibration_rounds)
    api = SpikingNetworkModel().get_params()
    assert (a["n_hidden"], a["dt_ms"]) == (api["n_hidden"], api["dt_ms"])


@pytest.mark.parametrize("extra, expected", [
    ([], dict(n_hidden=0, dt_ms=1.0, refine_steps=0)),
    (["--dt-ms", "2", "--hidden", "3"], dict(n_hidden=3, dt_ms=2.0, refine_steps=0)),
])
def test_fit_for_stimulation_is_the_apis_with_explicit_options_over_it(extra, expected):
    a = unfitted_model(build_parser().parse_args(["fit", "rec.nwb", "--out", "m", "--for-stimulation", *extra]))
    api = SpikingNetworkModel.for_stimulation(**{k: v for k, v in expected.items() if k in ("n_hidden", "dt_ms")})
    assert {k: a.get_params()[k] for k in expected} == expected
    assert {k: api.get_params()[k] for k in expected} == expected


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="needs a machine without CUDA")
def test_simulate_on_cuda_without_cuda_is_a_clear_error(tmp_path, capsys):
    """As 'fit --device cuda' does: one line naming the option, not torch's traceback."""
    from network_models import ground_truth

    model_dir = ground_truth(4).save(tmp_path / "m")
    out = tmp_path / "sim.npz"
    assert main(["simulate", str(model_dir), "--duration", "1", "--out", str(out), "--device", "cuda",
                 "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "--device cuda" in err and "Traceback" not in err and not out.exists()


def test_bad_output_path_is_refused_before_simulating(tmp_path, capsys, monkeypatch):
    """An --out that cannot be written (unknown extension, missing folder) is refused before a
    simulation of minutes runs, in the command's words (not save()'s 'format=...')."""
    from network_models import ground_truth

    model_dir = ground_truth(4).save(tmp_path / "m")
    ran = []
    monkeypatch.setattr(SpikingNetworkModel, "simulate", lambda self, *a, **k: ran.append(1))
    for out in (tmp_path / "sim.txt", tmp_path / "missing" / "sim.nwb"):
        assert main(["simulate", str(model_dir), "--duration", "1", "--out", str(out), "--no-progress"]) == 2
        err = capsys.readouterr().err
        assert str(out) in err and "format=" not in err
    protocol = tmp_path / "p.yaml"
    protocol.write_text("trains:\n  - design: {phase_us: [200, 200], amplitudes: [-1.0, 1.0]}\n    electrodes: [0]\n")
    monkeypatch.setattr("organoid_sim.stimulation.trials.run_trials", lambda *a, **k: ran.append(1))
    assert main(["stimulate", str(model_dir), "--protocol", str(protocol), "--out", str(tmp_path / "e.txt"),
                 "--no-progress"]) == 2
    assert "e.txt" in capsys.readouterr().err
    assert ran == []
