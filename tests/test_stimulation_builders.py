"""Builders of common stimulation experiments."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from scipy import stats

from organoid_sim.stimulation import (CL1, amplitude_sweep, frequency_sweep, paired_pulse, poisson_stimulation,
                                      probe_electrodes)


def test_probe_visits_every_electrode_n_times_in_seeded_random_order():
    p = probe_electrodes([0, 5, 9], n_repeats=4, interval_s=0.25, seed=3)
    ev = p.to_events()
    assert Counter(ev.electrode.tolist()) == {0: 4, 5: 4, 9: 4}
    np.testing.assert_allclose(np.diff(ev.time), 0.25)
    assert probe_electrodes([0, 5, 9], n_repeats=4, interval_s=0.25, seed=3) == p
    assert probe_electrodes([0, 5, 9], n_repeats=4, interval_s=0.25, seed=4) != p
    CL1.validate(p)


def test_amplitude_sweep_covers_every_condition():
    p = amplitude_sweep([1, 2], [0.5, 1.0, 2.0], n_repeats=3, seed=1)
    ev = p.to_events()
    assert Counter(zip(ev.electrode.tolist(), (-ev.amplitude).tolist())) == {
        (e, a): 3 for e in (1, 2) for a in (0.5, 1.0, 2.0)}


def test_frequency_sweep_intervals_are_one_over_f():
    p = frequency_sweep([4], [10.0, 40.0], n_pulses=5, n_repeats=2, rest_s=0.5)
    trains = p.trains
    assert sorted(t.frequency_hz for t in trains) == [10.0, 10.0, 40.0, 40.0]
    for t in trains:
        np.testing.assert_allclose(np.diff(t.pulse_times), 1.0 / t.frequency_hz)
    for a, b in zip(trains[:-1], trains[1:]):
        assert b.start_s == pytest.approx(a.end_s + 0.5)
    CL1.validate(p)


def test_paired_pulse_intervals():
    p = paired_pulse([2, 3], [0.02, 0.05, 0.1], n_repeats=2)
    isis = Counter(round(float(np.diff(t.pulse_times)[0]), 9) for t in p.trains)
    assert isis == {0.02: 2, 0.05: 2, 0.1: 2}
    assert all(t.electrodes == (2, 3) for t in p.trains)


def test_poisson_stimulation_has_exponential_gaps_above_the_dead_time():
    rate, dead = 20.0, 0.01
    p = poisson_stimulation([7], rate, 300.0, refractory_s=dead, seed=0)
    ev = p.to_events()
    gaps = np.diff(ev.time)
    assert gaps.min() >= dead - 1e-9
    # shifted exponential with mean 1/rate: KS test against scipy's distribution
    res = stats.kstest(gaps - dead, "expon", args=(0, 1 / rate - dead))
    assert res.pvalue > 1e-3
    assert len(ev) / 300.0 == pytest.approx(rate, rel=0.1)
    assert p.duration_s == 300.0


def test_builders_reject_nonsense():
    with pytest.raises(ValueError):
        probe_electrodes([1], interval_s=0)
    with pytest.raises(ValueError):
        poisson_stimulation([1], rate_hz=0, duration_s=1)
    with pytest.raises(ValueError, match="n_phases"):
        probe_electrodes([1], n_phases=4)
