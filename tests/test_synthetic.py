"""The ground-truth virtual organoid: reproducibility, recording model, stimulation physics, samples."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from scipy import stats as sps

import organoid_sim
from organoid_sim.events import StimEvents
from organoid_sim.synthetic import (OrganoidConfig, RecordingConfig, RecordingModel, VirtualOrganoid,
                                    calibration_events, grid_electrodes, load_true_responses, write_data_samples)
from organoid_sim.synthetic.samples import checkerboard

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "data_samples"


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def small():
    return VirtualOrganoid(OrganoidConfig.small(), seed=3)


@pytest.fixture(scope="module")
def small_spont(small):
    return small.spontaneous(6.0, seed=1, progress=False)


def test_grid_layout_matches_meshgrid():
    el = grid_electrodes(8, 8, 200.0)
    yy, xx = np.meshgrid(np.arange(8) * 200.0, np.arange(8) * 200.0, indexing="ij")
    np.testing.assert_array_equal(el.ids, np.arange(64))
    np.testing.assert_array_equal(el.x, xx.ravel())
    np.testing.assert_array_equal(el.y, yy.ravel())
    board = checkerboard(el.ids, 8, 8)
    assert len(board) == 32 and not set(board) & set(checkerboard(el.ids, 8, 8, parity=1))


def test_same_seed_same_recording_other_seed_differs(small, small_spont):
    again = VirtualOrganoid(OrganoidConfig.small(), seed=3).spontaneous(6.0, seed=1, progress=False)
    assert again == small_spont
    other = small.spontaneous(6.0, seed=2, progress=False)
    assert other != small_spont
    assert small_spont.n_units == 9 and small_spont.n_spikes > 50
    np.testing.assert_array_equal(small_spont.electrode_ids, small.electrodes.ids)


def test_detection_probability_matches_closed_form():
    cfg = RecordingConfig(p_max=0.8, detect_radius_um=40.0, dead_time_ms=0.0)
    xy = np.array([[0.0, 0.0], [30.0, 0.0], [0.0, 60.0], [500.0, 500.0]])
    model = RecordingModel(cfg, xy, np.array([[0.0, 0.0]]))
    rng = np.random.default_rng(0)
    n = 4000
    neurons = np.repeat(np.arange(4), n)
    times = np.arange(len(neurons)) * 1e-2                  # far apart: no dead-time merging
    t, row = model.detect(times, neurons, rng)
    detected = np.bincount(neurons[np.searchsorted(times, t)], minlength=4)
    d = np.hypot(*xy.T)
    expect = 0.8 * np.exp(-0.5 * (d / 40.0) ** 2)
    for k in range(3):
        assert sps.binomtest(int(detected[k]), n, expect[k]).pvalue > 1e-3
    assert detected[3] == 0                                  # beyond min_probability: never seen
    assert np.all(np.diff(expect[:3]) < 0)


def test_blanking_and_dead_time(small):
    ev = calibration_events(small.electrodes.ids, amplitudes_ua=(2.5,), n_repeats=1, interval_s=0.4, seed=0)
    rec = small.stimulate(ev, seed=5, progress=False)
    blank = small.config.recording.blank_ms * 1e-3
    idx = np.searchsorted(ev.time, rec.times, side="right") - 1
    since = rec.times[idx >= 0] - ev.time[idx[idx >= 0]]
    assert since.size and since.min() >= blank
    dead = small.config.recording.dead_time_ms * 1e-3
    for st in rec.spike_times:
        assert len(st) < 2 or np.diff(st).min() >= dead
    assert rec.stim == ev


def test_activation_grows_with_charge_falls_with_distance(small):
    phys = small.physics
    row = 4                                                  # the centre electrode of the 3x3 grid
    charges = np.linspace(0.05, 0.6, 8)
    p = np.stack([phys.activation_probability(row, q) for q in charges])
    assert np.all(np.diff(p, axis=0) >= 0) and p[-1].sum() > p[0].sum()
    d = np.linalg.norm(small.network.xy_um - small.electrodes.positions[row], axis=1)
    near, far = d < 50, d > 400
    assert p[-1][near].mean() > 0.5 > p[-1][far].mean()


def test_true_responses_have_direct_and_network_components(small):
    tr = small.true_responses(electrodes=[4], amplitudes_ua=(0.3, 2.5), n_trials=12, seed=0, progress=False)
    own = list(tr.unit_ids).index(4)
    # the stimulated electrode's own channel answers more at the higher charge, within a few ms
    assert tr.response_probability[0, 1, own] > tr.response_probability[0, 0, own]
    assert tr.response_probability[0, 1, own] >= 0.5
    assert 0.002 <= tr.median_latency_s[0, 1, own] <= 0.008
    again = small.true_responses(electrodes=[4], amplitudes_ua=(0.3, 2.5), n_trials=12, seed=0, progress=False)
    np.testing.assert_array_equal(again.response_probability, tr.response_probability)


def test_spontaneous_statistics_low_rates_with_bursts(small_spont):
    rates = small_spont.firing_rates()
    assert 0.2 < np.median(rates) < 20.0


def test_write_data_samples_round_trip(tmp_path):
    cfg = OrganoidConfig.small(n_neurons=200, rows=2, cols=2)
    paths = write_data_samples(tmp_path, seed=1, spontaneous_s=3.0, n_repeats=1, n_trials=2, config=cfg,
                               progress=False)
    spont = organoid_sim.load(paths["spontaneous"])
    assert spont.n_units == 4 and spont.duration == pytest.approx(3.0)
    session = organoid_sim.load(paths["stim_session"])
    assert len(session.stim) == 2 * 2 and set(session.stim.electrode) == {0, 3}
    truth = load_true_responses(paths["true_responses"])
    assert truth.response_probability.shape == (4, 4, 4)
    assert np.all((truth.response_probability >= 0) & (truth.response_probability <= 1))


def test_bad_true_responses_file_names_it(tmp_path):
    bad = tmp_path / "x.json"
    bad.write_text("{}")
    with pytest.raises(ValueError, match="x.json"):
        load_true_responses(bad)


def test_unknown_electrode_refused(small):
    with pytest.raises(ValueError, match="electrodes \\[77\\]"):
        small.stimulate(StimEvents.from_columns([0.1], 77, -1.0, 200.0, 2), duration_s=0.5, progress=False)


@pytest.mark.skipif(not (SAMPLES / "true_responses.json").exists(), reason="data_samples not generated")
def test_bundled_samples_are_consistent():
    meta = json.loads((SAMPLES / "true_responses.json").read_text())
    truth = load_true_responses(SAMPLES / "true_responses.json")
    session = organoid_sim.load(SAMPLES / "stim_session.nwb")
    assert set(session.stim.electrode) == set(meta["calibration_electrodes"])
    assert truth.response_probability.shape == (64, 4, 64)
    spont = organoid_sim.load(SAMPLES / "spontaneous.nwb")
    assert spont.n_units == 64 and spont.duration >= 240


@pytest.mark.slow
def test_full_organoid_bursts_like_real_cultures():
    from organoid_sim import stats

    rec = VirtualOrganoid(seed=0).spontaneous(60.0, seed=1, progress=False)
    s = stats.describe(rec).to_dict()["scalars"]
    # DIV12 cortical cultures (../shared/data/real): bursts every ~1-10 s, a few Hz per channel
    assert 5 <= s["burst_rate_per_min"] <= 60
    assert s["fraction_spikes_in_bursts"] > 0.3
    assert 0.5 < s["mean_rate_hz"] < 10


def test_direct_spikes_never_precede_their_latency(small):
    """Pulses fall anywhere inside a step; delays round up so no direct spike comes early."""
    cfg = small.physics.config
    dt_ms = small.config.network.dt_ms
    ev = StimEvents.from_columns(np.full(20, 0.1), 4, -3.0, 200.0, 2)
    onset = np.linspace(0, dt_ms * 0.99, 20)
    draws = small.physics.draw(ev, np.random.default_rng(0), dt_ms, onset)
    for (hit, delay), on in zip(draws, onset):
        assert len(hit) > 0
        assert np.all(delay * dt_ms - on >= cfg.base_latency_ms - 1e-9)
        assert np.all(delay * dt_ms - on < cfg.base_latency_ms + cfg.axon_length_um / cfg.conduction_um_per_ms
                      + 6 * cfg.latency_jitter_ms + dt_ms)
