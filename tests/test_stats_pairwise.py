"""Functional connectivity with jitter surrogates on trains with a known coupling."""

from __future__ import annotations

import numpy as np

from organoid_sim import SpikeRecording, stats


def test_jitter_keeps_counts_and_window(rng):
    rec = SpikeRecording.from_spike_times([np.sort(rng.uniform(0, 10, 100)), np.sort(rng.uniform(0, 10, 30))],
                                          t_start=0.0, t_stop=10.0, unit_ids=["a", "b"])
    j = stats.jitter(rec, jitter_ms=20.0, seed=1)
    np.testing.assert_array_equal(j.spike_counts, rec.spike_counts)
    assert j.t_start == 0.0 and j.t_stop == 10.0 and list(j.unit_ids) == ["a", "b"]
    assert np.max(np.abs(np.sort(j.times) - np.sort(rec.times))) < 0.5  # moved, but only locally
    assert stats.jitter(rec, 20.0, seed=1) == j                           # same seed, same surrogate


def test_functional_connectivity_finds_the_coupled_pair(rng):
    a = np.sort(rng.uniform(0, 200, 600))
    b = np.sort(np.concatenate([a[rng.random(600) < 0.5] + 0.003, rng.uniform(0, 200, 200)]))  # driven by a
    c = np.sort(rng.uniform(0, 200, 500))                                                       # independent
    rec = SpikeRecording.from_spike_times([a, b, c], t_start=0.0, t_stop=200.3)
    fc = stats.functional_connectivity(rec, dt=0.005, n_surrogates=40, jitter_ms=50.0, alpha=0.05, progress=False)
    assert fc["significant"][0, 1] and fc["significant"][1, 0]
    assert not fc["significant"][0, 2] and not fc["significant"][1, 2]
    assert fc["p_value"][0, 1] == 1 / 41                      # no surrogate reaches the real coupling
    assert fc["value"][0, 1] > fc["surrogate_mean"][0, 1] + 0.1
