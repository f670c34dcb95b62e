"""The causal exponential filter of the teacher-forced design against its closed form: the
impulse response of ``y_t = alpha y_{t-1} + u_{t-1}`` is ``alpha^(t-1)`` from the step after the
impulse, and that of ``y_t = alpha y_{t-1} + (1 - alpha) u_t`` is ``(1 - alpha) alpha^t``; a
filter of any input is the sum of the shifted responses (a direct convolution with NumPy)."""

from __future__ import annotations

import numpy as np
import pytest

from organoid_sim.nn.filters import exp_filter


def _direct(u: np.ndarray, alpha: np.ndarray, lag: int) -> np.ndarray:
    T = len(u)
    k = np.arange(T)
    out = np.empty_like(u, dtype=np.float64)
    for j in range(u.shape[1]):
        if lag == 1:
            h = np.where(k >= 1, alpha[j] ** np.maximum(k - 1, 0), 0.0)
        else:
            h = (1.0 - alpha[j]) * alpha[j] ** k
        out[:, j] = np.convolve(u[:, j], h)[:T]
    return out


@pytest.mark.parametrize("lag", [0, 1])
@pytest.mark.parametrize("alphas", ["one", "per column", "grouped"])
def test_exp_filter_equals_the_convolution_with_its_impulse_response(lag, alphas):
    rng = np.random.default_rng(3)
    u = rng.poisson(0.3, size=(400, 6)).astype(np.float64)
    alpha = {"one": np.full(6, 0.9), "per column": np.linspace(0.5, 0.95, 6),
             "grouped": np.array([0.8, 0.6, 0.8, 0.6, 0.8, 0.99])}[alphas]
    got = exp_filter(u, alpha if alphas != "one" else 0.9, lag)
    assert got.shape == u.shape
    np.testing.assert_allclose(got, _direct(u, alpha, lag), rtol=1e-10, atol=1e-12)
