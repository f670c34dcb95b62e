"""In-sample self-check: a network that generated a recording passes the check against it, a
network fitted to that recording (recovered ground truth) passes it and stores it with the model,
and a deliberately mis-fitted network is named in one warning."""

from __future__ import annotations

import copy
import math
import warnings

import numpy as np
import pytest
import torch

from organoid_sim import load_model
from organoid_sim.fit.self_check import (IN_SAMPLE_BARS, SIM_FACTOR, describe_misses, in_sample_check, table,
                                        warn_if_missed)
from organoid_sim.models import SpikingNetworkModel

from network_models import ground_truth as _ground_truth


@pytest.fixture(scope="module")
def truth():
    gt = _ground_truth()
    rec = gt.simulate(300.0, seed=1).with_metadata(well="T1")
    return gt, rec


def _median_rate_error(model, rec, seed, factor=SIM_FACTOR):
    """Median relative rate error of a simulation of ``factor`` times the window, counted with
    NumPy (independent of compare)."""
    sim = model.simulate(factor * rec.duration, seed=seed, n_parallel=8, burn_in_s=5.0)
    ref, got = rec.spike_counts / rec.duration, sim.spike_counts / sim.duration
    return float(np.median(np.abs(got - ref) / ref))


def test_the_generating_network_passes_its_own_check(truth):
    gt, rec = truth
    check = in_sample_check(gt, rec, seed=2)
    assert check["missed"] == [] and all(check["passed"].values())
    assert check["simulated_s"] == pytest.approx(SIM_FACTOR * rec.duration)
    assert describe_misses(check) is None
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warn_if_missed(check)
    # the check's rate figure is the one counted directly from the two recordings
    assert check["figures"]["rate_median_rel_err"] == pytest.approx(_median_rate_error(gt, rec, 2), abs=1e-9)


def test_misfitted_rates_are_named_in_one_warning(truth):
    gt, rec = truth
    bad = copy.deepcopy(gt)
    with torch.no_grad():   # an escape-noise neuron's rate scales by exp(shift / delta_u): about 1/3 here
        bad.bias -= bad.delta_u * math.log(3.0)
    err = _median_rate_error(bad, rec, 2)
    assert err > 0.3    # independently counted: the rates really are off
    check = in_sample_check(bad, rec, seed=2)
    assert not check["passed"]["rate_median_rel_err"]
    with pytest.warns(RuntimeWarning, match=r"in-sample check: .*median rate error [+-]?\d+\.\d % \(bar 15 %\)") as rec_w:
        warn_if_missed(check)
    assert len(rec_w) == 1 and "\n" not in str(rec_w[0].message)
    assert "MISS" in table(check) and len(table(check).splitlines()) == len(IN_SAMPLE_BARS) + 3


def test_recovered_network_passes_and_the_check_is_saved(truth, tmp_path):
    _, rec = truth
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        m = SpikingNetworkModel(seed=0, n_hidden=0, refine_steps=0, calibration_rounds=4, progress=False).fit(rec)
    assert not [w for w in caught if "in-sample check" in str(w.message)]
    check = m.provenance["self_check"]
    assert check["missed"] == [] and check["capped_bin_fraction"] is not None
    m.save(tmp_path / "net")
    assert load_model(tmp_path / "net").provenance["self_check"] == check


def test_a_drift_in_the_window_is_told_apart_by_the_recent_figures(truth):
    """A window whose last third comes from a network 3x slower: that network misses the
    whole-window rate bar, and its figures against the last third (what it generated) are within
    it; the warning and the table give both."""
    from organoid_sim import SpikeRecording

    gt, rec = truth
    slow = copy.deepcopy(gt)
    with torch.no_grad():
        slow.bias -= slow.delta_u * math.log(3.0)
    end = slow.simulate(100.0, seed=5, t_start=200.0, n_parallel=8, burn_in_s=5.0)
    first = rec.time_slice(0.0, 200.0)
    trains = [np.concatenate([a, b]) for a, b in zip(first.spike_times, end.spike_times)]
    drift = SpikeRecording.from_spike_times(trains, t_start=0.0, t_stop=300.0, sort=True)
    check = in_sample_check(slow, drift, seed=2, recent_fraction=1 / 3)
    assert not check["passed"]["rate_median_rel_err"]
    ref = end.spike_counts / end.duration   # independent count of the last third's rates
    got = _median_rate_error(slow, end, 2)
    assert np.all(ref > 0) and got < 0.15
    assert check["recent"]["figures"]["rate_median_rel_err"] < 0.15
    assert "last 33 %, the calibration's target: median rate error" in describe_misses(check)
    assert "last 33 %" in table(check).splitlines()[0]
    assert "recent" not in in_sample_check(slow, drift, seed=2)


def test_the_check_simulates_the_asked_multiple_of_the_window(truth):
    gt, rec = truth
    short = in_sample_check(gt, rec, seed=2, sim_factor=1.0)
    assert short["simulated_s"] == pytest.approx(rec.duration)
    assert short["figures"]["rate_median_rel_err"] == pytest.approx(_median_rate_error(gt, rec, 2, 1.0), abs=1e-9)
    with pytest.raises(ValueError, match="sim_factor"):
        in_sample_check(gt, rec, sim_factor=0.0)


def test_the_check_counts_both_sides_bursts_and_their_counting_noise(truth):
    """``bursts``: the window's bursts as the detector counts them, and the exact binomial test of
    the two counts (scipy), independent of the check's code."""
    from scipy.stats import binomtest

    from organoid_sim.stats import detect_bursts

    gt, rec = truth
    check = in_sample_check(gt, rec, seed=2)
    b = check["bursts"]
    assert b["window"] == len(detect_bursts(rec)) > 0 and b["simulated"] > 0
    t_w, t_s = rec.duration, check["simulated_s"]
    p = binomtest(b["window"], b["window"] + b["simulated"], t_w / (t_w + t_s)).pvalue
    assert b["count_p"] == pytest.approx(p, rel=1e-12)
    assert f"{b['window']} in the window, {b['simulated']} simulated" in table(check)
    missed = {**check, "passed": {**check["passed"], "burst_rate_rel_err": False}, "missed": ["burst rate"]}
    assert f"differ with counting-noise p = {b['count_p']:.2g}" in describe_misses(missed)
    assert "counting-noise" not in (describe_misses({**check, "missed": ["rate"]}) or "")


@pytest.mark.parametrize("value", [0.1504, 0.15001, 0.149, -0.1504, 0.342, 0.2000001])
def test_a_missed_bar_never_prints_as_on_the_bar(value):
    """The printed figure, read back, lies on the same side of the bar as the value itself (0.1504
    printed as "+15.0 % (bar 15 %)" read as met); whole figures keep one decimal."""
    from organoid_sim.fit.self_check import IN_SAMPLE_BARS

    rate, corr = IN_SAMPLE_BARS[0], IN_SAMPLE_BARS[3]
    printed = float(rate.text(value).split()[3]) / 100
    assert (abs(printed) > rate.limit) == (abs(value) > rate.limit)
    r = 0.8 - (abs(value) - 0.15) / 10                      # r just below or above 0.80
    shown = float(corr.text(r).split()[2])
    assert (shown < corr.limit) == (r < corr.limit)
    assert IN_SAMPLE_BARS[0].text(0.342).startswith("median rate error +34.2 %")
