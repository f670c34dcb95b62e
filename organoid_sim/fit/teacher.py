"""Teacher-forced maximum likelihood: models whose one-step-ahead log-intensity is linear in a
design matrix of filtered past spikes, ``eta = X A(params) + c(params)``.

That covers the coupled GLM (``X`` = raised-cosine filtered spikes) and the teacher-forced
:class:`SpikingNetworkModel` (``X`` = synaptic drives, resets and adaptation traces of the
recorded spikes, :mod:`organoid_sim.nn.filters`, passed through the network's saturating
escape-rate link): the likelihood of all bins is computed at once, without a loop over time. For
Poisson observations without a link the data term is precomputed,
``sum(y * eta) = <X^T y, A> + <sum_t y, c>``, so each evaluation costs one product ``X A``
and one ``exp``. Optimisation: L-BFGS with early stopping on the last ``validation_fraction``
of the window (:func:`organoid_sim.fit.solver.lbfgs_early_stopping`).
"""

from __future__ import annotations

from typing import Callable

import torch

from ..nn.observation import bits_per_spike
from .config import TF_MIN_IMPROVEMENT_BITS
from .likelihood import SaturatedPoissonTerm
from .solver import lbfgs_early_stopping

__all__ = ["fit_linear_predictor", "fit_teacher_forced", "fit_uncoupled", "validation_bits", "split_index",
           "network_term", "TF_PARAMS"]

TF_PARAMS = ("bias", "theta_raw", "log_delta_u", "beta_raw", "weight", "log_max_rate")


def split_index(n_bins: int, validation_fraction: float) -> int:
    """First bin of the held-out part: the last ``validation_fraction`` of ``n_bins`` bins is held
    out (early stopping, the likelihood guard); refinement's likelihood anchor uses the bins before.

    Parameters
    ----------
    n_bins : int
        Bins of the window.
    validation_fraction : float
        Held-out fraction (0: none).

    Returns
    -------
    int
        Index of the first held-out bin (``n_bins`` when nothing is held out).
    """
    return int(n_bins * (1.0 - validation_fraction)) if validation_fraction > 0 else n_bins


def _poisson_data_term(X: torch.Tensor, y: torch.Tensor):
    XtY, ysum = X.T @ y, y.sum(0)
    const = float(torch.lgamma(y + 1.0).sum())
    return lambda A, c: (XtY * A).sum() + (ysum * c).sum() - torch.exp(X @ A + c).sum() - const


def data_term(X: torch.Tensor, y: torch.Tensor, observation, link=None, fast: bool = True):
    """``(A, c) -> log-likelihood`` of ``y`` under ``eta = link(X A + c)``; the fast Poisson form
    without a link (``fast=False``: formed directly, as a held-out figure is)."""
    if fast and observation.name == "poisson" and link is None:
        return _poisson_data_term(X, y)
    link = link or (lambda e: e)
    lg = observation.log_factorial(y)  # once, not per evaluation (lgamma was a tenth of the teacher-forced stage)
    return lambda A, c: observation.log_likelihood(y, link(X @ A + c), log_factorial=lg)


def network_term(model, X: torch.Tensor, y: torch.Tensor) -> Callable[[], torch.Tensor]:
    """``() -> log-likelihood`` (nats) of ``y`` (``[T, n_recorded]``, prepared) under the teacher-forced
    network with design ``X`` and its current parameters: for Poisson observations the one-pass form
    of :class:`~organoid_sim.fit.likelihood.SaturatedPoissonTerm` (the resets and adaptation
    traces as diagonal blocks), otherwise :func:`data_term` of :meth:`teacher_readout`.

    Parameters
    ----------
    model : SpikingNetworkModel
        The network; its parameters are read at every call.
    X : torch.Tensor
        ``[T, (n_syn + 2) * n_recorded]`` teacher-forced design (:meth:`teacher_design`).
    y : torch.Tensor
        ``[T, n_recorded]`` prepared counts.

    Returns
    -------
    callable
        ``() -> scalar tensor``, differentiable in the model's parameters.
    """
    if model.observation.name == "poisson" and X.shape[1]:
        term = SaturatedPoissonTerm(X, y, n_diag=2)
        nr = model.n_recorded

        def value() -> torch.Tensor:
            em = model.eta_max()
            return term(*model.teacher_blocks(), None if em is None else em[:nr])
        return value
    generic = data_term(X, y, model.observation, network_link(model))
    return lambda: generic(*model.teacher_readout())


def network_link(model):
    """The teacher-forced link of a :class:`SpikingNetworkModel` for :func:`data_term`: its
    saturation, or None without one (so Poisson keeps the precomputed data term)."""
    return model.teacher_link if model.eta_max() is not None else None


