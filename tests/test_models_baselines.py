"""PoissonModel and CoupledGLM against independent references (scipy, numpy convolution) and a
known ground-truth GLM."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats

from organoid_sim import SpikeRecording, load_model
from organoid_sim.models import CoupledGLM, PoissonModel
from organoid_sim.models.glm import raised_cosine_basis


def _poisson_recording(rates, duration, seed=0):
    rng = np.random.default_rng(seed)
    trains = [np.sort(rng.random(rng.poisson(r * duration)) * duration) for r in rates]
    xy = np.stack([np.arange(len(rates)) * 200.0, np.zeros(len(rates))], 1)
    return SpikeRecording.from_spike_times(trains, t_start=0.0, t_stop=duration, electrode_ids=np.arange(len(rates)),
                                           positions=xy)


def test_poisson_score_matches_scipy_loglikelihood():
    train = _poisson_recording([2.0, 5.0, 0.5], 200.0, seed=1)
    test = _poisson_recording([2.5, 4.0, 0.5], 100.0, seed=2).shifted(200.0)
    model = PoissonModel(dt_ms=10.0).fit(train)
    y = test.to_tensor(10.0).numpy()
    mu_model = train.firing_rates() * 0.01
    mu_null = y.mean(0)
    ll = stats.poisson.logpmf(y, mu_model).sum()
    ll0 = stats.poisson.logpmf(y, mu_null).sum()
    expected = (ll - ll0) / (y.sum() * np.log(2))
    assert model.score(test) == pytest.approx(expected, rel=1e-4)
    assert model.score(test) < 0  # the held-out MLE rate is the best constant rate


def test_poisson_simulation_rates_and_roundtrip(tmp_path):
    rec = _poisson_recording([3.0, 8.0], 100.0)
    model = PoissonModel().fit(rec)
    sim = model.simulate(2000.0, seed=4)
    # counts are Poisson(rate * T): within 4 standard deviations
    expect = rec.firing_rates() * 2000.0
    assert np.all(np.abs(sim.spike_counts - expect) < 4 * np.sqrt(expect))
    back = load_model(model.save(tmp_path / "p"))
    assert back.simulate(10.0, seed=1) == model.simulate(10.0, seed=1)


def test_raised_cosine_basis_shape_and_partition():
    B = raised_cosine_basis(6, 100, first_peak=1.0, last_peak=50.0)
    assert B.shape == (100, 6) and B.min() >= 0 and B.max() <= 1
    assert np.argmax(B[:, 0]) == 0 and abs(np.argmax(B[:, -1]) + 1 - 50) <= 1
    # neighbouring cosines overlap so that the interior sum is constant (2 with quarter-period spacing)
    peaks = np.argmax(B, axis=0)
    interior = B[peaks[1]:peaks[-2] + 1].sum(1)  # between the second and the second-last peak
    np.testing.assert_allclose(interior, 2.0, rtol=1e-3)


def test_glm_design_equals_direct_convolution():
    glm = CoupledGLM(dt_ms=5.0, history_ms=100.0, n_basis=4)
    glm._build(2)
    rng = np.random.default_rng(0)
    y = rng.poisson(0.2, size=(300, 2)).astype(np.float32)
    X = glm.design(torch.from_numpy(y)).numpy().reshape(300, 2, 4)
    basis = glm.basis.numpy()
    for j in range(2):
        for k in range(4):
            ref = np.array([sum(basis[lag - 1, k] * y[t - lag, j] for lag in range(1, glm.n_lags + 1) if t - lag >= 0)
                            for t in range(300)])
            np.testing.assert_allclose(X[:, j, k], ref, rtol=1e-4, atol=1e-4)


def _known_glm(n: int, rate_hz: float, filter_sd: float, seed: int, **kw) -> CoupledGLM:
    """A 5 ms, 100 ms-history, 4-basis GLM of ``n`` units at ``rate_hz`` baseline with random filters."""
    from organoid_sim.models.base import layout_of

    glm = CoupledGLM(dt_ms=5.0, history_ms=100.0, n_basis=4, **kw)
    glm._build(n)
    glm.layout = layout_of(_poisson_recording([1.0] * n, 10.0))
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        glm.bias.fill_(np.log(rate_hz * 0.005))
        glm.filters.copy_(torch.randn(n, n, 4, generator=g) * filter_sd)
    return glm


def test_glm_recovers_known_filters(tmp_path):
    truth = _known_glm(4, 5.0, 0.5, seed=3, l2=0.0)
    with torch.no_grad():
        truth.filters[range(4), range(4)] = -1.0  # refractory self-history keeps it stable
    rec = truth.simulate(400.0, seed=2, n_parallel=8)
    assert rec.metadata["saturated_bins"] < 0.001 * rec.n_spikes
    fitted = CoupledGLM(dt_ms=5.0, history_ms=100.0, n_basis=4, l2=1e-5, progress=False).fit(rec)
    r = np.corrcoef(truth.coupling_filters().ravel(), fitted.coupling_filters().ravel())[0, 1]
    assert r >= 0.9
    back = load_model(fitted.save(tmp_path / "glm"))
    assert back.score(rec) == pytest.approx(fitted.score(rec), abs=1e-6)


def test_glm_simulation_draws_from_the_teacher_forced_intensity():
    """Replaying the simulation's random numbers on the intensity that the (independent, FFT-based)
    teacher-forced design gives for the simulated history reproduces every count."""
    glm = _known_glm(3, 20.0, 0.4, seed=5)
    sim = glm.simulate(20.0, seed=7)
    y = sim.to_tensor(bin_ms=5.0).double()
    with torch.no_grad():
        A, c = glm.readout()
        eta = (glm.design(y.float()).double() @ A.double() + c.double()).numpy()
    rng = np.random.default_rng(7)
    cap = glm.observation.max_count
    replay = np.stack([np.minimum(rng.poisson(np.exp(np.minimum(e, np.log(cap)))[None]), cap)[0] for e in eta])
    assert sim.n_spikes > 500
    np.testing.assert_array_equal(replay, y.numpy())


def _layout(n):
    from organoid_sim.models.base import layout_of

    return layout_of(_poisson_recording([1.0] * n, 10.0))


def test_simulated_spike_times_keep_bins_and_a_dead_time():
    from organoid_sim.models.base import counts_to_recording
    from organoid_sim.tensor import to_dense

    rng = np.random.default_rng(3)
    counts = rng.poisson(0.6, size=(4000, 3)).clip(0, 4)
    rec = counts_to_recording(counts, 5.0, _layout(3), t_start=2.0, seed=1, refractory_ms=1.0)
    # every spike stays in its own bin: binning the recording again gives the counts back exactly
    assert np.array_equal(to_dense(rec, bin_ms=5.0).numpy().astype(int), counts)
    # no interval under the dead time, also across bin edges (counts <= 4 leave room for 1 ms gaps)
    for u in range(3):
        assert np.diff(rec.spike_times[u]).min() >= 1e-3 - 1e-12


def test_single_spikes_are_uniform_inside_the_shrunk_bin():
    from organoid_sim.models.base import counts_to_recording

    counts = np.zeros((20000, 1), dtype=int)
    counts[::2] = 1                                           # lone spikes, 1 per bin
    rec = counts_to_recording(counts, 5.0, _layout(1), seed=4, refractory_ms=1.0)
    offset = rec.spike_times[0] * 1000.0 - np.arange(0, 20000, 2) * 5.0
    # uniform on [g/2, dt - g/2] = [0.5, 4.5] ms (Kolmogorov-Smirnov against scipy's uniform)
    assert stats.kstest(offset, stats.uniform(loc=0.5, scale=4.0).cdf).pvalue > 1e-3


def test_crowded_bins_shrink_the_gap_to_the_bin_share():
    from organoid_sim.models.base import counts_to_recording

    counts = np.full((50, 1), 10)                            # 10 spikes per 5 ms bin: gap 5 / 11 ms
    rec = counts_to_recording(counts, 5.0, _layout(1), seed=0, refractory_ms=1.0)
    isi = np.diff(rec.spike_times[0])
    assert isi.min() >= 5e-3 / 11 - 1e-12 and rec.n_spikes == 500
    # steps as short as the dead time: lone spikes still spread over the middle half of the bin
    lone = counts_to_recording(np.ones((4000, 1), dtype=int), 1.0, _layout(1), seed=1, refractory_ms=1.0)
    offset = lone.spike_times[0] * 1000.0 - np.arange(4000)
    assert stats.kstest(offset, stats.uniform(loc=0.25, scale=0.5).cdf).pvalue > 1e-3


def test_bernoulli_glm_simulation_follows_its_spike_probability_up_to_one():
    """Without coupling each bin spikes with p = 1 - exp(-exp(bias)) (the Bernoulli observation's
    link), also above 1 - 1/e; a bin at the one-spike cap is a spike, not run-away activity."""
    glm = _known_glm(3, 1.0, 0.0, seed=0, observation="bernoulli")
    with torch.no_grad():
        glm.bias.copy_(torch.log(torch.tensor([0.05, 1.0, 3.0])))
    sim = glm.simulate(100.0, seed=1)                    # 20,000 bins of 5 ms
    p_hat = sim.to_tensor(bin_ms=5.0).double().mean(0).numpy()
    p = -np.expm1(-np.array([0.05, 1.0, 3.0]))
    assert np.all(np.abs(p_hat - p) <= 4 * np.sqrt(p * (1 - p) / 20000) + 1e-3), (p_hat, p)
    assert sim.metadata["saturated_bins"] is None


def test_scoring_units_of_another_kind_names_the_units():
    """A model fitted to integer unit ids scoring a recording with text ids: the error names both
    sets of units (it was int()'s "invalid literal for int() with base 10: 'a'")."""
    rec = _poisson_recording([2.0, 3.0], 20.0)
    model = PoissonModel().fit(rec)
    other = rec.replace(unit_ids=np.array(["a", "b"]))
    with pytest.raises(ValueError, match=r"recording has units \['a', 'b'\].*fitted to \[0, 1\]"):
        model.score(other)
    assert model.score(rec.replace(unit_ids=np.array(["0", "1"]))) == pytest.approx(0.0, abs=1e-6)
