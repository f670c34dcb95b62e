"""Observation models (nemos-style): how a conditional intensity turns into spike counts per bin.

A model predicts the log of the expected spike count per bin, ``eta = log(lambda * dt)``
(``lambda`` in Hz, ``dt`` in seconds). The observation model turns ``eta`` into

* a log-likelihood of observed counts (used for fitting and for bits/spike), and
* samples (used for free-running simulation), drawn by inverse-CDF from one uniform number per
  bin and unit, so that a surrogate gradient can flow through the sample (see
  :mod:`organoid_sim.nn.surrogate`).

``PoissonObservation``: counts ``y ~ Poisson(mu)``, ``mu = exp(eta)``; samples are capped at
``max_count`` spikes per bin (``P(y > max_count)`` is negligible at the bin sizes used).
``BernoulliObservation``: escape noise with at most one spike per bin,
``P(y = 1) = 1 - exp(-mu)``; observed counts above 1 are clipped to 1.
"""

from __future__ import annotations

import math

import torch

__all__ = ["PoissonObservation", "BernoulliObservation", "get_observation", "saturated_bins", "bits_per_spike"]


def bits_per_spike(ll_model: float, ll_null: float, n_spikes: float) -> float:
    """Information gain over the null model per spike: ``(LL_model - LL_null) / (n_spikes * ln 2)``.

    Parameters
    ----------
    ll_model, ll_null : float
        Log-likelihoods (nats) of the model and of the null model on the same counts.
    n_spikes : float
        Number of spikes in those counts.

    Returns
    -------
    float
        Bits per spike; NaN when ``n_spikes <= 0``.
    """
    if n_spikes <= 0:
        return float("nan")
    return float((ll_model - ll_null) / (n_spikes * math.log(2.0)))


class PoissonObservation:
    """Poisson counts per bin with mean ``exp(eta)``."""

    name = "poisson"

    def __init__(self, max_count: int = 4) -> None:
        self.max_count = int(max_count)

    def prepare(self, counts: torch.Tensor) -> torch.Tensor:
        """Observed counts as this model sees them (unchanged for Poisson)."""
        return counts

    def log_likelihood(self, counts: torch.Tensor, eta: torch.Tensor,
                       log_factorial: torch.Tensor | None = None) -> torch.Tensor:
        """Summed log-likelihood (nats) of ``counts`` given ``eta = log(expected count)``; same shapes.
        ``log_factorial``: ``log_factorial(counts)`` when the caller evaluates the same counts many
        times (it does not depend on ``eta``)."""
        lg = self.log_factorial(counts) if log_factorial is None else log_factorial
        return (counts * eta - torch.exp(eta) - lg).sum()

    def log_factorial(self, counts: torch.Tensor) -> torch.Tensor:
        """The ``eta``-free part of :meth:`log_likelihood`, ``log(counts!)`` per entry (None for
        Bernoulli), for callers that evaluate the same counts many times."""
        return torch.lgamma(counts + 1.0)

    def null_eta(self, counts: torch.Tensor) -> torch.Tensor:
        """``[1, N]`` maximum-likelihood ``eta`` of a homogeneous model of ``counts`` ``[T, N]``:
        the log of each column's mean count."""
        return torch.log(counts.mean(dim=0, keepdim=True).clamp_min(1e-12))

    def null_log_likelihood(self, counts: torch.Tensor) -> torch.Tensor:
        """Log-likelihood of a homogeneous model using each column's own mean count (the baseline)."""
        return self.log_likelihood(counts, self.null_eta(counts).expand_as(counts))

    def survival(self, eta: torch.Tensor) -> torch.Tensor:
        """``P(y >= k)`` for ``k = 1..max_count``, stacked on a new last axis."""
        mu = torch.exp(eta.clamp(max=math.log(50.0)))
        term = torch.exp(-mu)
        cdf = term
        out = []
        for k in range(1, self.max_count + 1):
            out.append(1.0 - cdf)
            term = term * mu / k
            cdf = cdf + term
        return torch.stack(out, dim=-1).clamp(0.0, 1.0)

    def sample(self, eta: torch.Tensor, uniform: torch.Tensor, spike_fn) -> torch.Tensor:
        """Counts from one uniform per entry: ``y = sum_k H(P(y >= k) - u)`` (inverse CDF).

        ``spike_fn`` is the Heaviside with a surrogate gradient (a :mod:`surrogate` module).
        """
        if self.max_count == 1:
            return spike_fn(-torch.expm1(-torch.exp(eta)) - uniform)
        return spike_fn(self.survival(eta) - uniform.unsqueeze(-1)).sum(dim=-1)


class BernoulliObservation(PoissonObservation):
    """Escape noise: at most one spike per bin, ``P(spike) = 1 - exp(-exp(eta))``."""

    name = "bernoulli"

    def __init__(self, max_count: int = 1) -> None:
        super().__init__(max_count=1)

    def prepare(self, counts: torch.Tensor) -> torch.Tensor:
        """Counts clipped to 0/1 (a bin holds at most one spike under this model)."""
        return counts.clamp(max=1.0)

    def log_likelihood(self, counts: torch.Tensor, eta: torch.Tensor,
                       log_factorial: torch.Tensor | None = None) -> torch.Tensor:
        """Summed Bernoulli log-likelihood (nats) with ``p = 1 - exp(-exp(eta))`` (``log_factorial``
        is accepted for the Poisson signature and unused: 0/1 counts have none)."""
        mu = torch.exp(eta)
        log_p = torch.log(-torch.expm1(-mu.clamp_min(1e-12)))
        return (counts * log_p - (1.0 - counts) * mu).sum()

    def log_factorial(self, counts: torch.Tensor) -> None:
        """None: a Bernoulli likelihood has no ``eta``-free term."""
        return None

    def null_eta(self, counts: torch.Tensor) -> torch.Tensor:
        """``[1, N]`` maximum-likelihood ``eta`` of a homogeneous Bernoulli model of ``counts``
        ``[T, N]`` (0/1): ``p`` = each column's spike probability, ``eta = log(-log(1 - p))``."""
        p = counts.mean(dim=0, keepdim=True).clamp(1e-12, 1 - 1e-7)
        return torch.log(-torch.log1p(-p))


def get_observation(name: str):
    """The observation model called ``name`` (``"poisson"`` or ``"bernoulli"``).

    Parameters
    ----------
    name : str
        ``"poisson"`` or ``"bernoulli"``.

    Returns
    -------
    PoissonObservation or BernoulliObservation
    """
    table = {"poisson": PoissonObservation, "bernoulli": BernoulliObservation}
    try:
        return table[name]()
    except KeyError:
        raise ValueError(f"unknown observation model {name!r}; choose from {sorted(table)}") from None


def saturated_bins(n_at_cap: int, observation) -> int | None:
    """A simulation's count of bins at the observation's count cap (run-away activity), or None
    where the cap is one spike per bin (Bernoulli: every spike is at the cap, so it says nothing).

    Parameters
    ----------
    n_at_cap : int
        Bins at the cap.
    observation : PoissonObservation or BernoulliObservation
        The count model.

    Returns
    -------
    int or None
    """
    return int(n_at_cap) if observation.max_count > 1 else None
