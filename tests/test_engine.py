"""organoid_sim.engine: torch-free loading and running, reproducible streams, escape noise against
its closed form, the same statistics as the torch loop, sparse models in O(synapses) memory."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from organoid_sim.engine import Simulator, load_network, spec_from_arrays

ROOT = Path(__file__).resolve().parents[1]


def _uncoupled_spec(bias, observation="poisson", max_rate_hz=None, dt_ms=1.0):
    """Independent neurons (no synapses, reset and adaptation ~1e-13): every step an independent
    draw at ``eta = log(r0 dt) + (bias - theta) / delta_u`` with ``delta_u = 1``."""
    n = len(bias)
    cfg = dict(dt_ms=dt_ms, tau_mem_ms=5.0, n_recorded=n, n_hidden=0, observation=observation,
               max_rate_hz=max_rate_hz)
    t = dict(weight=np.zeros((1, 0)), syn_pre=np.zeros(0, np.int64), syn_post=np.zeros(0, np.int64),
             bias=np.asarray(bias, float), theta_raw=np.full(n, -30.0), log_delta_u=np.zeros(n),
             beta_raw=np.full(n, -30.0), use_logit=np.zeros(n), log_tau_rec_ms=np.full(n, np.log(300.0)),
             log_tau_adapt_ms=np.full(n, np.log(1000.0)), tau_syn_ms=np.array([5.0]))
    if max_rate_hz is not None:
        t["log_max_rate"] = np.full(n, np.log(max_rate_hz))
    return spec_from_arrays(cfg, t)


def _counts(events, n_steps, batch, n):
    c = np.zeros((n_steps, batch, n), np.int64)
    c[events[:, 0], events[:, 1], events[:, 2]] = events[:, 3]
    return c


def _torch_net(n_rec=10, n_hidden=4, seed=0, **kw):
    import torch

    from organoid_sim import SpikeRecording
    from organoid_sim.models import SpikingNetworkModel

    xy = np.stack([200.0 * (np.arange(n_rec) % 4), 200.0 * (np.arange(n_rec) // 4)], axis=1)
    rec = SpikeRecording.from_spike_times([np.array([0.5])] * n_rec, t_start=0.0, t_stop=1.0,
                                          electrode_ids=np.arange(n_rec), positions=xy)
    m = SpikingNetworkModel(seed=seed, n_hidden=n_hidden, **kw)
    m.attach_recording(rec)
    with torch.no_grad():
        g = torch.Generator().manual_seed(seed)
        if m.sparse:
            m.weight.copy_(torch.randn(m.weight.shape, generator=g) * 0.6)
        else:
            m.weight.copy_((torch.rand(m.weight.shape, generator=g) < 0.5).float()
                           * torch.randn(m.weight.shape, generator=g) * 0.6)
        m.bias.copy_(torch.full((m.n_neurons,), 0.9) + 0.1 * torch.randn(m.n_neurons, generator=g))
        m.beta_raw.fill_(-4.0)
    return m


@pytest.mark.parametrize("observation, max_rate", [("poisson", None), ("poisson", 200.0), ("bernoulli", None)])
def test_escape_noise_has_the_closed_form_distribution(observation, max_rate):
    """Counts per bin of independent neurons follow Poisson(mu) capped at max_count (or Bernoulli
    with P = 1 - exp(-mu)), mu = exp(eta) saturated as 1 / (1 / mu + 1 / mu_max): chi-square tests
    against scipy's distribution, from weak (eta = -6) to strong (eta = 1.5) drive."""
    eta = np.array([-6.0, -3.0, -1.0, 0.0, 1.5])
    spec = _uncoupled_spec(eta - np.log(10.0 * 1e-3), observation, max_rate)   # bias so that eta is as listed
    n_steps, batch = 4000, 8
    ev = Simulator(spec, seed=11, batch=batch).run(n_steps)
    c = _counts(ev, n_steps, batch, len(eta)).reshape(-1, len(eta))
    mu = np.exp(eta)
    if max_rate is not None:
        mu = 1.0 / (1.0 / mu + 1.0 / (max_rate * 1e-3))
    cap = spec.max_count
    for i, m in enumerate(mu):
        if observation == "bernoulli":
            probs = np.array([np.exp(-m), -np.expm1(-m)])
        else:
            probs = np.append(stats.poisson.pmf(np.arange(cap), m), stats.poisson.sf(cap - 1, m))
        observed = np.bincount(c[:, i], minlength=cap + 1)[:len(probs)]
        assert observed.sum() == len(c)
        expected = probs * len(c)
        keep = expected > 5                       # chi-square needs expected counts >= 5 per cell
        if keep.sum() < 2:                        # eta = -6: compare the number of spiking bins alone
            assert stats.binomtest(int((c[:, i] > 0).sum()), len(c), 1 - probs[0]).pvalue > 1e-3
            continue
        obs_k = np.append(observed[keep], observed[~keep].sum())
        exp_k = np.append(expected[keep], expected[~keep].sum())
        if exp_k[-1] == 0:
            obs_k, exp_k = obs_k[:-1], exp_k[:-1]
        assert stats.chisquare(obs_k, exp_k).pvalue > 1e-3, (eta[i], obs_k, exp_k)


