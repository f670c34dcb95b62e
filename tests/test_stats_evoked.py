"""Evoked responses: PSTH against a brute-force histogram, probabilities and latencies on known data."""

from __future__ import annotations

import numpy as np
import pytest

from organoid_sim import SpikeRecording, StimEvents, stats


@pytest.fixture
def stim_rec(rng):
    """Pulses on electrodes 5 and 9 (two amplitudes); unit 0 answers electrode 5 on known pulses at
    known latencies, unit 1 answers electrode 9 only at the high amplitude; every pulse also causes an
    artefact spike 2 ms after it on every unit (must be excluded by the 10 ms window start)."""
    times = np.arange(1.0, 61.0, 0.5)                       # 120 pulses, 0.5 s apart
    electrode = np.where(np.arange(120) % 2 == 0, 5, 9)
    amplitude = np.where(np.arange(120) % 4 < 2, 10.0, 20.0)
    stim = StimEvents.from_columns(times, electrode, amplitude, 200.0, 2)
    truth = {"resp0": (electrode == 5) & (rng.random(120) < 0.7), "lat0": rng.uniform(0.015, 0.05, 120),
             "resp1": (electrode == 9) & (amplitude == 20.0)}
    u0 = list(times + 0.002) + list((times + truth["lat0"])[truth["resp0"]])
    u1 = list(times + 0.002) + list((times + 0.031)[truth["resp1"]])
    u2 = list(times + 0.002) + list(rng.uniform(0, 62, 50))
    rec = SpikeRecording.from_spike_times([u0, u1, u2], t_start=0.0, t_stop=62.0, sort=True, unit_ids=[10, 11, 12],
                                          stim=stim)
    return rec, truth


def test_response_probability_and_latency(stim_rec):
    rec, truth = stim_rec
    ev = stats.evoked_responses(rec)
    np.testing.assert_array_equal(ev.electrodes, [5, 9])
    np.testing.assert_array_equal(ev.unit_ids, [10, 11, 12])
    np.testing.assert_array_equal(ev.n_events, [60, 60])
    on5 = rec.stim.electrode == 5
    assert ev.response_probability[0, 0] == pytest.approx(truth["resp0"][on5].mean())
    assert ev.response_probability[1, 0] == 0.0 and np.isnan(ev.median_latency_s[1, 0])
    assert ev.median_latency_s[0, 0] == pytest.approx(np.median(truth["lat0"][truth["resp0"]]))
    assert ev.response_probability[1, 1] == pytest.approx(0.5)
    assert ev.median_latency_s[1, 1] == pytest.approx(0.031)
    # the artefact at 2 ms is outside the default 10-200 ms window; with a 0-200 ms window every
    # unit responds to every pulse
    assert stats.evoked_responses(rec, window=(0.0, 0.2)).response_probability.min() == 1.0


def test_grouped_by_amplitude(stim_rec):
    rec, _ = stim_rec
    ev = stats.evoked_responses(rec, by_amplitude=True)
    np.testing.assert_array_equal(ev.electrodes, [5, 5, 9, 9])
    np.testing.assert_array_equal(ev.amplitudes, [10.0, 20.0, 10.0, 20.0])
    np.testing.assert_array_equal(ev.response_probability[:, 1], [0, 0, 0, 1])
    assert "electrode 9 @ 20 uA" in str(ev)
    assert ev.to_dict()["amplitude_unit"] == "uA"


def test_pulses_whose_window_was_not_recorded_are_left_out(stim_rec):
    """Cut the recording 50 ms after the last pulse: with a 10-200 ms window its response was never
    recorded, so the pulse must not count as unanswered; a window ending exactly at t_stop counts."""
    rec, truth = stim_rec
    last = rec.stim.time[-1]
    cut = rec.time_slice(rec.t_start, last + 0.05)
    with pytest.warns(RuntimeWarning, match="1 of 120 events left out"):
        ev = stats.evoked_responses(cut)
    assert ev.n_events.tolist() == [60, 59]                  # the last pulse was on electrode 9
    kept = rec.stim.electrode[:-1] == 9
    expected = (truth["resp1"][:-1][kept]).mean()             # by hand, over the pulses with a recorded window
    assert ev.response_probability[1, 1] == pytest.approx(expected)
    with pytest.warns(RuntimeWarning, match="1 of 120 events left out"):
        p = stats.psth(cut, cut.stim.time, window=(-0.05, 0.2), bin_ms=5.0)
    full = stats.psth(rec, rec.stim.time[:-1], window=(-0.05, 0.2), bin_ms=5.0)   # the same 119 events, all recorded
    assert p.n_events == 119 and np.array_equal(p.counts, full.counts)
    exact = rec.time_slice(rec.t_start, last + 0.2)
    assert stats.evoked_responses(exact).n_events.tolist() == [60, 60]   # no warning: the window fits
    with pytest.raises(ValueError, match="no event's window"):
        stats.evoked_responses(rec.time_slice(rec.t_start, rec.stim.time[0] + 0.05))


def test_no_stimulation_is_a_clear_error():
    rec = SpikeRecording.from_spike_times([[0.1, 0.2]], t_start=0, t_stop=1)
    with pytest.raises(ValueError, match="no stimulation events"):
        stats.evoked_responses(rec)


def test_psth_matches_bruteforce_histogram(stim_rec):
    rec, _ = stim_rec
    window, bin_ms = (-0.05, 0.2), 5.0
    p = stats.psth(rec, rec.stim.time, window=window, bin_ms=bin_ms)
    edges = np.linspace(window[0], window[1], 51)
    for u, st in enumerate(rec.spike_times):
        rel = (st[None, :] - rec.stim.time[:, None]).ravel()
        expected, _ = np.histogram(rel[(rel >= window[0]) & (rel < window[1])], bins=edges)
        np.testing.assert_array_equal(p.counts[:, u], expected)
    np.testing.assert_allclose(p.bin_edges_s, edges, atol=1e-12)
    assert p.n_events == 120
    np.testing.assert_allclose(p.rate_hz, p.counts / (120 * 0.005))


def test_evoked_agreement_against_scipy_and_by_hand():
    from scipy import stats as sps

    rng = np.random.default_rng(4)
    p_ref, p_pred = rng.random((6, 5)), rng.random((6, 5))
    l_ref, l_pred = rng.uniform(0.002, 0.05, (6, 5)), rng.uniform(0.002, 0.05, (6, 5))
    l_pred[0, :] = np.nan                                           # the prediction never responds there
    out = stats.evoked_agreement(p_ref, l_ref, p_pred, l_pred, reliable_p=0.3)
    assert out["response_probability_r"] == pytest.approx(sps.pearsonr(p_ref.ravel(), p_pred.ravel())[0], abs=1e-4)
    reliable = p_ref >= 0.3
    both = reliable & np.isfinite(l_pred)
    assert out["n_latency_pairs"] == both.sum() and out["n_pairs"] == 30
    assert out["latency_median_abs_err_ms"] == pytest.approx(np.median(np.abs(l_pred - l_ref)[both]) * 1e3, abs=1e-3)
    assert out["latency_coverage"] == pytest.approx(both.sum() / reliable.sum(), abs=1e-3)
    with pytest.raises(ValueError, match="shapes differ"):
        stats.evoked_agreement(p_ref, l_ref, p_pred[:3], l_pred)