def fit_linear_predictor(module: torch.nn.Module, X: torch.Tensor, y: torch.Tensor,
                         readout: Callable[[], tuple], params: list, penalty: Callable[[], torch.Tensor], *,
                         observation, link: Callable | None = None, validation_fraction: float = 0.1,
                         max_epochs: int = 30,
                         iters_per_epoch: int = 10, patience: int = 3, progress: bool = True,
                         desc: str = "fit", checkpoint=None, stage: str = "fit",
                         term: Callable | None = None, min_improvement: float = 1e-4) -> dict:
    """Penalised maximum likelihood of ``y`` (``[T, N]`` prepared counts) under ``eta = X A + c``.

    ``readout()`` returns ``(A, c)`` from ``params``; ``penalty()`` is added to the negative
    log-likelihood per spike; ``link`` (differentiable) maps ``X A + c`` to ``eta`` (identity if
    None). Returns train/held-out bits/spike (each against its own part's homogeneous null) and
    the number of epochs used.

    Parameters
    ----------
    module : torch.nn.Module
        Owner of ``params``.
    X : torch.Tensor
        ``[T, F]`` design matrix.
    y : torch.Tensor
        ``[T, N]`` prepared counts.
    readout : callable
        ``readout() -> (A, c)``.
    params : list of torch.Tensor
        The tensors to optimise.
    penalty : callable
        ``penalty() -> scalar tensor``.
    observation : PoissonObservation or BernoulliObservation
        The count model.
    link : callable, optional
        Differentiable map of ``X A + c`` to ``eta``.
    validation_fraction : float
        Last part of the bins held out for early stopping.
    max_epochs, iters_per_epoch, patience : int
        See :func:`organoid_sim.fit.solver.lbfgs_early_stopping`.
    progress : bool
        Show a progress bar.
    desc, stage : str
        Progress-bar label and checkpoint stage name.
    checkpoint : Checkpointer, optional
        Where to save each epoch.
    term : callable, optional
        ``term(X_part, y_part) -> (() -> log-likelihood)`` for the current parameters (as
        :func:`network_term`); default: :func:`data_term` of ``readout()``.
    min_improvement : float
        Bits/spike an epoch must gain on the held-out part to count as progress (early stopping).

    Returns
    -------
    dict
        ``train_bits``, ``val_bits``, ``best_val_bits`` (bits/spike) and ``epochs``.
    """
    cut = split_index(y.shape[0], validation_fraction)
    X_tr, y_tr, X_va, y_va = X[:cut], y[:cut], X[cut:], y[cut:]
    n_tr, n_va = max(float(y_tr.sum()), 1.0), float(y_va.sum())
    with torch.no_grad():
        ll0_tr = float(observation.null_log_likelihood(y_tr))
        ll0_va = float(observation.null_log_likelihood(y_va)) if len(y_va) else 0.0
    if term is not None:
        ll_tr = term(X_tr, y_tr)
        ll_va = term(X_va, y_va) if len(y_va) and n_va > 0 else None
    else:
        fn_tr = data_term(X_tr, y_tr, observation, link)
        ll_tr = lambda: fn_tr(*readout())  # noqa: E731
        fn_va = data_term(X_va, y_va, observation, link, fast=False)
        ll_va = (lambda: fn_va(*readout())) if len(y_va) and n_va > 0 else None

    def objective() -> torch.Tensor:
        return -ll_tr() / n_tr + penalty()

    def metrics() -> dict:
        with torch.no_grad():
            out = {"train_bits": bits_per_spike(float(ll_tr()), ll0_tr, n_tr), "val_bits": float("nan")}
            if ll_va is not None:
                out["val_bits"] = bits_per_spike(float(ll_va()), ll0_va, n_va)
        return out

    return lbfgs_early_stopping(module, params, objective, metrics, max_epochs=max_epochs,
                                iters_per_epoch=iters_per_epoch, patience=patience, progress=progress,
                                desc=desc, checkpoint=checkpoint, stage=stage, min_improvement=min_improvement)


