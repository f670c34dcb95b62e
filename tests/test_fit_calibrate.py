"""Rate calibration of the fitted network: biases put off per unit are brought back so each unit's
free-running rate meets its target (rates counted independently with NumPy)."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from organoid_sim.fit.calibrate import calibrate_rates

from network_models import ground_truth as _ground_truth


def _rates(model, seconds, seed):
    sim = model.simulate(seconds, seed=seed, n_parallel=8, burn_in_s=5.0)
    return sim.spike_counts / sim.duration


def test_calibration_restores_per_unit_rates_of_a_known_network():
    gt = _ground_truth()
    rec = gt.simulate(300.0, seed=1)
    counts = gt._binned(rec)
    target = rec.spike_counts / rec.duration
    bad = copy.deepcopy(gt)
    sign = torch.tensor([1.0, -1.0] * (bad.n_neurons // 2))
    with torch.no_grad():   # every other unit 3x too fast, the others 3x too slow (if isolated)
        bad.bias += bad.delta_u * sign * np.log(3.0)
    before = np.median(np.abs(_rates(bad, 300.0, 7) - target) / target)
    out = calibrate_rates(bad, counts.float(), duration_s=30.0, seed=0, progress=False)
    print(before, out)
    after = np.median(np.abs(_rates(bad, 300.0, 7) - target) / target)
    assert before > 0.2 and after < 0.1 and after < before / 3
    assert len(out["calibration_rounds_err"]) == 12


def _burst_figures(model, seconds, seed, params):
    """(bursts per s, median burst duration s) of a simulation, with the recording's detector."""
    from organoid_sim.stats import detect_bursts

    sim = model.simulate(seconds, seed=seed, n_parallel=8, burn_in_s=5.0)
    b = detect_bursts(sim, **params)
    return len(b) / sim.duration, float(np.median(b.duration)) if len(b) else float("nan")


def test_burst_calibration_restores_burst_rate_and_duration_of_a_known_network():
    """The known network's depression put off (U-odds e^2 times smaller: bursts ~45 % too long): the
    burst calibration brings burst rate and median duration back to the recording's, and the
    rates stay calibrated."""
    from organoid_sim.fit.calibrate import burst_target

    gt = _ground_truth()
    rec = gt.simulate(300.0, seed=1)
    target = burst_target(rec)
    assert target is not None
    bad = copy.deepcopy(gt)
    with torch.no_grad():
        bad.use_logit -= 2.0

    def errors(m):
        rate, dur = _burst_figures(m, 300.0, 7, target.params)
        return abs(rate / target.rate_hz - 1.0), abs(dur / target.median_duration_s - 1.0)

    before = errors(bad)
    # this network ends its bursts mostly by adaptation: U moves them little, so more rounds and gain
    out = calibrate_rates(bad, gt._binned(rec).float(), rounds=20, duration_s=30.0, seed=0, bursts=target,
                          burst_gain=1.0, progress=False)
    after = errors(bad)
    print(target, before, after, out["calibrated_use"], out["calibrated_tau_rec_ms"])
    assert max(before) > 0.3
    assert after[0] < 0.2 and after[1] < 0.2
    rates = _rates(bad, 300.0, 7)
    ref = rec.spike_counts / rec.duration
    assert np.median(np.abs(rates - ref) / ref) < 0.15


def test_recent_rates_are_the_rates_of_the_window_end():
    """``recent_rates`` against spikes counted by NumPy in the last part of a recording whose
    units change rate halfway."""
    from organoid_sim import SpikeRecording
    from organoid_sim.fit.calibrate import recent_rates

    rng = np.random.default_rng(3)
    trains = [np.sort(np.concatenate([rng.uniform(0, 50, rng.poisson(50 * r0)), rng.uniform(50, 100, rng.poisson(50 * r1))]))
              for r0, r1 in ((2.0, 6.0), (5.0, 1.0), (3.0, 3.0))]
    rec = SpikeRecording.from_spike_times(trains, t_start=0.0, t_stop=100.0)
    counts = rec.to_tensor(bin_ms=5.0).float()
    for frac in (1.0, 0.5, 0.25):
        cut = 100.0 * (1.0 - frac)
        expected = [np.sum(t >= cut) / (100.0 - cut) for t in trains]
        np.testing.assert_allclose(recent_rates(counts, 5.0, frac), expected, rtol=1e-6)
    with pytest.raises(ValueError, match="recent_fraction"):
        recent_rates(counts, 5.0, 0.0)


