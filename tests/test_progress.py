"""Long work shows a progress bar (tqdm, on stderr): simulate (CLI and API), evaluate, convert.

The thresholds are lowered for the tests (monkeypatch), so short runs stand in for long ones; the
rule under test is that work above the threshold shows a bar and work below it, or with
``--no-progress``, does not."""

from __future__ import annotations

import numpy as np
import pytest
import test_stimulation_model as _shared

import organoid_sim
from organoid_sim.cli import build_parser, main
from organoid_sim.io import _util
from organoid_sim.models import network


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("model") / "m"
    _shared.small_fitted_model().save(d)
    return d


def test_simulate_shows_a_bar_for_long_runs(model_dir, tmp_path, capsys, monkeypatch):
    out = tmp_path / "s.npz"
    assert main(["simulate", str(model_dir), "--duration", "2", "--out", str(out)]) == 0
    assert "simulate" not in capsys.readouterr().err  # 8,000 neuron-steps: short, no bar
    monkeypatch.setattr(network, "PROGRESS_NEURON_STEPS", 1000)
    assert main(["simulate", str(model_dir), "--duration", "2", "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert "simulate" in err and "1.00k/1.00k" in err  # 2 s at 2 ms: 1000 steps, all counted
    assert main(["simulate", str(model_dir), "--duration", "2", "--out", str(out), "--no-progress"]) == 0
    assert "simulate" not in capsys.readouterr().err


def test_api_simulate_shows_a_bar_only_for_long_runs(capsys, monkeypatch):
    m = _shared.small_fitted_model()
    m.simulate(1.0, seed=0)
    assert "simulate" not in capsys.readouterr().err
    monkeypatch.setattr(network, "PROGRESS_NEURON_STEPS", 100)
    m.simulate(1.0, seed=0)
    assert "simulate" in capsys.readouterr().err
    m.simulate(1.0, seed=0, progress=False)
    assert "simulate" not in capsys.readouterr().err


def test_evaluate_shows_its_stages(capsys):
    rng = np.random.default_rng(2)
    rec = organoid_sim.SpikeRecording.from_spike_times(
        [np.sort(rng.uniform(0, 60.0, rng.poisson(r * 60.0))) for r in (2.0, 3.0, 4.0)], t_start=0.0, t_stop=60.0)
    organoid_sim.evaluate(rec, models=("poisson", "glm"), sim_factor=1.0, glm_options={"max_epochs": 2},
                          progress=True)
    err = capsys.readouterr().err
    assert "evaluate" in err and "4/4" in err and "simulate GLM" in err
    args = build_parser().parse_args(["evaluate", "x.npz"])
    assert args.no_progress is False  # the command shows them unless --no-progress


def test_convert_shows_a_bar_for_large_files(tmp_path, capsys, monkeypatch):
    rng = np.random.default_rng(0)
    rec = organoid_sim.SpikeRecording.from_spike_times([np.sort(rng.uniform(0, 100, 2500)) for _ in range(2)],
                                                       t_start=0.0, t_stop=100.0)
    organoid_sim.save(rec, tmp_path / "in.npz")
    assert main(["convert", str(tmp_path / "in.npz"), str(tmp_path / "a.csv")]) == 0
    assert "writing" not in capsys.readouterr().err  # 5,000 spikes: below the 4 M threshold
    monkeypatch.setattr(_util, "CHUNK_VALUES", 1000)  # "large" is now anything above 1,000 spikes
    assert main(["convert", str(tmp_path / "in.npz"), str(tmp_path / "b.csv")]) == 0
    assert "writing b.csv" in capsys.readouterr().err
    assert main(["convert", str(tmp_path / "b.csv"), str(tmp_path / "c.nwb")]) == 0
    assert "reading b.csv" in capsys.readouterr().err
    assert organoid_sim.load(tmp_path / "c.nwb") == organoid_sim.load(tmp_path / "a.csv")
    assert main(["convert", str(tmp_path / "in.npz"), str(tmp_path / "d.csv"), "--no-progress"]) == 0
    assert "writing" not in capsys.readouterr().err


def test_a_fit_without_progress_shows_no_bar_from_its_own_simulations(capsys, monkeypatch):
    """The fit's stages simulate (rate calibration, self-check); with ``progress=False`` none of
    those simulations may draw a bar, however long they are."""
    monkeypatch.setattr(network, "PROGRESS_NEURON_STEPS", 100)     # every simulation counts as long
    rng = np.random.default_rng(3)
    rec = organoid_sim.SpikeRecording.from_spike_times(
        [np.sort(rng.uniform(0, 20.0, rng.integers(40, 80))) for _ in range(4)], t_start=0.0, t_stop=20.0)
    model = network.SpikingNetworkModel(n_hidden=0, dt_ms=2.0, max_epochs=2, refine_steps=0, calibration_rounds=1,
                                        progress=False, fit_seed=0).fit(rec)
    assert model.provenance["self_check"]["simulated_s"] > 0       # the self-check did simulate
    assert "simulate" not in capsys.readouterr().err
