"""The one-pass teacher-forced likelihood (organoid_sim.fit.likelihood) against scipy's Poisson
log-pmf (its value) and autograd through the model's own readout and link (its gradients)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import poisson

from network_models import ground_truth
from organoid_sim.fit import likelihood
from organoid_sim.fit.teacher import network_term


def _fitted_setup(max_rate_hz, dtype=torch.float64):
    """A coupled ground-truth network (max_rate_hz set or None), its recorded counts and design."""
    m = ground_truth(n=6, seed=0)
    if max_rate_hz is None:
        m.hparams["max_rate_hz"] = None
    counts = m.observation.prepare(m.binned(m.simulate(40.0, seed=1))).to(dtype)
    m = m.to(dtype)
    with torch.no_grad():   # off the simulated parameters, so every gradient is non-zero
        m.bias.add_(0.3)
        m.log_max_rate.sub_(1.5)
    return m, counts, m.teacher_design(counts).to(dtype)


@pytest.mark.parametrize("max_rate_hz", [300.0, None])
@pytest.mark.parametrize("rows_per_block,copy_limit", [(37, 1 << 30), (8192, 1 << 30), (37, 0)])
def test_one_pass_term_equals_scipy_and_autograd(monkeypatch, max_rate_hz, rows_per_block, copy_limit):
    monkeypatch.setattr(likelihood, "ROWS_PER_BLOCK", rows_per_block)   # many blocks, a ragged last one
    monkeypatch.setattr(likelihood, "COPY_LIMIT_BYTES", copy_limit)      # 0: the design read in place
    m, y, X = _fitted_setup(max_rate_hz)
    assert y.sum() > 100 and (y > 1).any()
    params = [p for p in (m.bias, m.weight, m.theta_raw, m.beta_raw, m.log_delta_u, m.log_max_rate)]
    grads = []
    for ll_of in (lambda: network_term(m, X, y)(),
                  lambda: m.observation.log_likelihood(y, m.teacher_eta(X))):
        m.zero_grad()
        ll = ll_of()
        ll.backward()
        grads.append([None if p.grad is None else p.grad.clone() for p in params])
        with torch.no_grad():
            eta = m.teacher_eta(X).numpy()
        assert float(ll.detach()) == pytest.approx(poisson.logpmf(y.numpy(), np.exp(eta)).sum(), rel=1e-10)
    one_pass, reference = grads
    for name, a, b in zip(("bias", "weight", "theta", "beta", "delta_u", "max_rate"), one_pass, reference):
        if max_rate_hz is None and name == "max_rate":
            assert a is None and (b is None or float(b.abs().max()) == 0.0)
            continue
        assert float(b.abs().max()) > 0, name
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9 * float(b.abs().max()), msg=name)


def test_one_pass_term_rejects_a_design_of_another_length():
    m, y, X = _fitted_setup(300.0)
    with pytest.raises(ValueError, match="does not fit counts"):
        likelihood.SaturatedPoissonTerm(X[:-1], y, n_diag=2)