def test_burst_target_of_the_window_end_counts_its_own_bursts():
    """Known network bursts, 5 short ones (40 ms) in the first half and 15 long ones (120 ms) in
    the second: the recent target has the second half's rate and duration, the whole-window
    target both halves', and a recent part with too few bursts falls back to the whole window."""
    from organoid_sim import SpikeRecording
    from organoid_sim.fit.calibrate import MIN_TARGET_BURSTS, burst_target

    rng = np.random.default_rng(4)
    n_units, duration = 16, 200.0
    trains = [list(rng.uniform(0, duration, rng.poisson(0.2 * duration))) for _ in range(n_units)]
    starts = np.concatenate([np.linspace(10, 90, 5), np.linspace(105, 195, 15)])
    lengths = np.where(starts < 100, 0.04, 0.12)
    for s, d in zip(starts, lengths):
        for u in range(n_units):
            trains[u] += list(s + np.linspace(0.0, d, 6))
    rec = SpikeRecording.from_spike_times(trains, t_start=0.0, t_stop=duration, sort=True)
    whole, recent = burst_target(rec), burst_target(rec, recent_fraction=0.5)
    assert whole.n_bursts == 20 and whole.rate_hz == pytest.approx(20 / duration)
    assert recent.n_bursts == 15 and recent.rate_hz == pytest.approx(15 / 100.0)
    # a background spike within the detector's ISI_N window may lengthen a burst, nothing more
    assert 0.12 <= recent.median_duration_s <= 0.12 + recent.params["max_isi_n"]
    assert whole.params == recent.params          # one detector for both
    # the last 5 % (10 s) hold fewer than MIN_TARGET_BURSTS bursts: the whole window's target
    assert np.sum(starts >= 190.0) < MIN_TARGET_BURSTS
    assert burst_target(rec, recent_fraction=0.05) == whole


def test_burst_errors_are_the_raw_log_ratios_without_shrinkage_and_smaller_with_it():
    """``burst_shrink=0``: the calibration steps on the plain log ratios of burst rate and median
    duration (simulated / recorded, counted here from the same simulation); with shrinkage each
    moves towards 0 by its standard error, never past it."""
    from organoid_sim.fit.calibrate import _burst_errors, burst_target
    from organoid_sim.stats import detect_bursts

    gt = _ground_truth()
    target = burst_target(gt.simulate(300.0, seed=1))
    bad = copy.deepcopy(gt)
    with torch.no_grad():
        bad.use_logit -= 1.0          # longer bursts than the target's
    sim = bad.simulate(30.0 * 4, seed=5, n_parallel=4, burn_in_s=2.0)
    b = detect_bursts(sim, **target.params)
    half = 0.5 / sim.duration
    raw_rate = np.log((len(b) / sim.duration + half) / (target.rate_hz + half))
    raw_dur = np.log(np.median(b.duration) / target.median_duration_s)
    _, _, rate0, dur0 = _burst_errors(bad, target, 30.0, 4, 5, shrink=0.0)
    _, _, rate1, dur1 = _burst_errors(bad, target, 30.0, 4, 5, shrink=1.0)
    assert rate0 == pytest.approx(raw_rate, abs=1e-12) and dur0 == pytest.approx(raw_dur, abs=1e-12)
    assert dur0 > 0.1
    for shrunk, raw in ((rate1, raw_rate), (dur1, raw_dur)):
        assert abs(shrunk) < abs(raw) or raw == 0.0
        assert shrunk * raw >= 0.0


@pytest.mark.parametrize("pairing,log_rate,log_dur", [("duration-U", 0.2, -0.1), ("rate-U", 0.2, -0.1),
                                                      ("duration-U", -0.3, 2.0), ("rate-U", 3.0, 0.05)])
def test_depression_step_pairs_each_burst_error_with_its_documented_parameter(pairing, log_rate, log_dur):
    """One burst step from known log errors: ``"duration-U"`` moves logit ``U`` by ``gain * log_dur``
    and log ``tau_rec`` by ``gain * log_rate``; ``"rate-U"`` moves logit ``U`` by ``-gain * log_rate``
    and log ``tau_rec`` by ``gain * log_dur``; each step clipped to ``MAX_BURST_STEP``."""
    from organoid_sim.fit.calibrate import MAX_BURST_STEP, _move_depression

    model, gain = _ground_truth(), 0.4
    u0, r0 = model.use_logit.detach().clone(), model.log_tau_rec_ms.detach().clone()
    _move_depression(model, log_rate, log_dur, gain, pairing)
    du, dr = (gain * log_dur, gain * log_rate) if pairing == "duration-U" else (-gain * log_rate, gain * log_dur)
    du, dr = (min(max(x, -MAX_BURST_STEP), MAX_BURST_STEP) for x in (du, dr))
    assert torch.allclose(model.use_logit.detach() - u0, torch.full_like(u0, du), atol=1e-6)
    assert torch.allclose(model.log_tau_rec_ms.detach() - r0, torch.full_like(r0, dr), atol=1e-6)


