"""Surrogate gradients for spike sampling (snnTorch-style, pluggable).

The forward pass is always the Heaviside step ``H(x)`` (``x > 0`` spikes), so simulations are
exact; the backward pass replaces the Dirac derivative with a smooth pseudo-derivative ``g(x)``.
In the stochastic (escape-noise) models ``x = P(spike) - u`` with ``u`` uniform, so the
pseudo-derivative measures how close the sample was to flipping.

Use by name (``"fast_sigmoid"``, ``"atan"``, ``"triangle"``, ``"straight_through"``) or pass an
instance, e.g. ``SpikingNetworkModel(surrogate=FastSigmoid(slope=10))``.
"""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["Surrogate", "FastSigmoid", "ATan", "Triangle", "StraightThrough", "get_surrogate"]


class _Spike(torch.autograd.Function):
    """Heaviside forward, ``grad * derivative(x)`` backward."""

    @staticmethod
    def forward(ctx, x, module):
        ctx.save_for_backward(x)
        ctx.module = module
        return (x > 0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad * ctx.module.derivative(x), None


class Surrogate(nn.Module):
    """Base class: subclasses define ``derivative(x)``, the pseudo-derivative of ``H`` at ``x``."""

    def derivative(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``H(x)`` (1.0 where ``x > 0``) with this module's pseudo-derivative in backward."""
        if not x.requires_grad:
            return (x > 0).to(x.dtype)
        return _Spike.apply(x, self)

    def config(self) -> dict:
        """JSON description (name and parameters) used when saving a model."""
        return {"name": self.name, **{k: float(v) for k, v in self.__dict__.items()
                                      if not k.startswith("_") and isinstance(v, (int, float))
                                      and k != "training"}}


class FastSigmoid(Surrogate):
    """``g(x) = 1 / (1 + slope |x|)^2`` (Zenke & Ganguli 2018; snnTorch ``fast_sigmoid``)."""

    name = "fast_sigmoid"

    def __init__(self, slope: float = 25.0) -> None:
        super().__init__()
        self.slope = float(slope)

    def derivative(self, x):
        return 1.0 / (1.0 + self.slope * x.abs()) ** 2


class ATan(Surrogate):
    """``g(x) = (alpha/2) / (1 + (pi alpha x / 2)^2)`` (Fang et al. 2021; snnTorch ``atan``)."""

    name = "atan"

    def __init__(self, alpha: float = 2.0) -> None:
        super().__init__()
        self.alpha = float(alpha)

    def derivative(self, x):
        return (self.alpha / 2) / (1 + (math.pi / 2 * self.alpha * x) ** 2)


class Triangle(Surrogate):
    """``g(x) = max(0, 1 - |x| / width) / width`` (Bellec et al. 2018 piecewise-linear)."""

    name = "triangle"

    def __init__(self, width: float = 0.5) -> None:
        super().__init__()
        self.width = float(width)

    def derivative(self, x):
        return torch.clamp(1.0 - x.abs() / self.width, min=0.0) / self.width


class StraightThrough(Surrogate):
    """``g(x) = 1``: the straight-through estimator (unbiased for the escape-noise probability)."""

    name = "straight_through"

    def derivative(self, x):
        return torch.ones_like(x)


_TABLE = {c.name: c for c in (FastSigmoid, ATan, Triangle, StraightThrough)}


def get_surrogate(spec) -> Surrogate:
    """A surrogate from a name, a ``config()`` dict or an instance (returned as is).

    Parameters
    ----------
    spec : str, dict or Surrogate
        ``"fast_sigmoid"``, ``"atan"``, ``"triangle"``, ``"straight_through"``, a ``config()``
        dict or an instance.

    Returns
    -------
    Surrogate
    """
    if isinstance(spec, Surrogate):
        return spec
    if isinstance(spec, str):
        spec = {"name": spec}
    spec = dict(spec)
    name = spec.pop("name")
    try:
        return _TABLE[name](**spec)
    except KeyError:
        raise ValueError(f"unknown surrogate {name!r}; choose from {sorted(_TABLE)}") from None
