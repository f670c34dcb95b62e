"""describe / compare on the real well D1 and on surrogates with known differences."""

from __future__ import annotations

import json
from contextlib import nullcontext

import numpy as np
import pytest

import organoid_sim
from organoid_sim import SpikeRecording, stats

KEYS = ("rate_r", "rate_median_rel_err", "burst_rate_rel_err", "burst_duration_rel_err", "corr_matrix_r",
        "sttc_matrix_r")


def test_describe_d1_values_and_text(d1, d1_desc):
    s = d1_desc.scalars
    assert s["n_units"] == 16 and s["n_spikes"] == 39399
    assert s["mean_rate_hz"] == pytest.approx(39399 / d1.duration / 16)
    off = ~np.eye(16, dtype=bool)
    assert s["mean_sttc"] == pytest.approx(np.mean(stats.sttc(d1, 0.01, rtol=0)[off]))
    assert s["mean_corr"] == pytest.approx(np.mean(stats.correlation_matrix(d1, 10.0)[off]))
    assert s["n_bursts"] == len(stats.detect_bursts(d1)) > 100
    text = str(d1_desc)
    for label in ("mean rate per unit (Hz)", "network bursts", "avalanche size exponent", "mean pairwise STTC"):
        assert label in text
    d = json.loads(json.dumps(d1_desc.to_dict(full=True)))
    assert d["info"]["well"] == "D1" and len(d["per_unit"]["cv_isi"]) == 16 and len(d["sttc"]) == 16


def test_describe_flags_units_with_too_few_spikes(rng):
    trains = [np.sort(rng.uniform(0, 100, 300)) for _ in range(4)] + [np.array([5.0, 50.0])]
    rec = SpikeRecording.from_spike_times(trains, t_start=0.0, t_stop=100.0, unit_ids=["a", "b", "c", "d", "quiet"])
    desc = stats.describe(rec)
    assert desc.skipped["per-unit statistics"] == ["quiet"]
    assert np.isnan(desc.per_unit["cv_isi"][4]) and np.isfinite(desc.per_unit["cv_isi"][:4]).all()
    assert "quiet" in str(desc) and np.isfinite(desc.scalars["mean_sttc"])
    with pytest.warns(stats.InsufficientSpikesWarning, match="quiet"):
        stats.cv_isi(rec, min_spikes=10)


def test_compare_identical_is_perfect(d1_desc):
    c = stats.compare(d1_desc, d1_desc)
    for k in KEYS:
        assert k in c.summary
    assert c.summary["rate_r"] == pytest.approx(1.0) and c.summary["sttc_matrix_r"] == pytest.approx(1.0)
    assert c.summary["rate_median_rel_err"] == 0.0 and c.summary["burst_rate_rel_err"] == 0.0
    assert c.summary["isi_ks"] == 0.0
    assert "REPRODUCES" in c.verdict


def test_compare_held_out_quarter_with_other_origin(d1):
    # same units, different duration and time origin: the last quarter moved to start at 0 s
    head, tail = d1.split(0.75)
    tail0 = tail.shifted(-tail.t_start)
    c = stats.compare(tail0, head)
    assert c.summary["rate_r"] > 0.95 and abs(c.summary["burst_rate_rel_err"]) < 0.3
    assert c.summary["corr_matrix_r"] > 0.8 and c.summary["sttc_matrix_r"] > 0.8
    # moving the origin changes nothing
    c2 = stats.compare(tail, head)
    for k in KEYS:
        assert c.summary[k] == pytest.approx(c2.summary[k], rel=1e-9, abs=1e-12)
    assert "REPRODUCES" in c.verdict
    json.dumps(c.to_dict())
    assert "verdict" in str(c)


