"""The stimulation benchmark's model-free lookup baseline and split of the truth's pulses."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from organoid_sim import Electrodes, SpikeRecording, StimEvents

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from bench_stimulation import (  # noqa: E402
    additive_lookup_prediction, attainable_r, electrode_agnostic_prediction, lookup_prediction)
from stim_cultures import split_pulses  # noqa: E402

WINDOW = (0.002, 0.050)


def _session():
    """3 channels on a line (0, 200, 400 um); electrode 0 and 2 pulsed at 1 and 3 uA, 4 pulses each.
    Channel c answers a pulse on electrode e (10 ms later) on the first k of its 4 pulses, k known."""
    el = Electrodes([0, 1, 2], [0.0, 200.0, 400.0], [0.0, 0.0, 0.0])
    answers = {(0, 1.0): [4, 2, 0], (0, 3.0): [4, 4, 2], (2, 1.0): [0, 2, 4], (2, 3.0): [2, 4, 4]}
    t, e, a, trains = 1.0, [], [], [[], [], []]
    times = []
    for (elec, amp), k in answers.items():
        for rep in range(4):
            times.append(t), e.append(elec), a.append(-amp)
            for c in range(3):
                if rep < k[c]:
                    trains[c].append(t + 0.010 + 0.001 * c)
            t += 0.5
    stim = StimEvents.from_columns(times, e, a, 200.0, 2)
    rec = SpikeRecording.from_spike_times([np.array(x) for x in trains], t_start=0, t_stop=t + 1,
                                          electrode_ids=el.ids, electrodes=el, stim=stim)
    return rec, answers


def test_lookup_interpolates_in_amplitude_on_a_stimulated_electrode():
    rec, answers = _session()
    p, lat = lookup_prediction(rec, WINDOW, np.array([0, 0, 0]), np.array([1.0, 2.0, 5.0]))
    want = np.array(answers[(0, 1.0)]) / 4, np.array(answers[(0, 3.0)]) / 4
    np.testing.assert_allclose(p[0], want[0])
    np.testing.assert_allclose(p[1], [np.interp(2.0, [1, 3], [x, y]) for x, y in zip(*want)])
    np.testing.assert_allclose(p[2], want[1])                     # clamped beyond the largest amplitude
    np.testing.assert_allclose(lat[0, :2], [0.010, 0.011], atol=1e-9)
    assert np.isnan(lat[0, 2])                                    # channel 2 never answered at 1 uA


def test_lookup_translates_the_stimulated_maps_onto_an_unstimulated_electrode():
    rec, answers = _session()
    p, _ = lookup_prediction(rec, WINDOW, np.array([1]), np.array([1.0]))
    # channel 1 sits on electrode 1: offset 0 = channel 0 for electrode 0, channel 2 for electrode 2
    assert p[0, 1] == pytest.approx((answers[(0, 1.0)][0] + answers[(2, 1.0)][2]) / 8)
    # channel 0 is 200 um left of electrode 1: channel 1 seen from electrode 2 (electrode 0 has nothing left)
    assert p[0, 0] == pytest.approx(answers[(2, 1.0)][1] / 4)


def test_split_pulses_alternates_within_each_condition():
    stim = StimEvents.from_columns(np.arange(8.0), [0, 0, 1, 0, 1, 0, 1, 1], -1.0, 200.0, 2)
    a, b = split_pulses(stim)
    assert a.time.tolist() == [0.0, 2.0, 3.0, 6.0] and b.time.tolist() == [1.0, 4.0, 5.0, 7.0]


def test_attainable_r_is_what_a_perfect_prediction_reaches():
    """Binomial truths of 20 pulses per condition x channel, halves of 10: the correlation of the true
    probabilities with the whole truth matches ``attainable_r`` of the halves' correlation (Monte
    Carlo over 40 repetitions of 3,000 pairs)."""
    rng = np.random.default_rng(0)
    perfect, predicted = [], []
    for _ in range(40):
        p = rng.beta(0.6, 2.0, 3000)
        halves = rng.binomial(10, p[:, None].repeat(2, 1)) / 10
        whole = halves.mean(1)
        perfect.append(np.corrcoef(p, whole)[0, 1])
        predicted.append(attainable_r(np.corrcoef(halves[:, 0], halves[:, 1])[0, 1]))
    assert np.mean(predicted) == pytest.approx(np.mean(perfect), abs=0.005)
    assert np.isnan(attainable_r(-0.1)) and attainable_r(1.0) == pytest.approx(1.0)


def test_prediction_cache_key_follows_the_package_code(tmp_path):
    """The cached predictions' key changes when any source file of the package changes, and only then."""
    from bench_stimulation import package_digest

    (tmp_path / "sub").mkdir()
    (tmp_path / "a.py").write_text("x = 1\n")
    (tmp_path / "sub" / "b.py").write_text("y = 2\n")
    first = package_digest(tmp_path)
    assert len(first) == 10 and first == package_digest(tmp_path)
    (tmp_path / "sub" / "b.py").write_text("y = 3\n")
    assert package_digest(tmp_path) != first
    assert len(package_digest()) == 10                    # the installed package itself


