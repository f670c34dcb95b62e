"""The hand-written adjoint of the free run against autograd through the same steps."""

from __future__ import annotations

import pytest
import torch

from network_models import ground_truth
from organoid_sim.fit.refine import CompiledLoops
from organoid_sim.models import SpikingNetworkModel
from organoid_sim.nn import NetworkState, free_run, lif_step


def _network(observation: str, max_rate_hz, n_recorded: int) -> SpikingNetworkModel:
    """A coupled network with hidden neurons, moved off its defaults so every parameter matters."""
    m = SpikingNetworkModel(n_hidden=3, n_recorded=n_recorded, observation=observation, max_rate_hz=max_rate_hz,
                            seed=1)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        m.weight.copy_(torch.randn(m.weight.shape, generator=g) * 1.8 / n_recorded)
        m.bias.add_(torch.randn(m.bias.shape, generator=g) * 0.5 + 1.0)
        m.beta_raw.add_(torch.randn(m.beta_raw.shape, generator=g))
        m.use_logit.add_(torch.randn(m.use_logit.shape, generator=g))
    return m.double()


def _autograd_run(p, st, u, m):
    out = []
    for k in range(len(u)):
        st, _ = lif_step(p, st, None, u[k], m.observation, m.surrogate)
        out.append(st.s[:, :m.n_recorded])
    return st, torch.stack(out)


def _start(m, batch: int) -> NetworkState:
    _, st, _ = m.run(40, batch=batch, seed=3, record=False)
    return NetworkState(**{k: getattr(st, k).double() for k in ("w", "I", "a", "x", "s")})


# 64 recorded neurons take the adjoint's matrix-product path, 6 its broadcast path
@pytest.mark.parametrize("observation,max_rate_hz,n_recorded",
                         [("poisson", 300.0, 6), ("poisson", None, 6), ("bernoulli", 300.0, 6), ("poisson", 300.0, 64)])
def test_free_run_gives_autograds_spikes_and_gradients(observation, max_rate_hz, n_recorded):
    m = _network(observation, max_rate_hz, n_recorded)
    L, B = 60, 3
    g = torch.Generator().manual_seed(5)
    u = torch.rand((L, B, m.n_neurons), generator=g, dtype=torch.float64)
    weights = torch.randn((L, B, m.n_recorded), generator=g, dtype=torch.float64)
    st0 = _start(m, B)
    runs = []
    for run in (lambda p: _autograd_run(p, st0, u, m),
                lambda p: free_run(p, st0, u, m.observation, m.surrogate, m.n_recorded),
                lambda p: free_run(p, st0, u, m.observation, m.surrogate, m.n_recorded, loops=CompiledLoops)):
        m.zero_grad()
        p = m.step_params()
        p.alpha_syn.requires_grad_(True)   # a buffer of the model: checked through StepParams
        p.alpha_syn.retain_grad()
        st, s = run(p)
        # a linear and a quadratic term of the spikes, as the summary-statistics loss has both
        ((weights * s).sum() + 0.01 * (s.sum(0) ** 2).sum()).backward()
        grads = {n: q.grad.clone() for n, q in m.named_parameters() if q.grad is not None}
        runs.append((s.detach(), st, grads, p.alpha_syn.grad.clone()))
    (s_ref, st_ref, g_ref, syn_ref), *others = runs
    assert s_ref.sum() > 20                       # the network fires: the gradients are not trivial
    for compiled, (s_adj, st_adj, g_adj, syn_adj) in enumerate(others):
        assert torch.equal(s_ref, s_adj)
        for k in ("w", "I", "a", "x", "s"):
            if compiled:   # the compiled loop sums in another order: float64 rounding only
                torch.testing.assert_close(getattr(st_adj, k), getattr(st_ref, k).detach(), rtol=1e-12, atol=1e-12)
            else:
                assert torch.equal(getattr(st_ref, k).detach(), getattr(st_adj, k))
        assert g_ref.keys() == g_adj.keys() and len(g_ref) >= 8
        for name in g_ref:
            assert g_ref[name].abs().max() > 0, name
            torch.testing.assert_close(g_adj[name], g_ref[name], rtol=1e-10, atol=1e-12, msg=name)
        torch.testing.assert_close(syn_adj, syn_ref, rtol=1e-10, atol=1e-12)


def test_free_run_with_float32_stays_close_to_autograd():
    """The fit runs in float32: the adjoint sums in another order, so only rounding may differ."""
    m = ground_truth(n=8, seed=0)
    g = torch.Generator().manual_seed(2)
    u = torch.rand((200, 4, m.n_neurons), generator=g)
    _, st0, _ = m.run(100, batch=4, seed=1, record=False)
    grads, spikes = [], []
    for run in (lambda p: _autograd_run(p, st0, u, m),
                lambda p: free_run(p, st0, u, m.observation, m.surrogate, m.n_recorded),
                lambda p: free_run(p, st0, u, m.observation, m.surrogate, m.n_recorded, loops=CompiledLoops)):
        m.zero_grad()
        _, s = run(m.step_params())
        (s.mean(0) ** 2).sum().backward()
        grads.append(torch.cat([q.grad.flatten() for q in m.parameters() if q.grad is not None]))
        spikes.append(s.detach())
    assert grads[0].abs().max() > 0
    for k in (1, 2):
        assert torch.equal(spikes[k], spikes[0])
        torch.testing.assert_close(grads[k], grads[0], rtol=1e-4, atol=1e-5 * float(grads[0].abs().max()))
