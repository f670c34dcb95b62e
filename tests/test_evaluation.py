"""organoid_sim.evaluate on a recording from a known network, and the model CLI commands."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

import organoid_sim
from organoid_sim.cli import main
from organoid_sim.evaluation import FIGURES

FAST = {"max_epochs": 4, "refine_steps": 3, "refine_window_s": 0.5, "refine_batch": 2, "calibration_rounds": 1}


@pytest.fixture(scope="module")
def network_recording():
    from test_models_network import _network

    truth = _network(6, seed=2)
    return truth.simulate(120.0, seed=1, n_parallel=4).with_metadata(well="T1")


def test_evaluate_rows_and_figures(network_recording):
    rep = organoid_sim.evaluate(network_recording, split=0.75, seed=0, sim_factor=1.0, fit_options=FAST,
                                glm_options={"max_epochs": 3})
    d = rep.to_dict()
    for row in ("poisson", "glm", "network", "recording", "in_sample"):
        assert set(FIGURES) <= set(d[row])
    assert 0.0 <= d["network"]["capped_bin_fraction"] < 1.0
    assert -1.0 <= d["in_sample"]["rate_r"] <= 1.0 and d["in_sample"]["rate_median_rel_err"] >= 0
    # a Poisson fit on the first part cannot beat the held-out part's own mean rates
    assert d["poisson"]["bits_per_spike"] <= 0
    # coupled models learn the ground-truth interactions
    assert d["network"]["bits_per_spike"] > 0 and d["glm"]["bits_per_spike"] > 0
    assert math.isnan(d["recording"]["bits_per_spike"])
    assert -1.0 <= d["recording"]["rate_r"] <= 1.0
    # the network's fit figures travel with the report: its stages took part of the timed fit
    fm = d["settings"]["fit_metrics"]["network"]
    assert 0 < fm["teacher_forced_s"] <= fm["fit_s"] <= d["timings_s"]["network_fit"]
    assert fm["best_val_bits"] > 0 and isinstance(fm["refinement_rejected"], bool)
    json.loads(rep.to_json())
    assert "network" in str(rep)


def test_evaluate_keeps_and_reports_the_uncoupled_network_on_structureless_data():
    """Independent Poisson trains: the network falls back to its uncoupled null, which is the
    Poisson model of the fitting part, so both score the same held-out bits/spike."""
    rng = np.random.default_rng(5)
    trains = [np.sort(rng.uniform(0, 80.0, rng.poisson(r * 80.0))) for r in rng.uniform(1.0, 4.0, 16)]
    rec = organoid_sim.SpikeRecording.from_spike_times(trains, t_start=0.0, t_stop=80.0)
    with pytest.warns(RuntimeWarning, match="keeping the uncoupled network"):
        rep = organoid_sim.evaluate(rec, seed=0, sim_factor=1.0, models=("poisson", "network"),
                                    fit_options={**FAST, "refine_steps": 0, "calibration_rounds": 0})
    d = rep.to_dict()
    assert any("uncoupled network was kept" in note for note in d["notes"])
    assert d["network"]["bits_per_spike"] == pytest.approx(d["poisson"]["bits_per_spike"], abs=1e-5)


def test_evaluate_rejects_recording_without_held_out_spikes():
    rec = organoid_sim.SpikeRecording.from_spike_times([np.array([1.0, 2.0])], t_start=0.0, t_stop=100.0)
    with pytest.raises(ValueError, match=r"held-out part \(split=0.75: fitting 0-75 s, held out 75-100 s\)"):
        organoid_sim.evaluate(rec, trim_silence=False)


def test_cli_fit_simulate(tmp_path, network_recording, capsys):
    src = tmp_path / "rec.npz"
    organoid_sim.save(network_recording, src)
    out = tmp_path / "model"
    assert main(["fit", str(src), "--out", str(out), "--max-epochs", "3", "--refine-steps", "2",
                 "--restarts", "2", "--no-progress"]) == 0
    assert (out / "model.json").exists() and (out / "weights.safetensors").exists()
    printed = capsys.readouterr().out
    assert "in-sample bar" in printed and "correlation r" in printed   # the self-check table
    prov = organoid_sim.load_model(out).provenance
    assert set(prov["self_check"]["passed"]) == {"rate_median_rel_err", "burst_rate_rel_err",
                                                 "burst_duration_rel_err", "corr_matrix_r"}
    metrics = prov["metrics"]
    assert len(metrics["restart_discrepancies"]) == 2 and metrics["restart_chosen"] in (0, 1)
    assert main(["simulate", str(out), "--duration", "5", "--out", str(tmp_path / "sim.npz")]) == 0
    sim = organoid_sim.load(tmp_path / "sim.npz")
    assert sim.n_units == network_recording.n_units and sim.duration == pytest.approx(5.0)
    assert main(["simulate", str(tmp_path), "--duration", "5", "--out", str(tmp_path / "x.npz")]) == 2
    assert "not a saved model" in capsys.readouterr().err


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_network_fits_and_simulates_on_cuda(network_recording):
    from organoid_sim.models import SpikingNetworkModel

    m = SpikingNetworkModel(n_hidden=0, device="cuda", progress=False, **FAST).fit(network_recording)
    assert m.bias.device.type == "cuda"
    a, b = m.simulate(5.0, seed=3), m.simulate(5.0, seed=3)
    assert a == b and np.isfinite(m.score(network_recording))


def test_judge_evaluation_tells_the_cultures_own_drift_apart():
    from organoid_sim.evaluation import judge_evaluation

    steady = {"rate_r": 0.97, "rate_median_rel_err": 0.08, "burst_rate_rel_err": -0.1, "burst_duration_rel_err": 0.05,
              "corr_matrix_r": 0.9}
    drifted = {**steady, "rate_median_rel_err": 0.45, "corr_matrix_r": 0.6}   # past the 20 % and 0.7 bars
    net = {**steady, "bits_per_spike": 2.0, "rate_median_rel_err": 0.40, "corr_matrix_r": 0.65}
    out = judge_evaluation({"network": net, "glm": {"bits_per_spike": 1.0}, "recording": drifted})
    assert out["recording_held_out"] == {"rate_r": True, "rate_median_rel_err": False, "burst_rate_rel_err": True,
                                         "burst_duration_rel_err": True, "corr_matrix_r": False}
    # no worse than the culture's own drift (40 % against 45 %, r 0.65 against 0.6): met
    assert out["held_out"]["rate_median_rel_err"] and out["held_out"]["corr_matrix_r"] and out["passed"]
    out = judge_evaluation({"network": net, "glm": {"bits_per_spike": 1.0}, "recording": steady})
    assert all(out["recording_held_out"].values())
    assert not out["held_out"]["rate_median_rel_err"] and not out["held_out"]["corr_matrix_r"] and not out["passed"]


def test_judge_evaluation_reads_a_report_back_from_json():
    """``to_json`` writes undefined figures as null: the verdicts of the JSON and of the dict agree."""
    import json

    from organoid_sim.evaluation import judge_evaluation
    from organoid_sim.jsonable import finite_or_none

    row = {"rate_r": 0.97, "rate_median_rel_err": 0.08, "burst_rate_rel_err": -0.1,
           "burst_duration_rel_err": float("nan"), "corr_matrix_r": 0.9}
    for bits, glm in ((2.0, 1.0), (float("nan"), 1.0), (2.0, float("nan")), (0.5, 1.0)):
        result = {"network": {**row, "bits_per_spike": bits}, "glm": {"bits_per_spike": glm}, "recording": row,
                  "in_sample": row}
        assert judge_evaluation(json.loads(json.dumps(finite_or_none(result)))) == judge_evaluation(result)


@pytest.mark.parametrize("metrics,expected", [
    ({"burst_calibration_rejected": True, "burst_calibration_fraction": 0.0},
     "burst calibration was undone by the likelihood guard"),
    ({"burst_calibration_rejected": False, "burst_calibration_outvoted": True, "burst_calibration_fraction": 0.0},
     "a smaller move of the depression (0 % of it) simulated the fitting window more closely"),
    ({"burst_calibration_rejected": False, "burst_calibration_fraction": 0.5},
     "the likelihood guard kept 50 % of the burst calibration"),
    ({"burst_calibration_rejected": False, "burst_calibration_fraction": 1.0}, None),
])
def test_evaluate_notes_say_which_calibration_the_fit_kept(network_recording, metrics, expected):
    """The guard's decision about the burst calibration, as a fit records it in its metrics, is
    one readable note of ``evaluate`` (none when the whole calibration was kept)."""
    from organoid_sim.models import PoissonModel

    class Recorded(PoissonModel):   # a Poisson fit whose provenance carries the given guard decision
        def fit(self, recording):
            super().fit(recording)
            self.provenance["metrics"] = dict(metrics)
            return self

    notes = organoid_sim.evaluate(network_recording, seed=0, sim_factor=1.0, models={"net": Recorded()}).notes
    burst_notes = [n for n in notes if n.startswith("net:") and "burst calibration" in n]
    if expected is None:
        assert burst_notes == []
    else:
        assert len(burst_notes) == 1 and expected in burst_notes[0], notes


def _bursting(n_units: int = 8, duration_s: float = 60.0, seed: int = 0):
    """Poisson background (2 Hz) plus a network burst every 2 s (each unit 5 spikes in 60 ms)."""
    rng = np.random.default_rng(seed)
    starts = np.arange(1.0, duration_s - 1.0, 2.0)
    trains = [np.sort(np.concatenate([rng.uniform(0, duration_s, rng.poisson(2.0 * duration_s)),
                                      (starts[:, None] + rng.uniform(0, 0.06, (len(starts), 5))).ravel()]))
              for _ in range(n_units)]
    return organoid_sim.SpikeRecording.from_spike_times(trains, t_start=0.0, t_stop=duration_s)


@pytest.mark.parametrize("candidate_bursts", [False, True])
def test_judge_evaluation_in_sample_agrees_with_the_self_checks_own_verdict(candidate_bursts):
    """The ``in_sample`` row holds the self-check's figures; judging them again must give the
    self-check's verdict (:func:`~organoid_sim.fit.self_check.judge_comparison`), including its
    rule that the burst bars are met when neither the window nor the simulation bursts (there the
    burst-duration error is undefined)."""
    from organoid_sim.evaluation import judge_evaluation
    from organoid_sim.fit.self_check import judge_comparison
    from organoid_sim.stats import compare

    rng = np.random.default_rng(3)
    window = organoid_sim.SpikeRecording.from_spike_times(
        [np.sort(rng.uniform(0, 60.0, rng.poisson(60))) for _ in range(8)], t_start=0.0, t_stop=60.0)
    sim = _bursting() if candidate_bursts else organoid_sim.SpikeRecording.from_spike_times(
        [np.sort(rng.uniform(0, 60.0, rng.poisson(60))) for _ in range(8)], t_start=0.0, t_stop=60.0)
    figures, passed = judge_comparison(compare(window, sim))
    assert passed["burst_rate_rel_err"] is (not candidate_bursts)   # the reference verdict
    out = judge_evaluation({"network": {"bits_per_spike": 1.0}, "in_sample": {"bits_per_spike": 1.0, **figures}})
    assert out["in_sample"] == passed
    assert out["in_sample_passed"] is all(passed.values())
