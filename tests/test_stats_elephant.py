"""Statistics that elephant also computes, checked against elephant on real data (well D1, DIV12)."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import quantities as pq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from elephant import statistics as est
from elephant.conversion import BinnedSpikeTrain
from elephant.spike_train_correlation import (correlation_coefficient, cross_correlation_histogram,
                                              spike_time_tiling_coefficient)

import organoid_sim
from organoid_sim import stats

logging.getLogger("elephant").setLevel(logging.ERROR)  # elephant logs every bin-edge rounding it fixes
RTOL = 1e-9


@pytest.fixture(scope="module")
def trains(d1):
    return d1.to_neo()


def _binned(trains, rec, bin_ms):
    return BinnedSpikeTrain(trains, bin_size=bin_ms * pq.ms, t_start=rec.t_start * pq.s, t_stop=rec.t_stop * pq.s)


def test_rates_cv_lv_match_elephant(d1, trains):
    rates = [float(est.mean_firing_rate(st, t_start=d1.t_start * pq.s, t_stop=d1.t_stop * pq.s).rescale("Hz"))
             for st in trains]
    np.testing.assert_allclose(stats.firing_rates(d1), rates, rtol=RTOL)
    isis = [est.isi(st).rescale("s").magnitude for st in trains]
    np.testing.assert_allclose(stats.cv_isi(d1), [est.cv(i) for i in isis], rtol=RTOL)
    np.testing.assert_allclose(stats.lv(d1), [est.lv(i) for i in isis], rtol=RTOL)
    for mine, ref in zip(stats.isi_per_unit(d1), isis):
        np.testing.assert_array_equal(mine, ref)


@pytest.mark.parametrize("bin_ms", [1000.0, 250.0])
def test_fano_factor_matches_elephant(d1, trains, bin_ms):
    expected = []
    for st in trains:
        counts = _binned(st, d1, bin_ms).to_array()[0]
        # elephant's fanofactor takes one train per window; only their spike counts matter
        expected.append(est.fanofactor([np.zeros(int(c)) for c in counts]))
    np.testing.assert_allclose(stats.fano_factor(d1, bin_ms), expected, rtol=RTOL)


@pytest.mark.parametrize("bin_ms,binary", [(10.0, False), (5.0, True)])
def test_correlation_matrix_matches_elephant(d1, trains, bin_ms, binary):
    ref = correlation_coefficient(_binned(trains, d1, bin_ms), binary=binary)
    np.testing.assert_allclose(stats.correlation_matrix(d1, bin_ms, binary=binary), ref, rtol=RTOL)


@pytest.mark.parametrize("bin_ms", [10.0, 50.0])
def test_population_coupling_is_pearson_r_with_the_other_units(d1, trains, bin_ms):
    # elephant bins the trains; numpy's corrcoef of each unit with the summed rest is the reference
    counts = _binned(trains, d1, bin_ms).to_array().astype(float).T
    rest = counts.sum(1, keepdims=True) - counts
    ref = [np.corrcoef(counts[:, i], rest[:, i])[0, 1] for i in range(counts.shape[1])]
    np.testing.assert_allclose(stats.population_coupling(d1, bin_ms), ref, rtol=RTOL)
    np.testing.assert_allclose(stats.population_coupling_of_counts(counts), ref, rtol=RTOL)


def test_population_coupling_of_a_silent_unit_is_nan():
    rec = organoid_sim.SpikeRecording.from_spike_times([[0.1, 0.5, 0.9], [0.1, 0.52, 0.7], []], t_start=0.0,
                                                       t_stop=1.0)
    pc = stats.population_coupling(rec, 100.0)
    assert np.isnan(pc[2]) and np.isfinite(pc[:2]).all()


def test_sttc_matches_elephant_on_d1(d1, trains):
    mine = stats.sttc(d1, dt=0.01)
    assert mine.shape == (16, 16)
    sub = range(0, 16, 2)  # 8 units = 36 pairs keeps the default run short; all pairs in the slow test
    for i in sub:
        for j in sub:
            if j >= i:
                ref = spike_time_tiling_coefficient(trains[i], trains[j], dt=0.01 * pq.s)
                assert mine[i, j] == pytest.approx(ref, rel=RTOL), (i, j)
                assert mine[j, i] == pytest.approx(ref, rel=RTOL), (j, i)


@pytest.mark.slow
@pytest.mark.parametrize("dt", [0.005, 0.05])
def test_sttc_all_pairs_match_elephant(d1, trains, dt):
    ref = np.array([[spike_time_tiling_coefficient(a, b, dt=dt * pq.s) for b in trains] for a in trains])
    np.testing.assert_allclose(stats.sttc(d1, dt=dt), ref, rtol=RTOL)


def test_sttc_matches_elephant_on_quantised_random_trains(rng):
    # Times on a 0.1 ms grid make |t_a - t_b| == dt exactly: the float edge cases of the window.
    trains = [np.unique(np.round(np.sort(rng.uniform(0, 20, n)), 4)) for n in (5, 80, 150, 300, 1)]
    rec = organoid_sim.SpikeRecording.from_spike_times(trains, t_start=0.0, t_stop=20.0)
    neo_trains = rec.to_neo()
    mine = stats.sttc(rec, dt=0.002)
    for i in range(5):
        for j in range(5):
            ref = spike_time_tiling_coefficient(neo_trains[i], neo_trains[j], dt=0.002 * pq.s)
            assert mine[i, j] == pytest.approx(ref, rel=RTOL), (i, j)


def test_sttc_rtol0_is_the_plain_cutts_eglen_window(d1):
    sub = d1.select_units(index=[0, 3, 5, 9]).time_slice(164.0, 464.0)
    dt = 0.01
    mine = stats.sttc(sub, dt=dt, rtol=0.0)
    st = sub.spike_times
    t_frac = stats.tiling_fraction(sub, dt)
    for i in range(4):
        for j in range(4):
            near = lambda a, b: np.mean(np.min(np.abs(a[:, None] - b[None, :]), axis=1) <= dt)  # noqa: E731
            pa, pb = near(st[j], st[i]), near(st[i], st[j])
            ta, tb = t_frac[j], t_frac[i]
            ref = 0.5 * (pa - tb) / (1 - pa * tb) + 0.5 * (pb - ta) / (1 - pb * ta)
            assert mine[i, j] == pytest.approx(ref, rel=RTOL)


def test_sttc_empty_unit_is_flagged_not_silent():
    rec = organoid_sim.SpikeRecording.from_spike_times([[0.1, 0.5, 0.9], [], [0.11, 0.52]], t_start=0, t_stop=1)
    with pytest.warns(stats.InsufficientSpikesWarning, match="1 of 3 units"):
        m = stats.sttc(rec)
    assert np.isnan(m[1]).all() and np.isfinite(m[np.ix_([0, 2], [0, 2])]).all()


@pytest.mark.parametrize("pair,bin_ms,max_lag_ms", [((1, 5), 1.0, 50.0), ((0, 9), 5.0, 100.0), ((3, 3), 2.0, 20.0)])
def test_cross_correlogram_matches_elephant(d1, trains, pair, bin_ms, max_lag_ms):
    i, j = pair
    k = int(round(max_lag_ms / bin_ms))
    ref, ref_lags = cross_correlation_histogram(_binned(trains[i], d1, bin_ms), _binned(trains[j], d1, bin_ms),
                                                window=[-k, k])
    lags, counts = stats.cross_correlogram(d1, d1.unit_ids[i], d1.unit_ids[j], bin_ms=bin_ms, max_lag_ms=max_lag_ms)
    np.testing.assert_array_equal(counts, np.asarray(ref).ravel())
    np.testing.assert_allclose(lags, ref_lags * bin_ms)


def test_merge_search_equals_numpy_searchsorted(rng):
    from organoid_sim.stats.pairwise import _count_before

    values = np.sort(np.round(rng.uniform(0, 10, 5000), 2))           # many ties
    keys = np.concatenate([np.round(rng.uniform(-1, 11, 3000), 2), values[::7]])  # unsorted, exact hits
    for side in ("left", "right"):
        np.testing.assert_array_equal(_count_before(values, keys, side), np.searchsorted(values, keys, side=side))


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**31), origin=st.sampled_from([0.0, 37.5, 2000.0]), dt=st.sampled_from([0.001, 0.004, 0.02]),
       grid=st.sampled_from([0, 3, 4]))
def test_sttc_property_matches_elephant(seed, origin, dt, grid):
    # random trains, late time origins (elephant's window grows with absolute time) and times on
    # a coarse grid (exact window-edge ties)
    r = np.random.default_rng(seed)
    n = r.integers(1, 40, 4)
    trains = [np.sort(origin + r.uniform(0, 5, k)) for k in n]
    if grid:
        trains = [np.unique(np.round(t, grid)) for t in trains]
    rec = organoid_sim.SpikeRecording.from_spike_times(trains, t_start=origin, t_stop=origin + 5.0)
    neo_trains = rec.to_neo()
    mine = stats.sttc(rec, dt=dt)
    for i in range(4):
        for j in range(i, 4):
            ref = spike_time_tiling_coefficient(neo_trains[i], neo_trains[j], dt=dt * pq.s)
            assert mine[i, j] == pytest.approx(ref, rel=RTOL, abs=1e-15), (i, j)
