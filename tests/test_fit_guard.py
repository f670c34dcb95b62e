"""The likelihood guard of the network fit: the held-out part of the fitting window stays held out
(refinement's likelihood anchor never sees it), its teacher-forced score matches scipy's Poisson
log-pmf, stages that cost more held-out likelihood than allowed are undone, and on data without
network structure the uncoupled null (the homogeneous Poisson MLE) is kept."""

from __future__ import annotations

import copy
import warnings
from dataclasses import replace

import numpy as np
import pytest
import torch
from scipy.stats import poisson

from organoid_sim import SpikeRecording
from organoid_sim.fit import fit_network
from organoid_sim.fit.teacher import fit_uncoupled, validation_bits
from organoid_sim.models import SpikingNetworkModel

from network_models import ground_truth


def _poisson_recording(n: int = 6, duration: float = 60.0, seed: int = 0) -> SpikeRecording:
    rng = np.random.default_rng(seed)
    rates = rng.uniform(1.0, 4.0, n)
    trains = [np.sort(rng.uniform(0, duration, rng.poisson(r * duration))) for r in rates]
    xy = np.stack([200.0 * (np.arange(n) % 4), 200.0 * (np.arange(n) // 4)], axis=1)
    return SpikeRecording.from_spike_times(trains, t_start=0.0, t_stop=duration, electrode_ids=np.arange(n),
                                           positions=xy)


def test_validation_bits_equal_scipy_poisson_on_the_last_part():
    rec = _poisson_recording()
    m = SpikingNetworkModel(n_hidden=0, seed=0)
    m.attach_recording(rec)
    counts = m.binned(rec, device=m.torch_device())
    with torch.no_grad():
        eta = m.teacher_eta(m.teacher_design(counts)).double().numpy()
    y = counts.double().numpy()
    cut = int(len(y) * 0.8)
    ll = poisson.logpmf(y[cut:], np.exp(eta[cut:])).sum()
    ll0 = poisson.logpmf(y[cut:], y[cut:].mean(0, keepdims=True)).sum()
    expected = (ll - ll0) / np.log(2) / y[cut:].sum()
    assert validation_bits(m, counts, 0.2) == pytest.approx(expected, rel=1e-4, abs=1e-5)


def test_saturated_poisson_data_term_equals_scipy():
    # the rate-capped (linked) Poisson term is the full log-likelihood, log(y!) included
    from organoid_sim.fit.teacher import data_term, network_link

    rec = _poisson_recording()
    m = SpikingNetworkModel(n_hidden=0, seed=0, max_rate_hz=20.0)
    m.attach_recording(rec)
    counts = m.binned(rec, device=m.torch_device())
    X = m.teacher_design(counts)
    with torch.no_grad():
        m.bias.add_(2.0)   # rates near the cap, so the saturation matters
        ll = float(data_term(X, counts, m.observation, network_link(m))(*m.teacher_readout()))
        eta = m.teacher_eta(X).double().numpy()
    assert ll == pytest.approx(poisson.logpmf(counts.double().numpy(), np.exp(eta)).sum(), rel=1e-5)


def test_data_term_stays_exact_when_the_parameters_move():
    # log(y!) is computed once per data term: every later evaluation must still be scipy's log-pmf
    from organoid_sim.fit.teacher import data_term, network_link

    rec = _poisson_recording(seed=3)
    m = SpikingNetworkModel(n_hidden=0, seed=0, max_rate_hz=20.0)
    m.attach_recording(rec)
    counts = m.binned(rec, device=m.torch_device())
    X = m.teacher_design(counts)
    ll_fn = data_term(X, counts, m.observation, network_link(m))
    for shift in (0.0, 1.5, -0.7):
        with torch.no_grad():
            m.bias.add_(shift)
            ll = float(ll_fn(*m.teacher_readout()))
            eta = m.teacher_eta(X).double().numpy()
        assert ll == pytest.approx(poisson.logpmf(counts.double().numpy(), np.exp(eta)).sum(), rel=1e-5)


@pytest.mark.parametrize("max_loss", [0.0, None])
def test_guard_undoes_stages_that_cost_held_out_likelihood(max_loss):
    rec = ground_truth(n=6).simulate(60.0, seed=1)
    m = SpikingNetworkModel(n_hidden=2, seed=0)
    # a large refinement step size: refinement loses the likelihood stage 1 found
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit_network(m, rec, max_epochs=3, refine_steps=4, refine_batch=2, refine_window_s=0.5, calibration_rounds=1,
                    refine_options={"lr": 0.3}, max_likelihood_loss=max_loss, progress=False, seed=0)
    said = any("keeping the teacher-forced parameters" in str(w.message) for w in caught)
    assert said == (max_loss is not None)
    met = m.provenance["metrics"]
    counts = m.binned(rec, device=m.torch_device())
    now = validation_bits(m, counts, 0.1)
    # the final figure always describes the parameters the model keeps
    assert now == pytest.approx(met["final_val_bits"], abs=1e-6)
    if max_loss is None:
        assert not met["refinement_rejected"] and "rejected_val_bits" not in met
        assert met["final_val_bits"] < met["best_val_bits"] - 0.01      # the stages did cost likelihood
    else:  # undone: back to the teacher-forced parameters (calibrated only where that costs nothing)
        assert met["refinement_rejected"] and now >= met["best_val_bits"] - max_loss - 1e-6
        assert met["rejected_val_bits"] < met["best_val_bits"] - 0.01


@pytest.mark.parametrize("observation, max_rate", [("poisson", 300.0), ("poisson", None), ("bernoulli", 300.0)])
def test_uncoupled_null_is_the_homogeneous_maximum_likelihood_model(observation, max_rate):
    rec = _poisson_recording(seed=2)
    m = SpikingNetworkModel(n_hidden=2, seed=0, observation=observation, max_rate_hz=max_rate)
    m.attach_recording(rec)
    counts = m.observation.prepare(m.binned(rec, device=m.torch_device()))
    fit_uncoupled(m, counts, validation_fraction=0.2)
    assert torch.all(m.effective_weight()[:, :6, :6] == 0)
    with torch.no_grad():
        mu = torch.exp(m.teacher_eta(m.teacher_design(counts))).double().numpy()
    y = counts.double().numpy()[: int(len(counts) * 0.8)]
    # closed form: a constant Poisson rate's MLE is the mean count; a Bernoulli p's the spike fraction
    expected = y.mean(0) if observation == "poisson" else -np.log1p(-y.mean(0))
    np.testing.assert_allclose(mu, np.broadcast_to(expected, mu.shape), rtol=1e-4)


def test_structureless_data_keep_the_uncoupled_network():
    rec = _poisson_recording(n=16, duration=80.0, seed=3)
    train, held = rec.split(0.75)
    m = SpikingNetworkModel(n_hidden=0, seed=0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit_network(m, train, max_epochs=5, refine_steps=0, calibration_rounds=0, progress=False, seed=0)
    met = m.provenance["metrics"]
    assert met["uncoupled"] and met["coupled_val_bits"] < met["uncoupled_val_bits"]
    assert any("keeping the uncoupled network" in str(w.message) for w in caught)
    # the kept model is the homogeneous Poisson model of the fitting window (scipy's log-pmf)
    m_counts = m.binned(held, device=m.torch_device()).double().numpy()
    rate = m.binned(train, device=m.torch_device()).double().numpy().mean(0)
    ll = poisson.logpmf(m_counts, rate).sum()
    ll0 = poisson.logpmf(m_counts, m_counts.mean(0)).sum()
    assert m.score(held) == pytest.approx((ll - ll0) / np.log(2) / m_counts.sum(), abs=1e-4)


def test_an_uncoupled_culture_skips_refinement():
    rec = _poisson_recording(n=16, duration=80.0, seed=3)
    m = SpikingNetworkModel(n_hidden=0, seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit_network(m, rec.split(0.75)[0], max_epochs=5, refine_steps=3, refine_batch=2, refine_window_s=0.5,
                    calibration_rounds=0, progress=False, seed=0)
    met = m.provenance["metrics"]
    assert met["uncoupled"] and met["refine_skipped"] == "uncoupled" and "refine_s" not in met


@pytest.mark.parametrize("guarded", [True, False])
def test_guard_undoes_a_calibration_that_leaves_the_network_running_away(guarded):
    from organoid_sim.fit import FitConfig, calibrate_with_guard

    rec = ground_truth(n=6).simulate(60.0, seed=1)
    m = SpikingNetworkModel(n_hidden=0, seed=0)
    fit_network(m, rec, max_epochs=5, refine_steps=0, calibration_rounds=0, self_check=False, progress=False, seed=0)
    after_tf = {k: v.clone() for k, v in m.state_dict().items()}
    counts = m.binned(rec, device=m.torch_device())
    design = m.teacher_design(counts)
    with torch.no_grad():
        m.bias.add_(4.0)     # a "refined" network far above threshold: it runs at its rate cap
    # a likelihood tolerance nothing can exceed, and a calibration that measures but cannot move
    # the biases: only the free-running criterion can undo the run-away candidate
    cfg = FitConfig(calibration_rounds=1, calibration_options={"gain": 0.0, "unit_gain": 0.0},
                    max_likelihood_loss=1e9 if guarded else None, progress=False)
    tf = {"best_val_bits": m.provenance["metrics"]["best_val_bits"]}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        met = calibrate_with_guard(m, counts, design, tf, after_tf, 0, cfg)
    sim = m.simulate(120.0, seed=2)
    recorded = np.asarray([len(t) for t in rec.spike_times]) / rec.duration
    simulated = np.asarray([len(t) for t in sim.spike_times]) / sim.duration
    median_err = float(np.median(np.abs(simulated - recorded) / recorded))
    if guarded:
        assert met["refinement_rejected"]
        assert any("free-running rates stayed" in str(w.message) for w in caught)
        assert median_err < 1.0
    else:   # without a guard the run-away candidate stays, and it is one
        assert not met["refinement_rejected"]
        assert median_err > 1.0


def _losses(model, counts, vf, best_val, whole):
    """(held-out loss, whole-window loss) in bits/spike against stage 1, on a recomputed design."""
    design = model.teacher_design(counts)
    return best_val - validation_bits(model, counts, vf, design=design), whole - validation_bits(model, counts, 1.0,
                                                                                                design=design)


def test_guard_keeps_the_largest_part_of_a_burst_calibration_within_the_likelihood_cap():
    """The known network's own parameters, calibrated towards bursts half as frequent and twice as
    long as its own: the full move of the depression costs likelihood. Each partial candidate's
    depression lies that part of the way from the start to the burst-calibrated one (log-odds of U,
    log tau_rec), and with the cap between the full move's loss and the half move's, the guard
    keeps the half move."""
    from organoid_sim.fit import FitConfig, _calibrated_candidates, calibrate_with_guard
    from organoid_sim.fit.calibrate import BurstTarget, burst_target

    gt = ground_truth(n=8)
    rec = gt.simulate(120.0, seed=1)
    own = burst_target(rec)
    assert own is not None
    off = BurstTarget(own.rate_hz / 2, own.median_duration_s * 2, own.params, own.n_bursts, own.log_duration_sd)
    counts = gt.observation.prepare(gt.binned(rec, device=gt.torch_device()))
    design, vf = gt.teacher_design(counts), 0.1
    start = {k: v.clone() for k, v in gt.state_dict().items()}
    best_val, whole = validation_bits(gt, counts, vf, design=design), validation_bits(gt, counts, 1.0, design=design)
    cfg = FitConfig(calibration_rounds=4, calibration_options={"duration_s": 10.0, "batch": 4},
                    partial_burst_fractions=(0.5, 0.25), burst_variants=(), calibration_choice="first", progress=False)
    seen = []
    for name, fraction, cal in _calibrated_candidates(gt, counts, [("refined", start)], off, 0, cfg):
        seen.append((fraction, {k: getattr(gt, k).detach().clone() for k in ("use_logit", "log_tau_rec_ms")},
                     max(_losses(gt, counts, vf, best_val, whole)), cal))
    assert [s[0] for s in seen] == [1.0, 0.5, 0.25, 0.0]
    full = seen[0][1]
    for fraction, dep, _, cal in seen[1:3]:
        for k in dep:   # closed form: the start moved by that part of the full move
            torch.testing.assert_close(dep[k], start[k] + fraction * (full[k] - start[k]))
        assert cal["calibrated_use"] == pytest.approx(float(torch.sigmoid(dep["use_logit"]).median()))
    for k in seen[3][1]:   # rates only: the depression is the start's
        torch.testing.assert_close(seen[3][1][k], start[k])
    loss_full, loss_half = seen[0][2], seen[1][2]
    assert loss_full > loss_half + 0.01, (loss_full, loss_half)
    cap = (loss_full + loss_half) / 2
    gt.load_state_dict(start)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        met = calibrate_with_guard(gt, counts, design, {"best_val_bits": best_val}, start, 0,
                                   replace(cfg, max_likelihood_loss=cap), off)
    assert met["burst_calibration_fraction"] == 0.5 and not met["burst_calibration_rejected"]
    assert not met["refinement_rejected"]
    for k, v in seen[1][1].items():
        torch.testing.assert_close(getattr(gt, k).detach(), v)
    assert met["final_val_bits"] == pytest.approx(validation_bits(gt, counts, vf, design=gt.teacher_design(counts)))


def test_closest_choice_keeps_the_known_depression_over_a_burst_calibration_towards_a_wrong_target():
    """The known network's own parameters, its burst calibration aimed at bursts half as frequent
    and twice as long as its own recording's, and a likelihood cap nothing exceeds: ``"first"``
    keeps the accepted burst calibration; ``"closest"`` simulates every accepted candidate against
    the recording and keeps the rates-only one, whose depression is the true one. The kept
    model's discrepancy, simulated again, is the one reported for it, and the smallest."""
    from organoid_sim.fit import FitConfig, _discrepancy, calibrate_with_guard
    from organoid_sim.fit.calibrate import BurstTarget, burst_target

    gt = ground_truth(n=8)
    rec = gt.simulate(120.0, seed=1)
    own = burst_target(rec)
    off = BurstTarget(own.rate_hz / 2, own.median_duration_s * 2, own.params, own.n_bursts, own.log_duration_sd)
    counts = gt.observation.prepare(gt.binned(rec, device=gt.torch_device()))
    design = gt.teacher_design(counts)
    start = {k: v.clone() for k, v in gt.state_dict().items()}
    tf = {"best_val_bits": validation_bits(gt, counts, FitConfig.validation_fraction, design=design)}
    cfg = FitConfig(calibration_rounds=4, calibration_options={"duration_s": 10.0, "batch": 4},
                    max_likelihood_loss=1e9, burst_variants=(), progress=False)
    kept = {}
    for choice in ("first", "closest"):
        gt.load_state_dict(start)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            kept[choice] = calibrate_with_guard(gt, counts, design, tf, start, 0,
                                                replace(cfg, calibration_choice=choice), off, rec)
    assert kept["first"]["burst_calibration_fraction"] == 1.0
    met = kept["closest"]
    d = met["calibration_discrepancies"]
    assert set(d) == {"burst", "rates only"} and d["rates only"] < d["burst"]
    assert met["burst_calibration_fraction"] == 0.0 and met["burst_calibration_outvoted"]
    assert not met["burst_calibration_rejected"]
    for k in ("use_logit", "log_tau_rec_ms"):
        torch.testing.assert_close(getattr(gt, k).detach(), start[k])
    assert _discrepancy(gt, rec, 0) == pytest.approx(d["rates only"])
    # discrepancy_sim_factor: the kept candidate's figure is that of a simulation twice as long
    gt.load_state_dict(start)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        longer = calibrate_with_guard(gt, counts, design, tf, start, 0,
                                      replace(cfg, calibration_choice="closest", discrepancy_sim_factor=2.0), off, rec)
    assert longer["calibration_discrepancy"] == pytest.approx(_discrepancy(gt, rec, 0, 2.0))
    assert longer["calibration_discrepancy"] != pytest.approx(_discrepancy(gt, rec, 0))


def test_an_unknown_calibration_choice_is_refused_by_name():
    from organoid_sim.fit import FitConfig

    with pytest.raises(ValueError, match="calibration_choice.*'best'"):
        FitConfig(calibration_choice="best")
    with pytest.raises(ValueError, match="discrepancy_sim_factor"):
        FitConfig(discrepancy_sim_factor=0.0)


def test_a_burst_variant_is_the_burst_calibration_with_its_options_from_the_same_start():
    """``burst_variants``: after the configured burst calibration, one more candidate per variant,
    each the start's parameters calibrated with the variant's options (here the swapped pairing),
    as a direct :func:`calibrate_rates` call gives them; then rates only."""
    from organoid_sim.fit import FitConfig, _calibrated_candidates
    from organoid_sim.fit.calibrate import BurstTarget, burst_target, calibrate_rates

    gt = ground_truth(n=8)
    rec = gt.simulate(60.0, seed=1)
    own = burst_target(rec)
    off = BurstTarget(own.rate_hz / 2, own.median_duration_s * 2, own.params, own.n_bursts, own.log_duration_sd)
    counts = gt.observation.prepare(gt.binned(rec, device=gt.torch_device()))
    start = {k: v.clone() for k, v in gt.state_dict().items()}
    opts = {"duration_s": 10.0, "batch": 4}
    variant = {"burst_pairing": "rate-U", "burst_gain": 1.0}
    cfg = FitConfig(calibration_rounds=3, calibration_options=opts, burst_variants=(variant,), progress=False)
    seen = [(fraction, cal.get("burst_calibration_variant"), {k: v.clone() for k, v in gt.state_dict().items()})
            for _, fraction, cal in _calibrated_candidates(gt, counts, [("refined", start)], off, 0, cfg)]
    assert [(f, v) for f, v, _ in seen] == [(1.0, None), (1.0, 1), (0.0, None)]
    direct = copy.deepcopy(gt)
    direct.load_state_dict(start)
    calibrate_rates(direct, counts, rounds=3, seed=0, bursts=off, progress=False, **opts, **variant)
    for k, v in direct.state_dict().items():
        torch.testing.assert_close(seen[1][2][k], v)
    assert not torch.equal(seen[1][2]["use_logit"], seen[0][2]["use_logit"])


def test_the_bars_rule_counts_the_bars_a_candidate_misses_before_its_summed_distance():
    """``discrepancy_rule="bars"``: ``n + s / (1 + s)`` with ``n`` the in-sample bars that the very
    same simulation misses (the self-check's judgement of it) and ``s`` the summed discrepancy, so a
    candidate missing fewer bars is always the closer one."""
    from organoid_sim.fit import FitConfig, _discrepancy
    from organoid_sim.fit.config import DISCREPANCY_BURN_IN_S, DISCREPANCY_PARALLEL, DISCREPANCY_SEED_OFFSET
    from organoid_sim.fit.self_check import in_sample_check

    gt = ground_truth()
    rec = gt.simulate(120.0, seed=1)
    bad = copy.deepcopy(gt)
    with torch.no_grad():   # rates about 3x too low: the rate bar at least is missed
        bad.bias -= bad.delta_u * np.log(3.0)
    for model in (gt, bad):
        s = _discrepancy(model, rec, 0)
        check = in_sample_check(model, rec, seed=DISCREPANCY_SEED_OFFSET, sim_factor=1.0,
                                n_parallel=DISCREPANCY_PARALLEL, burn_in_s=DISCREPANCY_BURN_IN_S)
        n = sum(not ok for ok in check["passed"].values())
        assert _discrepancy(model, rec, 0, rule="bars") == pytest.approx(n + s / (1 + s))
    assert _discrepancy(bad, rec, 0, rule="bars") >= 1.0
    with pytest.raises(ValueError, match="discrepancy_rule.*'nearest'"):
        FitConfig(discrepancy_rule="nearest")
