"""Avalanches: exponent recovered from data with a known exponent; branching ratio of known processes."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as sps

from organoid_sim import SpikeRecording, stats


@pytest.mark.parametrize("alpha", [1.5, 2.0, 2.5])
def test_power_law_exponent_recovered_from_zipf_samples(alpha):
    x = sps.zipf(alpha).rvs(5000, random_state=np.random.default_rng(int(alpha * 10)))
    fit = stats.fit_power_law(x)
    assert abs(fit.alpha - alpha) < 0.1
    assert fit.pmf(np.arange(fit.xmin, 10**6)).sum() == pytest.approx(1.0, abs=1e-3)


def _branching_recording(m: float, n_avalanches: int, seed: int, n_units: int = 60, bin_s: float = 0.004):
    """Galton-Watson avalanches (Poisson(m) offspring, one seed each) written as spikes in bins of
    ``bin_s`` s, separated by silent bins: the textbook generator of Beggs & Plenz statistics."""
    rng = np.random.default_rng(seed)
    times, units, sizes, t_bin = [], [], [], 2
    for _ in range(n_avalanches):
        n, size = 1, 0
        while n > 0 and size < 20000:
            times.append(t_bin * bin_s + rng.uniform(0.1, 0.9, n) * bin_s)
            units.append(rng.integers(0, n_units, n))
            size += n
            n = rng.poisson(m * n)
            t_bin += 1
        sizes.append(size)
        t_bin += 3  # silent gap
    rec = SpikeRecording.from_pairs(np.concatenate(times), np.concatenate(units), unit_ids=np.arange(n_units),
                                    t_start=0.0, t_stop=(t_bin + 2) * bin_s)
    return rec, np.array(sizes)


def test_critical_branching_process_size_exponent():
    rec, sizes = _branching_recording(1.0, 6000, seed=3)
    av = stats.avalanches(rec, bin_ms=4.0)
    np.testing.assert_array_equal(np.sort(av.sizes), np.sort(sizes))  # every avalanche recovered
    assert abs(av.size_fit.alpha - 1.5) < 0.1
    assert abs(av.branching_ratio - 1.0) < 0.05


@pytest.mark.parametrize("m", [0.6, 0.85])
def test_subcritical_branching_ratio(m):
    rec, _ = _branching_recording(m, 4000, seed=int(m * 100))
    av = stats.avalanches(rec, bin_ms=4.0)
    assert av.branching_ratio == pytest.approx(m, abs=0.03)


def test_avalanches_default_bin_is_mean_population_isi(rng):
    trains = [np.sort(rng.uniform(0, 50, 200)) for _ in range(5)]
    rec = SpikeRecording.from_spike_times(trains, t_start=0.0, t_stop=50.0)
    av = stats.avalanches(rec, fit=False)
    assert av.bin_s == pytest.approx(np.mean(np.diff(np.sort(np.concatenate(trains)))))
    assert av.size_fit is None and av.sizes.sum() <= rec.n_spikes
