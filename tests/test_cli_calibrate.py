"""``organoid-sim calibrate``: the API's calibration from the shell, its check printed and saved."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import organoid_sim
from organoid_sim.cli import main
from organoid_sim.models import SpikingNetworkModel
from organoid_sim.nn.stim_coupling import StimulusCoupling
from organoid_sim.stimulation import calibrate
from organoid_sim.synthetic import calibration_events, grid_electrodes

#: a coupling the session is made with, stronger and slower than the prior
TRUE = dict(gain=6.0, q50_nc=0.15, length_um=150.0, tau_ms=4.0)
ARGS = ["--window", "0.002", "0.05", "--trials", "8", "--evaluations", "12", "--seed", "1", "--no-progress"]

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A saved 16-unit model with the prior coupling and an NWB session made with ``TRUE``."""
    tmp = tmp_path_factory.mktemp("calibrate_cli")
    el = grid_electrodes(4, 4)
    rng = np.random.default_rng(0)
    rec = organoid_sim.SpikeRecording.from_spike_times([np.sort(rng.uniform(0, 30, 60)) for _ in range(16)],
                                                       t_start=0, t_stop=30, electrode_ids=el.ids, electrodes=el)
    model = SpikingNetworkModel(n_hidden=0, dt_ms=2.0, max_epochs=2, refine_steps=0, calibration_rounds=0,
                                progress=False)
    with warnings.catch_warnings():          # uniform spikes: no coupling kept, in-sample bars missed
        warnings.simplefilter("ignore", RuntimeWarning)
        model.fit(rec)
    model.save(tmp / "model")
    model.stim_coupling = StimulusCoupling.from_prior(model.neuron_xy_um.numpy(), el, **TRUE)
    ev = calibration_events(el.ids, amplitudes_ua=(0.5, 1.5), n_repeats=6, interval_s=0.25, jitter_s=0.05, seed=1)
    organoid_sim.save(model.stimulate(ev, seed=3), tmp / "session.nwb")
    organoid_sim.save(rec, tmp / "spontaneous.nwb")
    return tmp


def test_calibrate_saves_what_the_api_gives_and_prints_the_check(files, capsys):
    out = files / "calibrated"
    assert main(["calibrate", str(files / "model"), str(files / "session.nwb"), "--out", str(out), *ARGS]) == 0
    printed = capsys.readouterr().out
    cli = organoid_sim.load_model(out)
    api = organoid_sim.load_model(files / "model")
    result = calibrate(api, organoid_sim.load(files / "session.nwb"), n_trials=8, window=(0.002, 0.05),
                       max_evaluations=12, seed=1, progress=False)
    assert cli.stim_coupling.values() == pytest.approx(api.stim_coupling.values(), rel=1e-6)
    check = cli.provenance["evoked_check"]
    assert check == result.check
    assert {"prior", "calibrated", "latency_change", "kept"} <= set(check)
    assert "response-probability r" in printed and f"kept: {check['kept']}" in printed
    assert f"{check['calibrated']['response_probability_r']:.3f}" in printed
    first = printed.splitlines()[0]                         # the first line says which coupling was saved
    assert ("the prior coupling kept" in first) == result.kept_prior and ("coupling fitted" in first) != result.kept_prior
    assert f"fit loss {result.loss_before:.4f} -> {result.loss_after:.4f}" in first      # the loss of what was saved
    # every pulse of the session's window is either fitted or held out for the check
    n = len(organoid_sim.load(files / "session.nwb").stim)
    n_check = check["n_check_pulses"]
    assert f"calibration on {n} pulses" in first and f"({n - n_check} fitted, {n_check} held out" in first
    # the model was fitted at 2 ms: the last line says the fit advised for stimulation differs
    assert printed.splitlines()[-1].startswith("note: this model was fitted with dt_ms=2; ")


