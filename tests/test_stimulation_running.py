"""Running protocols on a fitted SpikingNetworkModel: trials, seeds, NWB round trip, the CLI."""

from __future__ import annotations

import numpy as np
import pytest
import test_stimulation_model as _shared

import organoid_sim
from organoid_sim.stimulation import (CL1, Protocol, PulseDesign, PulseTrain, concat_trials, probe_electrodes,
                                      run_trials, trial_seeds)

UNITS = _shared.UNITS


@pytest.fixture(scope="module")
def model():
    return _shared.small_fitted_model()


@pytest.fixture(scope="module")
def probe():
    return probe_electrodes([9, 27], amplitude=3.0, phase_us=160.0, n_repeats=4, interval_s=0.1, seed=1)


def test_trial_seeds_are_a_stable_prefix_and_distinct():
    assert trial_seeds(5, 4) == trial_seeds(5, 10)[:4]
    assert len(set(trial_seeds(5, 100))) == 100
    assert trial_seeds(5, 3) != trial_seeds(6, 3)
    with pytest.raises(ValueError):
        trial_seeds(0, 0)


def test_stimulate_same_seed_same_result(model, probe):
    a, b = model.stimulate(probe, seed=3), model.stimulate(probe, seed=3)
    assert a == b
    assert a.stim == probe.to_events() and a.t_stop == pytest.approx(probe.duration_s, abs=model.dt_ms * 1e-3)
    assert not np.array_equal(a.times, model.stimulate(probe, seed=4).times)


@pytest.mark.parametrize("batched", [True, False])
def test_run_trials_reproducible_and_independent(model, probe, batched):
    t1 = run_trials(model, probe, 3, seed=2, batched=batched, progress=False)
    t2 = run_trials(model, probe, 3, seed=2, batched=batched, progress=False)
    assert len(t1) == 3 and all(x == y for x, y in zip(t1, t2))
    assert [t.metadata["trial"] for t in t1] == [0, 1, 2]
    assert all(t.stim == probe.to_events() for t in t1)
    assert not np.array_equal(t1[0].times, t1[1].times)


def test_bare_events_give_trials_of_one_length_batched_or_not(model, probe):
    """A bare StimEvents runs for its last pulse + DEFAULT_TAIL_S (as_events) in both modes."""
    from organoid_sim.stimulation.protocol import as_events

    events = probe.to_events()
    _, duration_s = as_events(events)
    for batched in (True, False):
        trials = run_trials(model, events, 2, seed=0, batched=batched, device_profile=None, progress=False)
        assert all(t.t_stop == pytest.approx(duration_s, abs=model.dt_ms * 1e-3) for t in trials), batched


def test_batched_and_sequential_trials_agree_in_distribution(model, probe):
    # both modes simulate the same model; their pooled response probabilities must agree within binomial noise
    b = concat_trials(run_trials(model, probe, 8, seed=0, batched=True, progress=False))
    s = concat_trials(run_trials(model, probe, 8, seed=0, batched=False, progress=False))
    pb = organoid_sim.stats.evoked_responses(b, window=(0.002, 0.05)).response_probability
    ps = organoid_sim.stats.evoked_responses(s, window=(0.002, 0.05)).response_probability
    n = 8 * 4
    se = np.sqrt(np.maximum(pb * (1 - pb), 1 / n) * 2 / n)
    assert np.all(np.abs(pb - ps) < 5 * se + 1e-9)


def test_concat_trials_pools_evoked_responses(model, probe):
    trials = run_trials(model, probe, 4, seed=9, progress=False)
    joined = concat_trials(trials)
    assert joined.n_spikes == sum(t.n_spikes for t in trials)
    assert len(joined.stim) == 4 * len(probe.to_events())
    np.testing.assert_allclose(joined.metadata["trial_starts_s"], np.arange(4) * probe.duration_s, atol=4 * 2e-3)
    ev = organoid_sim.stats.evoked_responses
    pooled = ev(joined, window=(0.002, 0.05))
    per_trial = sum(ev(t, window=(0.002, 0.05)).n_responses for t in trials)
    np.testing.assert_array_equal(pooled.n_responses, per_trial)


def test_device_profile_checked_before_running(model):
    loud = Protocol((PulseTrain(PulseDesign.biphasic(3.5, 160.0), (9,), 0.1),))
    with pytest.raises(ValueError, match="maximum amplitude"):
        run_trials(model, loud, 2, device_profile=CL1, progress=False)


def test_evoked_recording_survives_nwb(tmp_path, model, probe):
    rec = model.stimulate(probe, seed=1)
    organoid_sim.save(rec, tmp_path / "evoked.nwb")
    back = organoid_sim.load(tmp_path / "evoked.nwb")
    assert back.stim == rec.stim == probe.to_events()
    np.testing.assert_array_equal(back.times, rec.times)
    np.testing.assert_array_equal(back.unit_ids, rec.unit_ids)


def test_cli_stimulate(tmp_path, model, probe, capsys):
    from organoid_sim.cli import main

    model.save(tmp_path / "model")
    probe.save(tmp_path / "probe.yaml")
    out = tmp_path / "evoked.nwb"
    assert main(["stimulate", str(tmp_path / "model"), "--protocol", str(tmp_path / "probe.yaml"), "--out", str(out),
                 "--seed", "4", "--trials", "2", "--device", "cl1", "--no-progress"]) == 0
    rec = organoid_sim.load(out)
    assert len(rec.stim) == 2 * len(probe.to_events()) and rec.n_units == len(UNITS)
    assert rec.t_stop == pytest.approx(2 * probe.duration_s, abs=2 * model.dt_ms * 1e-3)
    assert "evoked.nwb" in capsys.readouterr().out
    # the same command again gives the same recording (seeded)
    out2 = tmp_path / "again.nwb"
    main(["stimulate", str(tmp_path / "model"), "--protocol", str(tmp_path / "probe.yaml"), "--out", str(out2),
          "--seed", "4", "--trials", "2", "--no-progress"])
    np.testing.assert_array_equal(organoid_sim.load(out2).times, rec.times)
    # a protocol the CL1 refuses: exit status 2 and the limit named on stderr
    Protocol((PulseTrain(PulseDesign.biphasic(3.5, 160.0), (9,), 0.1),)).save(tmp_path / "loud.json")
    assert main(["stimulate", str(tmp_path / "model"), "--protocol", str(tmp_path / "loud.json"), "--out",
                 str(tmp_path / "x.nwb"), "--device", "cl1"]) == 2
    assert "maximum amplitude" in capsys.readouterr().err
    assert main(["stimulate", str(tmp_path / "nope"), "--protocol", str(tmp_path / "loud.json"), "--out",
                 str(tmp_path / "x.nwb")]) == 2
    assert "not a model folder" in capsys.readouterr().err


@pytest.mark.gpu
@pytest.mark.skipif(not __import__("torch").cuda.is_available(), reason="needs a CUDA device")
def test_trials_and_closed_loop_on_gpu(probe):
    import copy

    from organoid_sim.stimulation import VirtualMEA

    gpu = copy.deepcopy(_shared.small_fitted_model()).to("cuda")
    trials = run_trials(gpu, probe, 4, seed=0, progress=False)
    assert trials == run_trials(gpu, probe, 4, seed=0, progress=False)  # same seed, same device
    assert all(t.stim == probe.to_events() for t in trials)
    with VirtualMEA(gpu, device=CL1, seed=0).open() as neurons:
        neurons.stim(9, 2.0)
        assert len(list(neurons.loop(100, stop_after_ticks=10))) == 10
        assert len(neurons.recording().stim) == 1
