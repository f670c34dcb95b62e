"""Network bursts: trains with known bursts (all found, none false) and the real well D1."""

from __future__ import annotations

import numpy as np
import pytest

import organoid_sim
from organoid_sim import SpikeRecording, stats


def _known_bursts(rng, n_units=20, duration=300.0, n_bursts=30):
    """Poisson background + network bursts at known times + solo bursts of single units (not network)."""
    trains = [list(rng.uniform(0, duration, rng.poisson(0.3 * duration))) for _ in range(n_units)]
    starts = np.sort(rng.choice(np.arange(5.0, duration - 5.0, 4.0), n_bursts, replace=False))
    starts += rng.uniform(0, 1.0, n_bursts)
    for s in starts:
        for u in rng.choice(n_units, 12, replace=False):
            trains[u] += list(s + rng.uniform(0, 0.08, 3))
    solo = []
    for s in rng.uniform(5, duration - 5, 10):
        if np.min(np.abs(starts - s)) > 1.0:
            trains[int(rng.integers(n_units))] += list(s + rng.uniform(0, 0.1, 15))
            solo.append(s)
    rec = SpikeRecording.from_spike_times(trains, t_start=0.0, t_stop=duration, sort=True)
    return rec, starts, np.array(solo)


def test_known_bursts_all_found_none_false(rng):
    rec, starts, solo = _known_bursts(rng)
    b = stats.detect_bursts(rec)
    assert len(solo) > 0
    assert len(b) == len(starts)
    # each true burst (from s to s + 80 ms) matches one detection; a background spike within the
    # ISI_N window (max_isi_n) of the burst may extend it, nothing more
    slack = b.params["max_isi_n"]
    assert np.all((b.start >= starts - slack) & (b.start <= starts + 0.08))
    assert np.all((b.stop >= starts) & (b.stop <= starts + 0.08 + slack))
    assert np.all(b.n_units >= 10)
    st = stats.burst_statistics(rec, b)
    assert st["n_bursts"] == len(starts)
    assert st["burst_rate_hz"] == pytest.approx(len(starts) / rec.duration)
    assert st["mean_ibi_s"] == pytest.approx(np.mean(np.diff(b.start)))
    spikes_in = sum(np.sum((st_ >= a) & (st_ <= z)) for st_ in rec.spike_times for a, z in zip(b.start, b.stop))
    assert st["fraction_spikes_in_bursts"] == pytest.approx(spikes_in / rec.n_spikes)


def test_poisson_only_has_no_bursts(rng):
    trains = [np.sort(rng.uniform(0, 200, rng.poisson(400))) for _ in range(30)]
    rec = SpikeRecording.from_spike_times(trains, t_start=0.0, t_stop=200.0)
    assert len(stats.detect_bursts(rec)) == 0
    s = stats.burst_statistics(rec)
    assert s["n_bursts"] == 0 and "cv_ibi" in s["undefined"]


def test_onset_order_follows_known_sequence():
    # every burst: unit 3 fires first, then 1, 0, 2 (10 ms apart, 4 spikes each)
    lag = {3: 0.0, 1: 0.01, 0: 0.02, 2: 0.03}
    trains = [np.concatenate([s + lag[u] + np.arange(4) * 0.002 for s in (1.0, 3.0, 5.0)]) for u in range(4)]
    rec = SpikeRecording.from_spike_times(trains, t_start=0.0, t_stop=7.0, sort=True)
    b = stats.detect_bursts(rec, n_spikes=5, max_isi_n=0.05)
    assert len(b) == 3
    np.testing.assert_array_equal(b.onset_order, np.tile([2, 1, 3, 0], (3, 1)))
    np.testing.assert_allclose(stats.burst_statistics(rec, b)["mean_onset_rank"], [2, 1, 3, 0])


def test_population_rate_matches_histogram(rng):
    trains = [np.sort(rng.uniform(0, 10, 50)) for _ in range(5)]
    rec = SpikeRecording.from_spike_times(trains, t_start=0.0, t_stop=10.0)
    t, r = stats.population_rate(rec, bin_ms=100.0)
    counts, _ = np.histogram(np.concatenate(trains), bins=np.linspace(0, 10, 101))
    np.testing.assert_allclose(r, counts / 0.1)
    np.testing.assert_allclose(t, np.linspace(0, 9.9, 100))


def test_d1_obvious_bursts_are_found(div12_path):
    rec = organoid_sim.load(div12_path, well="D1")
    b = stats.detect_bursts(rec)
    # "Obvious" network bursts: 20 ms windows in which at least half of the 16 channels fire.
    edges = np.arange(rec.t_start, rec.t_stop, 0.02)
    active = np.zeros(len(edges) - 1, int)
    for st in rec.spike_times:
        active += np.histogram(st, edges)[0] > 0
    obvious = edges[:-1][active >= 8] + 0.01
    assert len(obvious) > 100
    inside = np.any((obvious[:, None] >= b.start[None, :] - 0.01) & (obvious[:, None] <= b.stop[None, :] + 0.01), axis=1)
    assert inside.all(), obvious[~inside][:5]
    # no false ones: detected bursts are network events, i.e. hold a 20 ms bin with >= 4 of the 16
    # channels active (chance level at D1's rates is ~0.6 % per bin); a few long, merged bursts may
    # have their busiest bin just below that.
    event = edges[:-1][active >= 4] + 0.01
    has_event = np.array([np.any((event >= a - 0.01) & (event <= z + 0.01)) for a, z in zip(b.start, b.stop)])
    assert has_event.mean() >= 0.99
    assert np.all(b.n_units >= 4)
    s = stats.burst_statistics(rec, b)
    assert 0.5 < s["fraction_spikes_in_bursts"] < 0.95
    assert 10 < s["burst_rate_per_min"] < 120
