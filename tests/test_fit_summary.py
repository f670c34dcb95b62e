"""Differentiable summary statistics against NumPy references, checkpoints, and refinement."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from organoid_sim.fit.checkpoint import Checkpointer
from organoid_sim.fit.summary import burst_persistence, data_windows, stats_loss, summary_stats


def test_summary_stats_match_numpy():
    rng = np.random.default_rng(0)
    s = rng.poisson(0.05, size=(400, 3, 5)).astype(np.float32)
    st = summary_stats(torch.from_numpy(s), dt_ms=5.0, bin_ms=20.0, n_lags=5)
    np.testing.assert_allclose(st["rate"].numpy(), s.mean((0, 1)) / 0.005, rtol=1e-5)
    c = s.reshape(100, 4, 3, 5).sum(1)                      # 20 ms bins
    cc = (c - c.mean(0, keepdims=True)).transpose(1, 0, 2).reshape(-1, 5)
    np.testing.assert_allclose(st["corr"].numpy(), np.corrcoef(cc.T), rtol=1e-4, atol=1e-5)
    pop = c.sum(-1)
    pc = pop - pop.mean(0)
    ref = np.array([(pc[: 100 - k] * pc[k:]).mean() for k in range(6)]) / pop.mean() ** 2
    np.testing.assert_allclose(st["pop_acov"].numpy(), ref, rtol=1e-4)


def test_burst_persistence_matches_numpy_and_the_closed_form():
    from scipy.special import expit

    rng = np.random.default_rng(1)
    pop = rng.poisson(1.5, size=(300, 2)).astype(np.float64)
    got = burst_persistence(torch.from_numpy(pop), window_steps=4, n_spikes=8, n_lags=5)
    moving = np.stack([np.convolve(pop[:, b], np.ones(4), "valid") for b in range(2)], 1)
    h = expit(moving - 7.5)
    ref = np.array([(h[:-k] * h[k:]).mean() for k in range(1, 6)]) / h.mean()
    np.testing.assert_allclose(got.numpy(), ref, rtol=1e-10)
    # one isolated burst of D steps far above threshold: P(still inside k steps later) = (D - k) / D
    D, pop = 20, np.zeros((1000, 1))
    pop[400:400 + D] = 100.0
    got = burst_persistence(torch.from_numpy(pop), window_steps=1, n_spikes=10, n_lags=8)
    np.testing.assert_allclose(got.numpy(), (D - np.arange(1, 9)) / D, rtol=1e-2)


def test_data_windows_and_loss_zero_at_target():
    y = torch.arange(50.0).reshape(25, 2)
    w = data_windows(y, 10)
    assert w.shape == (10, 2, 2) and torch.equal(w[:, 1, 0], y[10:20, 0])
    with pytest.raises(ValueError, match="too short"):
        data_windows(y, 30)
    target = summary_stats(torch.rand(200, 4, 3).round(), 5.0)
    total, parts = stats_loss(target, target)
    assert float(total) == 0.0 and set(parts) == {"rate", "corr", "pop_acov"}


def test_checkpoint_roundtrip_without_temp_files(tmp_path):
    m = torch.nn.Linear(3, 2)
    ck = Checkpointer(tmp_path / "ck")
    ck.save(m, "teacher_forced", 4, {"val_bits": 0.5})
    other = torch.nn.Linear(3, 2)
    info = Checkpointer(tmp_path / "ck").load(other)
    assert info["stage"] == "teacher_forced" and info["step"] == 4
    assert torch.equal(other.weight, m.weight)
    assert sorted(p.name for p in (tmp_path / "ck").iterdir()) == ["checkpoint.json", "checkpoint.safetensors"]
    assert json.loads((tmp_path / "ck" / "checkpoint.json").read_text())["metrics"]["val_bits"] == 0.5


@pytest.mark.parametrize("at", [1, 2, 3])
def test_interrupted_checkpoint_keeps_its_progress_with_its_tensors(tmp_path, monkeypatch, interrupt_replace, at):
    """Ctrl-C at any rename of a checkpoint over an earlier one: the checkpoint loaded is one of
    the two, its step that of its tensors (here each step's weights are filled with the step)."""
    m = torch.nn.Linear(3, 2, bias=False)
    ck = Checkpointer(tmp_path)
    with torch.no_grad():
        m.weight.fill_(1.0)
    ck.save(m, "teacher_forced", 1, {})
    with torch.no_grad():
        m.weight.fill_(2.0)
    interrupt_replace(at)
    try:
        ck.save(m, "teacher_forced", 2, {})
    except KeyboardInterrupt:
        pass
    monkeypatch.undo()
    other = torch.nn.Linear(3, 2, bias=False)
    info = Checkpointer(tmp_path).load(other)
    assert torch.all(other.weight == info["step"])


def test_refinement_moves_rates_towards_data():
    from organoid_sim import SpikeRecording
    from organoid_sim.fit.refine import refine_free_running
    from organoid_sim.models import SpikingNetworkModel

    rng = np.random.default_rng(1)
    rates = np.array([2.0, 4.0, 8.0, 1.0])
    trains = [np.sort(rng.random(rng.poisson(r * 60)) * 60) for r in rates]
    rec = SpikeRecording.from_spike_times(trains, t_start=0.0, t_stop=60.0)
    m = SpikingNetworkModel(n_hidden=0, dt_ms=5.0, tau_syn_ms=(10.0,))
    m.attach_recording(rec)
    with torch.no_grad():
        m.bias.fill_(0.2)  # start far too quiet (~0.7 Hz)
    counts = rec.to_tensor(5.0)
    before = m.simulate(60.0, seed=0, n_parallel=4).firing_rates()
    refine_free_running(m, counts, steps=25, batch=4, window_s=1.0, lr=0.05, likelihood_weight=0.0,
                        weights={"corr": 0.0, "pop_acov": 0.0}, progress=False)
    after = m.simulate(60.0, seed=0, n_parallel=4).firing_rates()
    err = lambda r: np.mean(np.abs(np.log((r + 0.05) / (rates + 0.05))))  # noqa: E731
    assert err(after) < 0.5 * err(before)


def test_running_mean_of_state_dicts_equals_the_plain_mean():
    from organoid_sim.fit.refine import _running_mean

    rng = np.random.default_rng(2)
    states = [{"w": torch.from_numpy(rng.normal(size=(3, 4))), "n": torch.tensor(k)} for k in range(7)]
    mean = None
    for k, st in enumerate(states):
        mean = _running_mean(mean, st, k)
    np.testing.assert_allclose(mean["w"].numpy(), np.mean([st["w"].numpy() for st in states], 0), rtol=1e-12)
    assert int(mean["n"]) == 6                      # integer entries follow the last state


def test_interrupted_fit_keeps_best_parameters_and_a_checkpoint(tmp_path):
    from organoid_sim.fit.solver import lbfgs_early_stopping

    m = torch.nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        m.weight.fill_(5.0)
    calls = {"n": 0}

    def objective():
        calls["n"] += 1
        if calls["n"] > 12:
            raise KeyboardInterrupt
        return ((m.weight - 1.0) ** 4).sum()  # quartic: L-BFGS approaches slowly

    def metrics():  # higher is better: minus the distance to the optimum
        return {"train_bits": -float(abs(m.weight.item() - 1.0)), "val_bits": float("nan")}

    with pytest.raises(KeyboardInterrupt):
        lbfgs_early_stopping(m, [m.weight], objective, metrics, max_epochs=100, iters_per_epoch=2,
                             patience=1000, progress=False, checkpoint=Checkpointer(tmp_path), stage="toy")
    assert abs(m.weight.item() - 1.0) < 4.0  # moved from 5 towards 1 and kept the best epoch
    saved = torch.nn.Linear(1, 1, bias=False)
    info = Checkpointer(tmp_path).load(saved)
    assert info["stage"] == "toy_best" and torch.equal(saved.weight, m.weight)


def test_best_checkpoint_carries_the_metrics_of_the_parameters_it_holds(tmp_path):
    """The ``_best`` checkpoint holds the kept (best) parameters; its metrics must be theirs (the
    held-out score recomputed on them), not those of the last epoch run."""
    from organoid_sim.fit.solver import lbfgs_early_stopping

    m = torch.nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        m.weight.fill_(5.0)

    def objective():   # training pulls the weight to 1 ...
        return ((m.weight - 1.0) ** 2).sum()

    def metrics():     # ... past the held-out optimum at 3, so later epochs are worse there
        w = m.weight.item()
        return {"train_bits": -abs(w - 1.0), "val_bits": -abs(w - 3.0)}

    out = lbfgs_early_stopping(m, [m.weight], objective, metrics, max_epochs=20, iters_per_epoch=1, patience=2,
                               progress=False, checkpoint=Checkpointer(tmp_path), stage="toy")
    kept = metrics()
    info = Checkpointer(tmp_path).load(torch.nn.Linear(1, 1, bias=False))
    assert info["stage"] == "toy_best" and out["val_bits"] != kept["val_bits"]   # the last epoch was worse
    assert info["metrics"] == pytest.approx(kept) and info["metrics"]["val_bits"] == pytest.approx(out["best_val_bits"])


def test_refinement_best_checkpoint_carries_the_loss_of_the_iterate_it_holds(tmp_path):
    """Refinement ends with its best iterate and a ``refine_best`` checkpoint of it: the loss terms
    saved there are those measured for that iterate (they sum to the returned ``refine_loss``),
    not those of the last step (a large step size makes the later steps worse here)."""
    from organoid_sim import SpikeRecording
    from organoid_sim.fit.refine import refine_free_running
    from organoid_sim.models import SpikingNetworkModel

    rng = np.random.default_rng(1)
    trains = [np.sort(rng.random(rng.poisson(r * 30)) * 30) for r in (2.0, 4.0, 8.0, 1.0)]
    rec = SpikeRecording.from_spike_times(trains, t_start=0.0, t_stop=30.0)
    m = SpikingNetworkModel(n_hidden=0, dt_ms=5.0, tau_syn_ms=(10.0,))
    m.attach_recording(rec)
    out = refine_free_running(m, rec.to_tensor(5.0), steps=12, batch=2, window_s=1.0, lr=0.3, likelihood_weight=0.0,
                              progress=False, checkpoint=Checkpointer(tmp_path))
    info = json.loads((tmp_path / "checkpoint.json").read_text())
    assert info["stage"] == "refine_best" and info["step"] == out["refine_best_step"] < 11
    assert sum(info["metrics"].values()) == pytest.approx(out["refine_loss"], rel=1e-9)


@pytest.mark.parametrize("min_improvement", [1e-4, 0.05])
def test_early_stopping_counts_only_gains_above_min_improvement(min_improvement):
    """On a quartic (slow, steady progress) the held-out score gains less and less per epoch: the
    fit stops once ``patience`` epochs in a row gained no more than ``min_improvement``, and keeps
    the last epoch that did (recomputed here from the scores the metrics reported)."""
    from organoid_sim.fit.solver import lbfgs_early_stopping

    m = torch.nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        m.weight.fill_(3.0)
    scores = []

    def objective():
        return ((m.weight - 1.0) ** 4).sum()

    def metrics():
        s = -float(abs(m.weight.item() - 1.0))
        scores.append(s)
        return {"train_bits": s, "val_bits": s}

    out = lbfgs_early_stopping(m, [m.weight], objective, metrics, max_epochs=60, iters_per_epoch=1, patience=3,
                               progress=False, min_improvement=min_improvement)
    best, best_epoch, bad = scores[0], 0, 0          # scores[0]: the start, epoch 0
    for epoch, s in enumerate(scores[1:], start=1):
        if s > best + min_improvement:
            best, best_epoch, bad = s, epoch, 0
        else:
            bad += 1
        if bad >= 3:
            assert epoch == len(scores) - 1        # it stopped right there
            break
    assert out["epochs"] == best_epoch and out["best_val_bits"] == best
    assert -abs(m.weight.item() - 1.0) == pytest.approx(best)
    if min_improvement > 0.01:
        assert len(scores) - 1 < 60                # stopped early, while the quartic still gains a little


def test_noise_weights_give_every_term_the_same_share_of_the_halves_loss():
    """``RefineConfig(weights="noise")``: w_k * (the loss term k between the even and odd windows)
    is the same for every term, and the shares sum to what the default weights give the same halves
    (the definition, checked on the halves computed here); a term the halves agree on exactly gets a
    bounded weight."""
    from organoid_sim.fit.config import RefineConfig
    from organoid_sim.fit.refine import noise_weights
    from organoid_sim.fit.summary import LOSS_WEIGHTS

    rng = np.random.default_rng(1)
    counts = torch.from_numpy(rng.poisson(rng.uniform(0.01, 0.08, 6), size=(4000, 6)).astype(np.float32))
    windows, c = data_windows(counts, 400), RefineConfig(bin_ms=20.0, n_lags=5)
    w = noise_weights(windows, 5.0, c, {})
    halves = [summary_stats(windows[:, k::2], 5.0, 20.0, 5) for k in (0, 1)]
    _, parts = stats_loss(halves[0], halves[1], {k: 1.0 for k in LOSS_WEIGHTS})
    shares = np.array([w[k] * parts[k] for k in parts])
    np.testing.assert_allclose(shares, shares[0], rtol=1e-9)
    assert shares.sum() == pytest.approx(sum(LOSS_WEIGHTS[k] * parts[k] for k in parts), rel=1e-9)
    assert noise_weights(windows[:, :3], 5.0, c, {}) == LOSS_WEIGHTS    # too few windows: the defaults
    # Poisson trains have no bursts: the halves' burst persistence agree (both about 0), and its
    # weight stays within 1000x of the others' instead of growing without bound
    from organoid_sim.fit.refine import _stat_options

    sparse = torch.from_numpy(rng.poisson(rng.uniform(0.002, 0.01, 6), size=(8000, 6)).astype(np.float32))
    bursty = replace(c, burst=(0.036, 10.0))
    w = noise_weights(data_windows(sparse, 400), 5.0, bursty, _stat_options(bursty, 5.0, 400))
    assert "burst_persistence" in w and max(w.values()) <= 1000.0 * min(w.values()) * (1 + 1e-9)