def test_compare_detects_a_poisson_surrogate(d1, d1_desc, rng):
    # same units and rates, no correlations and no bursts: compare must say it differs
    trains = [np.sort(rng.uniform(d1.t_start, d1.t_stop, n)) for n in d1.spike_counts]
    poisson = SpikeRecording.from_spike_times(trains, t_start=d1.t_start, t_stop=d1.t_stop, unit_ids=d1.unit_ids)
    c = stats.compare(d1_desc, poisson)
    assert c.summary["rate_r"] > 0.99
    assert c.summary["burst_rate_rel_err"] < -0.9
    assert c.summary["sttc_matrix_r"] < 0.5 or c.summary["isi_ks"] > 0.2
    assert "DIFFERS" in c.verdict


def test_compare_different_units_is_noted(d1_desc, d1):
    other = stats.describe(d1.select_units(index=np.arange(8)))
    c = stats.compare(d1_desc, other)
    assert np.isnan(c.summary["rate_r"]) and any("unit counts differ" in n for n in c.notes)


def test_compare_two_wells_matches_units_by_order(div12_path, d1_desc):
    d2 = organoid_sim.load(div12_path, well="D2")
    c = stats.compare(d1_desc, d2)
    assert any("matched by their order" in n for n in c.notes)
    r = np.corrcoef(d1_desc.per_unit["rate_hz"], d2.firing_rates())[0, 1]
    assert c.summary["rate_r"] == pytest.approx(r)


def test_compare_recordings_without_bursts(rng):
    trains = [np.sort(rng.uniform(0, 100, 200)) for _ in range(6)]
    rec = SpikeRecording.from_spike_times(trains, t_start=0.0, t_stop=100.0)
    c = stats.compare(rec, rec.shifted(50.0))
    assert c.summary["burst_rate_rel_err"] == 0.0 and "burst_duration_rel_err" not in c.checks
    assert "REPRODUCES" in c.verdict and any("no network bursts" in n or "neither" in n for n in c.notes)


@pytest.mark.parametrize("trains", [[], [[], []], [np.linspace(0.5, 9.5, 50)], [[0.1, 0.2], [0.15]]])
def test_degenerate_recordings_are_described_not_crashed(trains):
    rec = SpikeRecording.from_spike_times(trains, t_start=0.0, t_stop=10.0)
    with pytest.warns(stats.InsufficientSpikesWarning) if rec.n_units and rec.n_spikes < 3 else nullcontext():
        stats.cv_isi(rec)
    c = stats.compare(rec, rec)
    assert "DIFFERS" not in c.verdict and any("not assessable" in n for n in c.notes)
    # strict JSON, as the CLI writes it (no NaN): the description's params included
    json.dumps(c.to_dict(), allow_nan=False)
    json.dumps(c.reference.to_dict(full=True), allow_nan=False)


def test_silent_candidate_differs(d1_desc, d1):
    silent = SpikeRecording.from_spike_times([[] for _ in range(16)], t_start=0.0, t_stop=100.0, unit_ids=d1.unit_ids)
    c = stats.compare(d1_desc, silent)
    assert "DIFFERS" in c.verdict and c.summary["rate_median_rel_err"] == 1.0


def test_compare_describes_the_candidate_with_the_reference_descriptions_parameters(rng):
    # a Description made with non-default bins/windows against its own recording is an identity: the
    # candidate must be described with the same corr bin, STTC window, Fano bin and min_spikes
    base = np.sort(rng.uniform(0, 60, 300))
    trains = [np.clip(np.concatenate([base[rng.random(300) < 0.6] + rng.uniform(0, 0.03), rng.uniform(0, 60, 100)]),
                      0, 60) for _ in range(5)]
    rec = SpikeRecording.from_spike_times(trains, t_start=0.0, t_stop=60.0, sort=True)
    params = dict(sttc_dt=0.05, corr_bin_ms=50.0, fano_bin_ms=500.0, min_spikes=5)
    c = stats.compare(stats.describe(rec, **params), rec)
    np.testing.assert_array_equal(c.candidate.sttc, stats.sttc(rec, 0.05, rtol=0.0))
    np.testing.assert_array_equal(c.candidate.corr, stats.correlation_matrix(rec, 50.0))
    for key in ("corr_matrix_rmse", "sttc_matrix_rmse", "fano_rmse", "mean_corr_rel_err", "mean_sttc_rel_err"):
        assert c.summary[key] == 0.0, key