def _grid_truth(condition_effect):
    """A 4 x 4 grid (100 um pitch), one channel per electrode, every electrode at 1 and 2 uA: the
    response is a known function of amplitude and distance plus a channel offset, plus (optionally)
    an offset of the stimulated electrode itself."""
    from organoid_sim.synthetic import TrueResponses

    rng = np.random.default_rng(3)
    xy = np.array([(100.0 * i, 100.0 * j) for j in range(4) for i in range(4)])
    d = np.hypot(*(xy[:, None, :] - xy[None, :, :]).transpose(2, 0, 1))          # [E, C]
    chan = rng.normal(0, 0.05, 16)
    elec = rng.normal(0, 0.08, 16) * condition_effect
    amps = np.array([1.0, 2.0])
    prob = np.stack([0.2 * a * np.exp(-d / 250.0) + np.where(d > 0, chan[None, :], 0) + elec[:, None]
                     for a in amps], 1)                                            # [E, A, C]
    lat = 0.005 + d[:, None, :] / 1e5 + np.zeros_like(prob)
    truth = TrueResponses(np.arange(16), amps, 200.0, np.arange(16), prob, lat, 20, (0.002, 0.05))
    return truth, xy, elec


def test_electrode_agnostic_prediction_recovers_a_truth_of_distance_and_channel_alone():
    truth, xy, _ = _grid_truth(condition_effect=0.0)
    e, a = np.repeat(np.arange(16), 2), np.tile([1.0, 2.0], 16)
    p, lat = electrode_agnostic_prediction(truth, xy, dict(enumerate(xy)), e, a)
    want = np.stack([truth.response_probability[i, int(x) - 1] for i, x in zip(e, a)])
    # the channel offsets are estimated from the other electrodes, whose distance means carry them
    # too: exact up to that mixing, so well within the offsets' spread
    assert np.corrcoef(p.ravel(), want.ravel())[0, 1] > 0.99
    np.testing.assert_allclose(lat, np.stack([truth.median_latency_s[i, int(x) - 1] for i, x in zip(e, a)]),
                               atol=2e-4)


def test_electrode_agnostic_prediction_cannot_see_an_electrodes_own_effect():
    truth, xy, elec = _grid_truth(condition_effect=1.0)
    e, a = np.repeat(np.arange(16), 2), np.tile([1.0, 2.0], 16)
    p, _ = electrode_agnostic_prediction(truth, xy, dict(enumerate(xy)), e, a)
    want = np.stack([truth.response_probability[i, int(x) - 1] for i, x in zip(e, a)])
    resid = want - p
    # what it misses is the stimulated electrode's own offset: constant over a condition's channels
    assert np.corrcoef(p.ravel(), want.ravel())[0, 1] < 0.95
    assert np.corrcoef(np.mean(resid, axis=1), elec[e])[0, 1] > 0.95


def test_additive_lookup_pools_the_session_by_distance_and_interpolates_in_amplitude():
    rec, answers = _session()
    p, lat = additive_lookup_prediction(rec, WINDOW, np.array([1, 1, 1]), np.array([1.0, 2.0, 3.0]))
    # by hand: electrode 1 sees channel 1 at 0 um and channels 0, 2 at 200 um; electrodes 0 and 2
    # answer at 0 um with 4/4 (1 uA) and 4/4 (3 uA), at 200 um with 2/4 and 4/4; no channel offsets
    np.testing.assert_allclose(p[0], [0.5, 1.0, 0.5])
    np.testing.assert_allclose(p[2], [1.0, 1.0, 1.0])
    np.testing.assert_allclose(p[1], [0.75, 1.0, 0.75])
    # latencies (channel c answers 10 + c ms after a pulse): 0 um pools channel 0 of electrode 0
    # and channel 2 of electrode 2 (11 ms), 200 um channel 1 of both (11 ms)
    np.testing.assert_allclose(lat[0], [0.011, 0.011, 0.011], atol=1e-9)


def test_a_culture_folder_of_any_simulator_loads_with_its_design_and_truth(tmp_path):
    """A ground truth written as a folder (culture.json + three recordings) gives the held-out
    conditions of its design and a truth whose probabilities are the held-out session's own."""
    import json

    from organoid_sim.io import save
    from stim_cultures import load_folder

    rec, answers = _session()                                   # electrodes 0, 2 at 1 and 3 uA, 4 pulses each
    save(rec, tmp_path / "spontaneous.h5")
    save(rec, tmp_path / "calibration.h5")
    save(rec, tmp_path / "heldout.h5")
    meta = {"calibration_electrodes": [0], "heldout_electrodes": [2], "calibration_amplitudes_uA": [1.0],
            "truth_amplitudes_uA": [1.0, 3.0], "heldout_amplitudes_on_calibration_electrodes_uA": [3.0],
            "phase_us": 200.0, "truth_repeats": 4, "window_s": list(WINDOW)}
    (tmp_path / "culture.json").write_text(json.dumps(meta))
    c = load_folder(tmp_path)
    assert c.name == tmp_path.name and c.window == WINDOW
    assert sorted(zip(c.held_electrodes.tolist(), c.held_amplitudes.tolist())) == [(0, 3.0), (2, 1.0), (2, 3.0)]
    for (e, a), k in answers.items():
        i, j = list(c.truth.electrodes).index(e), list(c.truth.amplitudes_ua).index(a)
        np.testing.assert_allclose(c.truth.response_probability[i, j], np.array(k) / 4)
    # the halves hold 2 of the 4 pulses each
    assert c.halves[0].n_trials == 2
    (tmp_path / "culture.json").write_text(json.dumps({k: v for k, v in meta.items() if k != "phase_us"}))
    with pytest.raises(SystemExit, match="phase_us"):
        load_folder(tmp_path)