def test_an_unknown_burst_pairing_is_refused_by_name():
    with pytest.raises(ValueError, match="burst_pairing.*'U-rate'"):
        calibrate_rates(_ground_truth(), torch.zeros(100, 6), rounds=1, burst_pairing="U-rate", progress=False)


def test_round_duration_holds_the_asked_number_of_bursts_within_its_bounds():
    from organoid_sim.fit.calibrate import BurstTarget, round_duration

    rare = BurstTarget(rate_hz=0.05, median_duration_s=1.0, params={})      # 3 bursts per minute
    # 8 trajectories x 100 s at 0.05 Hz hold 40 bursts
    assert round_duration(60.0, 8, rare, 40, 180.0) == pytest.approx(100.0)
    assert round_duration(60.0, 8, rare, 40, 90.0) == pytest.approx(90.0)           # capped
    assert round_duration(60.0, 8, BurstTarget(1.0, 1.0, {}), 40, 180.0) == 60.0    # never shortened
    assert round_duration(60.0, 8, None, 40, 180.0) == 60.0 and round_duration(60.0, 8, rare, 0, 180.0) == 60.0


def test_a_rates_only_calibration_with_a_burst_target_only_lengthens_its_rounds():
    """``burst_gain=0`` with a target and ``min_bursts_per_round``: the same calibration as without a
    target over the lengthened rounds (the depression stays, the biases are bit for bit the same)."""
    from organoid_sim.fit.calibrate import BurstTarget, round_duration

    gt = _ground_truth()
    rec = gt.simulate(60.0, seed=1)
    counts = gt._binned(rec).float()
    target = BurstTarget(rate_hz=0.5, median_duration_s=0.2, params={})
    a, b = copy.deepcopy(gt), copy.deepcopy(gt)
    calibrate_rates(a, counts, rounds=2, duration_s=2.0, batch=2, seed=0, progress=False, bursts=target,
                    burst_gain=0.0, min_bursts_per_round=4, max_duration_s=10.0)
    long_s = round_duration(2.0, 2, target, 4, 10.0)
    assert long_s == pytest.approx(4.0)
    calibrate_rates(b, counts, rounds=2, duration_s=long_s, batch=2, seed=0, progress=False)
    torch.testing.assert_close(a.bias, b.bias, rtol=0, atol=0)
    torch.testing.assert_close(a.use_logit, gt.use_logit, rtol=0, atol=0)


def test_keep_the_best_round_keeps_that_rounds_depression_with_its_biases(monkeypatch):
    """``average_from=None`` keeps the round whose measured rate error was smallest: the model must
    end with the parameters that round measured, biases and (with a burst target) ``U`` and
    ``tau_rec`` alike, so the reported error belongs to them (recorded here at each measurement)."""
    from organoid_sim.fit import calibrate as cal

    gt = _ground_truth()
    nr = gt.n_recorded
    counts = torch.ones(400, nr)                         # 400 Hz per unit at 2.5 ms
    errs_by_round = iter([0.5, 0.05, 0.3, 0.4])          # round 1 measures the smallest error
    measured = []

    def fake_errors(model, target, duration_s, batch, seed, shrink=1.0):
        measured.append({k: getattr(model, k).detach().clone() for k in ("bias", "use_logit", "log_tau_rec_ms")})
        rates = np.full(model.n_neurons, 400.0 * (1.0 + next(errs_by_round)))
        return rates, 0, 0.3, -0.2                        # bursts too frequent and too short: depression moves

    monkeypatch.setattr(cal, "_burst_errors", fake_errors)
    target = cal.BurstTarget(rate_hz=0.5, median_duration_s=0.2, params={}, n_bursts=20)
    out = calibrate_rates(gt, counts, rounds=4, seed=0, bursts=target, average_from=None, progress=False)
    assert out["calibration_median_rel_err"] == pytest.approx(0.05)
    for k, v in measured[1].items():
        torch.testing.assert_close(getattr(gt, k).detach(), v, rtol=0, atol=0, msg=k)