def test_same_seed_same_spikes_and_state_carries_over_between_calls():
    spec = _torch_net().to_engine()
    whole = Simulator(spec, seed=5, batch=2).run(1000)
    sim = Simulator(spec, seed=5, batch=2)
    first, second = sim.run(300), sim.run(700)
    second[:, 0] += 300
    np.testing.assert_array_equal(np.concatenate([first, second]), whole)
    assert len(whole) > 100
    sim.reset()
    np.testing.assert_array_equal(sim.run(1000), whole)
    other = Simulator(spec, seed=6, batch=2).run(1000)
    assert not np.array_equal(other, whole)
    # the two trajectories of one run are independent streams, not copies
    assert not np.array_equal(whole[whole[:, 1] == 0][:, [0, 2, 3]], whole[whole[:, 1] == 1][:, [0, 2, 3]])


def test_model_run_state_round_trips_through_the_engine():
    """``model.run(state=...)`` continues where the last call stopped: the membrane of a run split
    in two equals that of the torch loop fed the engine's state (same uniforms are not needed: no
    spikes in the second part are compared, only the deterministic decay of the carried state)."""
    m = _torch_net()
    _, st, _ = m.run(200, seed=1)
    spec = m.to_engine()
    sim = Simulator(spec)
    sim.state = {k: getattr(st, k).numpy() for k in ("w", "I", "a", "x", "s")}
    back = sim.state
    for k in ("w", "I", "a", "x", "s"):
        np.testing.assert_array_equal(back[k], getattr(st, k).numpy())
    with pytest.raises(ValueError, match="state needs entries"):
        sim.state = {"w": back["w"]}


def test_engine_and_torch_loop_give_the_same_statistics():
    """Different random streams, same distribution: per-neuron rates and the mean pairwise count
    correlation of the engine and of the torch step loop (``engine="torch"``) agree within 4
    standard errors estimated from independent trajectories."""
    m = _torch_net(8, n_hidden=2, dt_ms=2.0)
    n_steps, batch = 1500, 24
    a, _, _ = m.run(n_steps, batch=batch, seed=1, burn_in_steps=200)
    b, _, _ = m.run(n_steps, batch=batch, seed=2, burn_in_steps=200, engine="torch")
    ca, cb = (_counts(e, n_steps, batch, m.n_neurons).astype(float) for e in (a, b))
    ra, rb = ca.mean(0), cb.mean(0)                        # [batch, n]: rate per trajectory
    se = np.sqrt(ra.var(0, ddof=1) / batch + rb.var(0, ddof=1) / batch)
    assert ra.mean() > 0.01                                 # a few Hz: the test has spikes to compare
    assert np.all(np.abs(ra.mean(0) - rb.mean(0)) < 4 * se + 1e-9)

    def mean_corr(c):
        binned = c.reshape(30, -1, batch, c.shape[-1]).sum(0)      # 60 ms bins
        out = []
        for k in range(batch):
            with np.errstate(invalid="ignore"):       # a silent neuron has no correlation
                r = np.corrcoef(binned[:, k].T)
            out.append(np.nanmean(r[np.triu_indices_from(r, 1)]))
        return np.array(out)

    qa, qb = mean_corr(ca), mean_corr(cb)
    assert abs(qa.mean() - qb.mean()) < 4 * np.sqrt(qa.var(ddof=1) / batch + qb.var(ddof=1) / batch)