def fit_teacher_forced(model, counts: torch.Tensor, *, validation_fraction: float = 0.1, max_epochs: int = 30,
                       progress: bool = True, checkpoint=None, design: torch.Tensor | None = None, **kwargs) -> dict:
    """Fit a :class:`SpikingNetworkModel`'s recorded-neuron parameters (bias, threshold, escape
    noise, maximum rate, adaptation strength, weights) to ``counts`` (``[T, n_recorded]``, prepared by the
    observation model, on the model's device) by teacher-forced maximum likelihood. ``design``:
    ``model.teacher_design(counts)`` when the caller already has it.

    Parameters
    ----------
    model : SpikingNetworkModel
        The built network (updated in place).
    counts : torch.Tensor
        ``[T, n_recorded]`` prepared counts.
    validation_fraction : float
        Last part held out for early stopping.
    max_epochs : int
        L-BFGS epochs.
    progress : bool
        Show a progress bar.
    checkpoint : Checkpointer, optional
        Where to save each epoch.
    design : torch.Tensor, optional
        The teacher-forced design of ``counts``.
    **kwargs
        More arguments of :func:`fit_linear_predictor`.

    Returns
    -------
    dict
        The metrics of :func:`fit_linear_predictor`.
    """
    X = model.teacher_design(counts) if design is None else design
    nr = model.n_recorded
    params = [getattr(model, p) for p in TF_PARAMS if hasattr(model, p)]
    return fit_linear_predictor(model, X, counts, model.teacher_readout, params,
                                lambda: model.distance_penalty(block=nr), observation=model.observation,
                                link=network_link(model),
                                validation_fraction=validation_fraction, max_epochs=max_epochs, progress=progress,
                                desc="teacher-forced fit", checkpoint=checkpoint, stage="teacher_forced",
                                term=lambda X_part, y_part: network_term(model, X_part, y_part),
                                **{"min_improvement": TF_MIN_IMPROVEMENT_BITS, **kwargs})


def fit_uncoupled(model, counts: torch.Tensor, *, validation_fraction: float = 0.1, max_epochs: int = 10) -> dict:
    """Turn ``model`` (a :class:`SpikingNetworkModel`) into its uncoupled null and fit it: recorded
    neurons without weights, reset or adaptation (:meth:`uncouple_recorded`), biases fitted by
    maximum likelihood to ``counts`` (``[T, n_recorded]``, prepared) and early-stopped like
    :func:`fit_teacher_forced`. Returns the same metrics; ``best_val_bits`` is the held-out
    figure (bits/spike) that a coupled fit has to beat.

    Parameters
    ----------
    model : SpikingNetworkModel
        The built network (updated in place).
    counts : torch.Tensor
        ``[T, n_recorded]`` prepared counts.
    validation_fraction : float
        Last part held out for early stopping.
    max_epochs : int
        L-BFGS epochs.

    Returns
    -------
    dict
        The metrics of :func:`fit_linear_predictor`.
    """
    model.uncouple_recorded()
    nr = model.n_recorded
    with torch.no_grad():  # start at the closed-form optimum: c = the link's inverse at the mean count
        target = model.observation.null_eta(counts[:split_index(counts.shape[0], validation_fraction)])[0]
        em = model.eta_max()
        if em is not None:  # inverse of eta' = eta - softplus(eta - eta_max), defined below eta_max
            target = target - torch.log(-torch.expm1(torch.clamp(target - em[:nr], max=-1e-3)))
        c = model.teacher_readout()[1]
        model.bias[:nr] += (target - c) * model.delta_u[:nr]
    X = counts.new_zeros((counts.shape[0], 0))  # nothing left to weigh: eta = c

    def readout():
        return counts.new_zeros((0, nr)), model.teacher_readout()[1]

    return fit_linear_predictor(model, X, counts, readout, [model.bias], lambda: counts.new_zeros(()),
                                observation=model.observation, link=network_link(model),
                                validation_fraction=validation_fraction, max_epochs=max_epochs, progress=False,
                                desc="uncoupled fit", stage="uncoupled")


def validation_bits(model, counts: torch.Tensor, validation_fraction: float = 0.1,
                    design: torch.Tensor | None = None) -> float:
    """Teacher-forced bits/spike of a :class:`SpikingNetworkModel` on the last ``validation_fraction``
    of ``counts`` (``[T, n_recorded]``, prepared), against that part's homogeneous null; the
    held-out figure :func:`fit_teacher_forced` early-stops on (NaN when the part has no spikes).
    ``design``: ``model.teacher_design(counts)`` when the caller already has it.

    Parameters
    ----------
    model : SpikingNetworkModel
        The network.
    counts : torch.Tensor
        ``[T, n_recorded]`` prepared counts.
    validation_fraction : float
        The held-out last part.
    design : torch.Tensor, optional
        The teacher-forced design of ``counts``.

    Returns
    -------
    float
        Bits per spike.
    """
    cut = split_index(counts.shape[0], validation_fraction)
    y = counts[cut:]
    n = float(y.sum())
    if n <= 0:
        return float("nan")
    X = model.teacher_design(counts) if design is None else design
    with torch.no_grad():
        eta = model.teacher_eta(X[cut:])
        ll = float(model.observation.log_likelihood(y, eta))
        ll0 = float(model.observation.null_log_likelihood(y))
    return bits_per_spike(ll, ll0, n)


_data_term = data_term  # the earlier private name, kept for one release