def test_calibrate_repeats_averages_like_the_api_and_says_so(files, capsys):
    out = files / "calibrated_twice"
    args = ["calibrate", str(files / "model"), str(files / "session.nwb"), "--out", str(out), "--repeats", "2", *ARGS]
    assert main(args) == 0
    printed = capsys.readouterr().out
    api = organoid_sim.load_model(files / "model")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        result = calibrate(api, organoid_sim.load(files / "session.nwb"), n_trials=8, window=(0.002, 0.05),
                           max_evaluations=12, seed=1, progress=False, repeats=2)
    cli = organoid_sim.load_model(out)
    assert cli.stim_coupling.values() == pytest.approx(api.stim_coupling.values(), rel=1e-6)
    assert cli.provenance["evoked_check"] == result.check and len(result.check["runs"]) == 2
    assert "the mean of 2 calibrations (seeds 1, 101;" in printed


@pytest.mark.parametrize("case", ["no_pulses", "window", "not_a_model"])
def test_calibrate_refuses_bad_input_in_one_line(files, case, capsys, tmp_path):
    model, session, extra = str(files / "model"), str(files / "session.nwb"), []
    if case == "no_pulses":
        session = str(files / "spontaneous.nwb")
    elif case == "window":
        extra = ["--window", "0.05", "0.01"]
    else:
        model = str(tmp_path)
    assert main(["calibrate", model, session, "--out", str(tmp_path / "out"), *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert {"no_pulses": "spontaneous.nwb", "window": "--window", "not_a_model": "model.json"}[case] in err
    assert not (tmp_path / "out").exists()


def test_check_table_says_when_the_prior_is_kept():
    """The table reads a check as calibrate records it: the prior kept, the latency change's sign in words."""
    from organoid_sim.stimulation.calibrate import check_table

    side = {"response_probability_r": 0.5, "latency_median_abs_err_ms": 4.0, "probability_mean_abs_err": 0.1}
    check = {"check_electrodes": [1, 2], "n_check_pulses": 16, "prior": side,
             "calibrated": {**side, "response_probability_r": 0.4}, "kept": "prior", "pair_gains": "none",
             "timing": None, "latency_change": {"n_pairs": 9, "mean_difference_ms": 1.5, "se_ms": 0.5,
                                                "median_error_change_ms": 1.0}}
    text = check_table(check)
    assert "the prior is kept" in text and "1.50 ms (SE 0.50) further from" in text
    assert "0.400" in text and "0.500" in text
    assert "closer to" in check_table({**check, "latency_change": {**check["latency_change"],
                                                                   "mean_difference_ms": -1.5}})
    assert "electrode by electrode" not in text                   # a check of 2 electrodes has no paired test
    paired = check_table({**check, "change": {"n_electrodes": 6, "loss_change": 0.012, "loss_se": 0.004,
                                              "r_change": -0.05, "r_se": 0.03, "t_threshold": 2.015}})
    assert "electrode by electrode: loss +0.0120 (SE 0.0040), r -0.050 (SE 0.030)" in paired and "2.02 SE" in paired
    assert check_table(None).startswith("no held-out check")


def test_the_cli_and_the_benchmark_use_calibrates_defaults():
    """One default: the shell command, the API and the stimulation benchmark calibrate with the same
    trials per condition and evaluation budget (the benchmark's figures are those of the defaults)."""
    import inspect
    import sys
    from pathlib import Path

    from organoid_sim.cli import build_parser

    api = {k: v.default for k, v in inspect.signature(calibrate).parameters.items()}
    args = build_parser().parse_args(["calibrate", "model", "session.nwb", "--out", "out"])
    assert (args.trials, args.evaluations) == (api["n_trials"], api["max_evaluations"])
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    try:
        import bench_stimulation
    finally:
        sys.path.pop(0)
    assert bench_stimulation.CALIBRATE_DEFAULTS == {k: api[k] for k in ("n_trials", "max_evaluations")}
