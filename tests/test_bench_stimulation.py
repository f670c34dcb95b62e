"""The stimulation benchmark's model-free lookup baseline and split of the truth's pulses."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from organoid_sim import Electrodes, SpikeRecording, StimEvents

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from bench_stimulation import attainable_r, lookup_prediction  # noqa: E402
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
