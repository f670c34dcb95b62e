"""SpikingNetworkModel: teacher forcing equals the step-by-step dynamics, files round-trip,
surrogates match snnTorch, and a known network's weights are recovered from its own spikes."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from organoid_sim import SpikeRecording, load_model
from organoid_sim.fit.config import RESTART_SEED_STRIDE
from organoid_sim.models import SpikingNetworkModel
from organoid_sim.nn.neurons import NetworkState, lif_step
from organoid_sim.nn.surrogate import ATan, FastSigmoid, StraightThrough


def _template(n: int, duration: float = 1.0) -> SpikeRecording:
    xy = np.stack([200.0 * (np.arange(n) % 4), 200.0 * (np.arange(n) // 4)], axis=1)
    return SpikeRecording.from_spike_times([np.array([0.5])] * n, t_start=0.0, t_stop=duration,
                                           electrode_ids=np.arange(n), positions=xy, metadata={"well": "T1"})


def _network(n: int = 6, seed: int = 0, **kw) -> SpikingNetworkModel:
    torch.manual_seed(seed)
    m = SpikingNetworkModel(seed=seed, **{"n_hidden": 0, **kw})
    m.attach_recording(_template(n))
    with torch.no_grad():
        g = torch.Generator().manual_seed(seed)
        mask = (torch.rand(m.weight.shape, generator=g) < 0.5).float()
        m.weight.copy_(mask * torch.randn(m.weight.shape, generator=g) * 0.6)
        m.bias.copy_(torch.full((m.n_neurons,), 0.8) + 0.1 * torch.randn(m.n_neurons, generator=g))  # ~4 Hz
        m.beta_raw.fill_(-4.0)
    return m


@pytest.mark.parametrize("max_rate", [None, 60.0])
def test_teacher_forced_design_equals_stepwise_dynamics(max_rate):
    m = _network(5, n_hidden=0, dt_ms=2.0, max_rate_hz=max_rate)
    rng = np.random.default_rng(1)
    y = torch.tensor(rng.poisson(0.15, size=(400, 5)), dtype=torch.float32)
    with torch.no_grad():
        eta_fast = m.teacher_eta(m.teacher_design(y))
        p = m.step_params()
        st = NetworkState.rest(1, 5, m.n_syn)
        ref = []
        for t in range(len(y)):
            st.s = (y[t - 1] if t else torch.zeros(5))[None]  # teacher forcing: data replace own spikes
            st, eta = lif_step(p, st, None, torch.rand(1, 5), m.observation, m.surrogate)
            ref.append(eta[0])
    np.testing.assert_allclose(eta_fast.numpy(), torch.stack(ref).numpy(), rtol=1e-4, atol=1e-4)


def test_save_load_gives_identical_simulation_and_score(tmp_path):
    m = _network(6, n_hidden=3)
    sim = m.simulate(20.0, seed=3).with_metadata(well="T1")
    assert sim.n_units == 6 and sim.n_spikes > 0
    m.set_params(max_epochs=3, refine_steps=2, refine_window_s=0.5, refine_batch=2, calibration_rounds=1,
                 progress=False).fit(sim)
    m.save(tmp_path / "net")
    back = load_model(tmp_path / "net")
    assert isinstance(back, SpikingNetworkModel) and back.n_hidden == 3
    a, b = m.simulate(5.0, seed=11), back.simulate(5.0, seed=11)
    assert a.n_spikes > 0 and a.differences(b) == []
    assert m.score(sim) == pytest.approx(back.score(sim), abs=1e-6)
    assert back.provenance["well"] == "T1" and "fit_settings" in back.provenance
    # same seed, same output; another seed, another output
    assert m.simulate(5.0, seed=11) == a and m.simulate(5.0, seed=12) != a


def test_load_model_errors_name_the_problem(tmp_path):
    with pytest.raises(FileNotFoundError, match="model.json"):
        load_model(tmp_path)
    (tmp_path / "model.json").write_text('{"class": "Nope", "config": {}, "layout": {}}')
    with pytest.raises(ValueError, match="unknown model class 'Nope'"):
        load_model(tmp_path)


@pytest.mark.parametrize("ours, name, kw", [(FastSigmoid(slope=25.0), "fast_sigmoid", {"slope": 25.0}),
                                            (ATan(alpha=2.0), "atan", {"alpha": 2.0})])
def test_surrogate_gradients_match_snntorch(ours, name, kw):
    surrogate = pytest.importorskip("snntorch.surrogate")
    x = torch.linspace(-1, 1, 41, requires_grad=True)
    ours(x).sum().backward()
    x2 = x.detach().clone().requires_grad_(True)
    ref = getattr(surrogate, name)(**kw)(x2)
    ref.sum().backward()
    np.testing.assert_array_equal(ours(x.detach()).numpy(), ref.detach().numpy())
    np.testing.assert_allclose(x.grad.numpy(), x2.grad.numpy(), rtol=1e-5, atol=1e-7)
    x3 = x.detach().clone().requires_grad_(True)
    StraightThrough()(x3).sum().backward()
    assert torch.all(x3.grad == 1)


def test_stimulation_input_drives_the_targeted_neurons():
    m = _network(6)
    cur = np.zeros((int(round(5000.0 / m.dt_ms)), 6), np.float32)     # 5 s of steps
    cur[::int(round(250.0 / m.dt_ms)), 0] = 3.0  # strong kicks to neuron 0 every 250 ms
    base = m.simulate(5.0, seed=2)
    kicked = m.simulate(5.0, seed=2, input_current=cur)
    assert kicked.spike_counts[0] > base.spike_counts[0] + 10
    with pytest.raises(ValueError, match="input_current must have shape"):
        m.simulate(5.0, input_current=np.zeros((10, 6)))


def test_simulate_refuses_what_it_cannot_run_in_one_line():
    m = _network(4)
    with pytest.raises(ValueError, match="n_parallel must be >= 1"):
        m.simulate(1.0, n_parallel=0)
    with pytest.raises(ValueError, match="shorter than half a model step"):
        m.simulate(0.4 * m.dt_ms / 1000.0)
    unfitted = SpikingNetworkModel(n_hidden=0, n_recorded=4)
    with pytest.raises(RuntimeError, match="no unit layout"):
        unfitted.simulate(1.0)


def test_ground_truth_weights_are_recovered():
    truth = _network(8, seed=4, tau_syn_ms=(10.0,), dt_ms=5.0, l2=1e-5)
    rec = truth.simulate(300.0, seed=5, n_parallel=10, burn_in_s=1.0)
    fitted = SpikingNetworkModel(n_hidden=0, tau_syn_ms=(10.0,), dt_ms=5.0, l2=1e-5, max_epochs=15, refine_steps=0,
                                 calibration_rounds=0, progress=False)
    fitted.fit(rec)
    assert not fitted.provenance["metrics"]["uncoupled"]   # coupling beats the uncoupled null here
    w_true = truth.effective_weight().detach().numpy().ravel()
    w_fit = fitted.effective_weight().detach().numpy().ravel()
    assert np.corrcoef(w_true, w_fit)[0, 1] >= 0.8


@pytest.mark.parametrize("batch, n_rec, bias, max_rate, direct, dt_ms", [
    (1, 6, None, None, False, 5.0), (2, 6, None, None, False, 5.0), (1, 12, 2.0, None, False, 5.0),
    (1, 12, 3.0, 400.0, False, 5.0), (2, 12, 3.0, 400.0, True, 5.0), (1, 6, None, 150.0, True, 5.0),
    (1, 12, 4.0, 400.0, False, 2.5), (2, 12, 4.0, 400.0, True, 2.5)])
def test_engine_equals_torch_step_with_same_uniforms(batch, n_rec, bias, max_rate, direct, dt_ms):
    """Same uniforms -> same counts as stepping :func:`lif_step` in torch; the high-rate case
    exercises bins with several spikes and steps where many neurons fire at once, with and
    without a saturating escape rate and directly evoked spikes (at a 2.5 ms step a stronger
    drive makes as many neurons fire in one step)."""
    from organoid_sim.engine import Simulator

    m = _network(n_rec, n_hidden=2, max_rate_hz=max_rate, dt_ms=dt_ms)
    n = m.n_neurons
    if bias is not None:
        with torch.no_grad():
            m.bias.fill_(bias)
    p = m.step_params()
    u = np.random.default_rng(0).random((2000, batch, n))
    dr = None
    if direct:  # a pulse every 100 steps evokes ~0.5 spikes per neuron
        dr = np.zeros((2000, n))
        dr[::100] = np.random.default_rng(1).exponential(0.5, (20, n))
    chunks = iter([u[:700], u[700:1400], u[1400:]])  # crosses chunk boundaries
    sim = Simulator(m.to_engine(), batch=batch, chunk_steps=700)
    events = sim.run(2000, direct=dr, uniforms=lambda shape: next(chunks))
    st = NetworkState(**{k: torch.from_numpy(v) for k, v in sim.state.items()})
    ref = NetworkState.rest(batch, n, m.n_syn)
    counts = []
    with torch.no_grad():
        for k in range(2000):
            dk = None if dr is None else torch.tensor(dr[k], dtype=torch.float32)
            ref, _ = lif_step(p, ref, None, torch.tensor(u[k], dtype=torch.float32), m.observation, m.surrogate,
                              direct=dk)
            counts.append(ref.s.numpy())
    counts = np.array(counts)
    fast = np.zeros_like(counts)
    fast[events[:, 0], events[:, 1], events[:, 2]] = events[:, 3]
    assert counts.sum() > 100
    if bias is not None:
        assert counts.max() >= 2 and (counts > 0).sum(-1).max() > 8
    np.testing.assert_array_equal(fast, counts)
    np.testing.assert_allclose(st.w.numpy(), ref.w.numpy(), atol=1e-4)
    np.testing.assert_allclose(st.x.numpy(), ref.x.numpy(), atol=1e-4)


def test_dale_network_weights_are_recovered_and_keep_their_signs(tmp_path):
    truth = _network(8, seed=4, tau_syn_ms=(10.0,), dt_ms=5.0, l2=1e-5, dale=True, n_hidden=0)
    with torch.no_grad():  # excitatory recorded units: every weight >= 0 (|raw|)
        truth.bias.sub_(0.3)
    rec = truth.simulate(300.0, seed=5, n_parallel=10, burn_in_s=1.0)
    assert rec.metadata["saturated_bins"] < 0.005 * rec.n_spikes
    fitted = SpikingNetworkModel(n_hidden=0, tau_syn_ms=(10.0,), dt_ms=5.0, l2=1e-5, dale=True, max_epochs=15,
                                 refine_steps=0, calibration_rounds=0, progress=False)
    fitted.fit(rec)
    assert not fitted.provenance["metrics"]["uncoupled"]   # coupling beats the uncoupled null here
    w_fit = fitted.effective_weight().detach().numpy()
    assert (w_fit >= 0).all()
    r = np.corrcoef(truth.effective_weight().detach().numpy().ravel(), w_fit.ravel())[0, 1]
    assert r >= 0.8
    assert fitted.score(rec) > 0.05
    back = load_model(fitted.save(tmp_path / "dale"))
    assert back.hparams["dale_weights"] == "abs" and back.score(rec) == pytest.approx(fitted.score(rec), abs=1e-6)


def test_dale_files_from_before_the_option_keep_the_softplus_weights(tmp_path):
    import json

    m = _network(4, seed=1, dale=True, n_hidden=0)
    path = m.save(tmp_path / "old")
    cfg_file = next(p for p in path.iterdir() if p.suffix == ".json")
    cfg = json.loads(cfg_file.read_text())
    cfg["config"].pop("dale_weights")  # the layout of format 1 files written before the option
    cfg["format_version"] = 1
    cfg_file.write_text(json.dumps(cfg))
    old = load_model(path)
    raw = old.weight.detach()
    expected = torch.nn.functional.softplus(raw) * old.sign * old.mask
    assert old.hparams["dale_weights"] == "softplus"
    torch.testing.assert_close(old.effective_weight().detach(), expected)


def test_saturating_escape_rate_is_a_dead_time():
    """``exp(saturate(eta))`` is ``1 / (1 / mu + 1 / mu_max)`` (closed form), and a neuron driven far
    above threshold fires at its maximum rate, in the fast path and the torch step alike."""
    from organoid_sim.nn.neurons import saturate

    eta = torch.linspace(-8.0, 8.0, 33, dtype=torch.float64)
    eta_max = torch.tensor(math.log(0.4), dtype=torch.float64)
    want = 1.0 / (1.0 / torch.exp(eta) + 1.0 / 0.4)
    torch.testing.assert_close(torch.exp(saturate(eta, eta_max)), want, rtol=1e-12, atol=0)
    m = _network(4, n_hidden=0, max_rate_hz=40.0)
    with torch.no_grad():
        m.weight.zero_()
        m.bias.fill_(30.0)  # eta ~ 100 above threshold: saturated whatever the resets
    rec = m.simulate(200.0, seed=1)
    np.testing.assert_allclose(rec.firing_rates(), 40.0, rtol=0.05)  # Poisson counts at mu_max per bin


def test_files_from_before_the_saturating_rate_load_without_it(tmp_path):
    import json

    m = _network(4, seed=1, n_hidden=0, max_rate_hz=None)
    path = m.save(tmp_path / "old")
    cfg_file = next(p for p in path.iterdir() if p.suffix == ".json")
    cfg = json.loads(cfg_file.read_text())
    cfg["config"].pop("max_rate_hz")  # the layout of format 1 files written before the option
    cfg["format_version"] = 1
    cfg_file.write_text(json.dumps(cfg))
    old = load_model(path)
    assert old.hparams["max_rate_hz"] is None and old.eta_max() is None
    assert old.simulate(5.0, seed=3) == m.simulate(5.0, seed=3)


def test_bernoulli_network_reports_no_saturation_count():
    """At one spike per bin every spike is 'at the cap', so the count means nothing there."""
    poisson_net, bern_net = _network(4, seed=1), _network(4, seed=1, observation="bernoulli")
    assert isinstance(poisson_net.simulate(5.0, seed=0).metadata["saturated_bins"], int)
    sim = bern_net.simulate(5.0, seed=0)
    assert sim.n_spikes > 0 and sim.metadata["saturated_bins"] is None


def test_restarts_keep_the_candidate_closest_to_the_data_and_reproduce_it():
    """``restarts=2`` ends with the candidate of smallest discrepancy, and that candidate is exactly
    the single fit with that restart's seed (stage 1 is shared and deterministic)."""
    rec = _network(6, seed=4, tau_syn_ms=(10.0,)).simulate(60.0, seed=5, n_parallel=4, burn_in_s=1.0)
    small = dict(max_epochs=3, refine_steps=3, refine_batch=2, refine_window_s=0.5, calibration_rounds=1,
                 progress=False)
    both = SpikingNetworkModel(n_hidden=0, tau_syn_ms=(10.0,), seed=0, restarts=2, fit_seed=0, **small).fit(rec)
    met = both.provenance["metrics"]
    scores = met["restart_discrepancies"]
    assert len(scores) == 2 and met["restart_chosen"] == int(np.argmin(scores))
    alone = SpikingNetworkModel(n_hidden=0, tau_syn_ms=(10.0,), seed=0,
                                fit_seed=RESTART_SEED_STRIDE * met["restart_chosen"], **small).fit(rec)
    for name, value in both.state_dict().items():
        assert torch.equal(value, alone.state_dict()[name]), name
    # the score of the kept candidate is its discrepancy simulated again with its restart's seed
    from organoid_sim.fit import _discrepancy
    assert _discrepancy(both, rec, RESTART_SEED_STRIDE * met["restart_chosen"]) == pytest.approx(
        scores[met["restart_chosen"]])
    with pytest.raises(ValueError, match="restarts must be >= 1"):
        SpikingNetworkModel(n_hidden=0, seed=0, restarts=0, **small).fit(rec)