def test_saved_model_loads_and_runs_with_torch_blocked(tmp_path):
    """``import organoid_sim.engine``, ``load_network`` and ``Simulator.run`` in a process where
    importing torch fails; the spikes equal those of ``model.run`` (same seed) in this process."""
    m = _torch_net(max_rate_hz=150.0)
    m.save(tmp_path / "dense")
    sp = _torch_net(n_rec=30, n_hidden=10, in_degree=5)
    sp.save(tmp_path / "sparse")
    script = textwrap.dedent(f"""
        import json, sys
        sys.modules["torch"] = None          # any import of torch now raises ImportError
        from organoid_sim.engine import Simulator, load_network
        out = {{}}
        for name in ("dense", "sparse"):
            spec = load_network({str(tmp_path)!r} + "/" + name)
            out[name] = Simulator(spec, seed=3).run(800).tolist()
        assert not any(k == "torch" or k.startswith("torch.") for k, v in sys.modules.items() if v is not None)
        print(json.dumps(out))
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT,
                          env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    got = json.loads(proc.stdout)
    for name, model in (("dense", m), ("sparse", sp)):
        ev, _, _ = model.run(800, seed=3)
        assert len(ev) > 20
        np.testing.assert_array_equal(np.array(got[name]).reshape(-1, 4), ev)


def test_sparse_synapses_have_the_requested_degrees():
    from organoid_sim.models.network import sample_synapses

    gen = np.random.default_rng(0)
    pre, post = sample_synapses(3000, gen, in_degree=40)
    assert np.all(np.bincount(post, minlength=3000) == 40)
    assert np.all(pre != post) and len(np.unique(post * 3000 + pre)) == len(pre)
    pre, post = sample_synapses(3000, gen, density=0.01)
    assert np.all(pre != post) and len(np.unique(post * 3000 + pre)) == len(pre)
    # each ordered pair with probability 0.01: the synapse count is Binomial(n (n - 1), 0.01)
    assert stats.binomtest(len(pre), 3000 * 2999, 0.01).pvalue > 1e-3
    pre, post = sample_synapses(20, gen, in_degree=15)                  # dense rows take the other route
    assert np.all(np.bincount(post, minlength=20) == 15) and np.all(pre != post)
    assert len(np.unique(post * 20 + pre)) == len(pre)


def test_sparse_model_round_trips_and_equals_its_dense_matrix(tmp_path):
    from organoid_sim import load_model

    m = _torch_net(n_rec=12, n_hidden=6, density=0.3, dale=True, tau_syn_ms=(3.0, 20.0))
    assert "mask" not in dict(m.named_buffers()) and m.weight.shape == (2, len(m.syn_pre))
    dense = m.effective_weight().detach().numpy()
    spec = m.to_engine()
    np.testing.assert_allclose(spec.dense_weight(), dense, rtol=1e-6)
    assert (dense[:, :, m.n_recorded + m.n_hidden - 1] <= 0).all()        # Dale: a hidden I cell
    back = load_model(m.save(tmp_path / "sp"))
    np.testing.assert_array_equal(back.syn_pre.numpy(), m.syn_pre.numpy())
    np.testing.assert_array_equal(back.effective_weight().detach().numpy(), dense)
    np.testing.assert_array_equal(back.run(500, seed=2)[0], m.run(500, seed=2)[0])
    np.testing.assert_allclose(load_network(tmp_path / "sp").syn_weight, spec.syn_weight)


def test_large_sparse_model_is_built_saved_loaded_and_run_in_o_synapses_memory(tmp_path):
    """20,000 neurons (200 recorded), in-degree 20: peak memory grows by far less than one dense N x N float32
    matrix (1.6 GB) while the model is built, saved, loaded and run (torch and engine sides)."""
    script = textwrap.dedent(f"""
        import resource, sys, json
        import numpy as np, torch
        from organoid_sim import load_model
        from organoid_sim.models import SpikingNetworkModel
        from organoid_sim.engine import Simulator, load_network
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        m = SpikingNetworkModel(n_recorded=200, n_hidden=19800, in_degree=20, dt_ms=1.0, tau_syn_ms=(5.0,))
        m.layout = {{"unit_ids": list(range(200)), "electrode_ids": list(range(200)),
                    "positions": [[0.0, 0.0]] * 200, "electrodes": {{"ids": [0], "x": [0.0], "y": [0.0]}}}}
        m.save({str(tmp_path)!r} + "/big")
        back = load_model({str(tmp_path)!r} + "/big")
        ev, _, _ = back.run(200, seed=0)
        spec = load_network({str(tmp_path)!r} + "/big")
        Simulator(spec).run(200)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print(json.dumps({{"grown_kb": peak - base, "n_syn": spec.n_synapses, "spikes": int(ev[:, 3].sum())}}))
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT,
                          env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["n_syn"] == 20000 * 20 and out["spikes"] > 0
    dense_bytes = 20000 * 20000 * 4
    assert out["grown_kb"] * 1024 < 0.1 * dense_bytes


def test_engine_input_errors_name_the_input():
    spec = _uncoupled_spec(np.zeros(3))
    sim = Simulator(spec, batch=2)
    with pytest.raises(ValueError, match=r"ext must have shape \[n_steps, 3\]"):
        sim.run(10, ext=np.zeros((10, 4)))
    with pytest.raises(ValueError, match="direct has 5 steps"):
        sim.run(10, direct=np.zeros((5, 3)))
    with pytest.raises(FileNotFoundError, match="model.json missing"):
        load_network(ROOT / "no_such_model")


def test_bench_engine_runs_small_and_its_engine_process_has_no_torch():
    bench = ROOT / "benchmarks" / "bench_engine.py"
    proc = subprocess.run([sys.executable, str(bench), "--sizes", "300", "--rounds", "1", "--steps", "2000",
                           "--peers", "", "--no-growth", "--json"], capture_output=True, text=True, cwd=ROOT,
                          env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    row = out["sizes"]["300"]
    assert row["engine"]["torch_imported"] is False
    for kind in ("engine", "model"):
        # 300 neurons x 2 s at ~2 Hz: ~1200 spikes, so the rate is within 1.3-3 Hz by a wide margin
        assert 1.3 < row[kind]["rate_hz"] < 3.0, row[kind]
