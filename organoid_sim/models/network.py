"""`SpikingNetworkModel`: a recurrent network of stochastic leaky integrate-and-fire neurons.

One model neuron per recorded unit (at its electrode's position) plus optional hidden excitatory
and inhibitory neurons. Dynamics (per time step ``dt``; see :mod:`organoid_sim.nn.neurons`
for the full equations): exponential synaptic currents of ``n_syn`` types (time constants
``tau_syn_ms``) through weights ``W_k``, a leaky membrane (``tau_mem_ms``) with subtractive
reset by the per-neuron threshold ``theta``, per-neuron bias ``b``, spike-frequency adaptation
(``beta``, ``tau_adapt_ms``), Tsodyks-Markram short-term depression (``U``, ``tau_rec_ms``) and
exponential escape noise (``delta_u``) saturating at a per-neuron maximum rate, feeding an observation model (Poisson counts or Bernoulli
spikes per bin, :mod:`organoid_sim.nn.observation`). Stimulation enters the membrane through
:attr:`stim_coupling` (threshold units per step; its direct pathway adds evoked spikes to the
expected count of a step).

Optional Dale's law: each presynaptic neuron has a sign (recorded units and hidden E cells +1,
hidden I cells -1) and its outgoing weights are ``sign * |raw|`` (``dale_weights``). The distance prior
penalises a weight ``W_ij`` by ``l2 * exp(d_ij / distance_um) * W_ij^2`` (``d_ij`` in um between
the two neurons), so far-apart pairs need more evidence to couple.

Fitting (``fit``) and refinement live in :mod:`organoid_sim.fit`; this module holds the model.
"""

from __future__ import annotations

import math
from dataclasses import fields, replace
from typing import Any, Mapping

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ..fit import FitConfig, fit_network
from ..nn.filters import teacher_features
from ..nn.neurons import NetworkState, StepParams, lif_step, saturate
from ..nn.observation import get_observation, saturated_bins
from ..nn.stim_coupling import StimulusCoupling
from ..nn.surrogate import get_surrogate
from ..recording import SpikeRecording
from .base import (DEFAULT_DT_MS, ModelBase, add_event_counts, counts_to_recording, electrodes_from_layout,
                   layout_of)

__all__ = ["SpikingNetworkModel"]

LOG_R0 = math.log(10.0)  # escape rate (Hz) at threshold
_FIT = FitConfig()  # the defaults of the fit options
#: hidden neurons unless asked otherwise: the estimator, ``evaluate`` and ``organoid-sim fit``/``evaluate``
DEFAULT_N_HIDDEN = 8
#: the fit advised for stimulation experiments (:meth:`SpikingNetworkModel.for_stimulation`): on the
#: stimulation benchmark's two ground-truth cultures it predicted held-out pulses better than the
#: defaults, which were chosen for spontaneous fidelity (docs/stimulation.md, "Which fit to calibrate")
STIMULATION_FIT = {"n_hidden": 0, "dt_ms": 1.0, "refine_steps": 0}
#: ``simulate(progress=None)`` shows a bar above this many neuron-steps (a few seconds of work)
PROGRESS_NEURON_STEPS = 20_000_000


def _inv_softplus(y: float) -> float:
    return float(y + math.log(-math.expm1(-y)))


def _place_units(positions: np.ndarray) -> np.ndarray:
    """Unit positions (um) with unknown ones put on a 200 um grid beside the known ones."""
    pos = np.array(positions, dtype=np.float64).reshape(-1, 2)
    bad = ~np.all(np.isfinite(pos), axis=1)
    if bad.any():
        x0 = np.nanmax(pos[~bad, 0]) + 200.0 if (~bad).any() else 0.0
        k = np.arange(bad.sum())
        pos[bad] = np.stack([x0 + 200.0 * (k % 8), 200.0 * (k // 8)], axis=1)
    return pos


class SpikingNetworkModel(ModelBase, nn.Module):
    """Recurrent stochastic LIF network fitted to a recording (scikit-learn style).

    Parameters (all keyword; times in ms, positions in um)
    ----------
    n_hidden : number of hidden (unrecorded) neurons (default 8, :data:`DEFAULT_N_HIDDEN`);
        ``hidden_inhibitory_fraction`` of them inhibitory.
    dt_ms : time step (ms) of fitting and simulation.
    tau_mem_ms : membrane time constant.
    tau_syn_ms : synaptic current time constants, one per synapse type (e.g. fast and slow).
    tau_adapt_ms, beta : adaptation time constant and initial strength (threshold units per spike).
    tau_rec_ms, use : depression recovery time constant and utilisation ``U`` (Tsodyks-Markram).
    delta_u : initial escape-noise softness (threshold units).
    observation : ``"poisson"`` (counts per bin) or ``"bernoulli"`` (at most one spike per bin).
    surrogate : surrogate gradient for free-running refinement (name, config dict or module).
    dale : enforce Dale's law (see module docstring).
    dale_weights : how Dale's law keeps a weight's sign: ``"abs"`` (``sign * |raw|``, the default:
        the same conditioning as unconstrained weights) or ``"softplus"`` (``sign * softplus(raw)``;
        its gradients vanish near zero, which can leave teacher-forced fits stuck).
    max_rate_hz : initial per-neuron maximum firing rate (Hz) of the saturating escape rate
        ``lambda' = 1 / (1 / lambda + 1 / lambda_max)`` (a dead time of ``1 / lambda_max``), learned
        with the other parameters; ``None`` for the plain exponential escape rate. Without it,
        free-running bursts run up to the count cap.
    distance_um : length scale of the distance prior; ``l2`` its strength.
    autapses : let recorded units excite themselves (an electrode's unit is usually several cells).
    in_degree, density : sparse connectivity (both None: all-to-all, an ``n x n`` weight matrix
        per synapse type). ``in_degree=k``: every neuron receives synapses from ``k`` distinct
        others drawn at random; ``density=p``: from each other neuron with probability ``p``. Sparse
        models store one weight per synapse and type (``weight [n_syn, n_synapses]``, ``syn_pre``,
        ``syn_post``), so they are built, saved, loaded and simulated in O(synapses) memory; no
        autapses. :meth:`effective_weight` still returns the dense matrix (small networks only).
    seed : seed of the initial hidden weights and positions.
    n_recorded : number of recorded neurons; normally set by :meth:`fit` from the recording.

    Fit options (see :func:`organoid_sim.fit.fit_network` and :class:`organoid_sim.fit.FitConfig`,
    where their defaults live): ``max_epochs``, ``validation_fraction``, ``refine_steps``,
    ``refine_batch``, ``refine_window_s``, ``likelihood_weight``, ``refine_options``,
    ``calibration_rounds``, ``max_likelihood_loss``, ``partial_burst_fractions``, ``burst_variants``,
    ``calibration_choice``, ``discrepancy_sim_factor``, ``discrepancy_rule``, ``restarts``,
    ``checkpoint_dir``,
    ``fit_seed`` (seed of all fitting randomness), ``device`` (``"cpu"``/``"cuda"``; default
    where the model is), ``progress``, ``calibration_options`` and ``self_check`` (after fitting,
    judge a simulation of the fitting window with the in-sample bars, :mod:`organoid_sim.fit.self_check`).
    """

    fit_options = ("max_epochs", "validation_fraction", "refine_steps", "refine_batch", "refine_window_s",
                   "likelihood_weight", "refine_options", "calibration_rounds", "max_likelihood_loss",
                   "partial_burst_fractions", "burst_variants", "calibration_choice", "discrepancy_sim_factor",
                   "discrepancy_rule", "restarts", "checkpoint_dir",
                   "fit_seed", "device", "progress", "calibration_options", "self_check")
    legacy_fit_names = {"seed": "fit_seed"}

    def __init__(self, *, n_hidden: int = DEFAULT_N_HIDDEN, dt_ms: float = DEFAULT_DT_MS, tau_mem_ms: float = 5.0,
                 tau_syn_ms=(3.0, 20.0, 100.0), tau_adapt_ms: float = 1000.0, beta: float = 0.05,
                 tau_rec_ms: float = 300.0, use: float = 0.5, delta_u: float = 0.3,
                 observation: str = "poisson", surrogate: Any = "fast_sigmoid", dale: bool = False,
                 hidden_inhibitory_fraction: float = 0.2, distance_um: float = 500.0, l2: float = 1e-3,
                 autapses: bool = True, dale_weights: str = "abs", max_rate_hz: float | None = 300.0,
                 seed: int = 0, n_recorded: int | None = None, in_degree: int | None = None,
                 density: float | None = None,
                 max_epochs: int = _FIT.max_epochs, validation_fraction: float = _FIT.validation_fraction,
                 refine_steps: int = _FIT.refine_steps, refine_batch: int = _FIT.refine_batch,
                 refine_window_s: float = _FIT.refine_window_s, likelihood_weight: float = _FIT.likelihood_weight,
                 refine_options: Mapping | None = _FIT.refine_options,
                 calibration_rounds: int = _FIT.calibration_rounds,
                 max_likelihood_loss: float | None = _FIT.max_likelihood_loss,
                 partial_burst_fractions=_FIT.partial_burst_fractions,
                 burst_variants=_FIT.burst_variants, calibration_choice: str = _FIT.calibration_choice,
                 discrepancy_sim_factor: float = _FIT.discrepancy_sim_factor,
                 discrepancy_rule: str = _FIT.discrepancy_rule,
                 restarts: int = _FIT.restarts,
                 checkpoint_dir=_FIT.checkpoint_dir, fit_seed: int = _FIT.seed, device=_FIT.device,
                 progress: bool = _FIT.progress, calibration_options: Mapping | None = _FIT.calibration_options,
                 self_check: bool = _FIT.self_check) -> None:
        nn.Module.__init__(self)
        self._store_params(locals())
        if dt_ms <= 0 or tau_mem_ms <= 0 or tau_adapt_ms <= 0 or tau_rec_ms <= 0:
            raise ValueError("dt_ms and all time constants must be positive milliseconds")
        if not 0 < use < 1:
            raise ValueError(f"use (Tsodyks-Markram U) must lie in (0, 1), got {use}")
        if n_hidden < 0:
            raise ValueError(f"n_hidden must be >= 0, got {n_hidden}")
        if max_rate_hz is not None and not max_rate_hz > 0:
            raise ValueError(f"max_rate_hz must be positive (Hz) or None, got {max_rate_hz}")
        if dale_weights not in ("abs", "softplus"):
            raise ValueError(f"dale_weights must be 'abs' or 'softplus', got {dale_weights!r}")
        if in_degree is not None and density is not None:
            raise ValueError("give in_degree or density for a sparse network, not both")
        if in_degree is not None and int(in_degree) < 1:
            raise ValueError(f"in_degree must be >= 1 synapses per neuron, got {in_degree}")
        if density is not None and not 0 < density <= 1:
            raise ValueError(f"density must lie in (0, 1] (probability of a connection), got {density}")
        self.hparams = dict(n_hidden=int(n_hidden), dt_ms=float(dt_ms), tau_mem_ms=float(tau_mem_ms),
                            tau_syn_ms=[float(t) for t in np.atleast_1d(tau_syn_ms)],
                            tau_adapt_ms=float(tau_adapt_ms), beta=float(beta), tau_rec_ms=float(tau_rec_ms),
                            use=float(use), delta_u=float(delta_u), observation=str(observation),
                            dale=bool(dale), hidden_inhibitory_fraction=float(hidden_inhibitory_fraction),
                            distance_um=float(distance_um), l2=float(l2), autapses=bool(autapses),
                            dale_weights=str(dale_weights),
                            max_rate_hz=None if max_rate_hz is None else float(max_rate_hz), seed=int(seed),
                            in_degree=None if in_degree is None else int(in_degree),
                            density=None if density is None else float(density))
        self.surrogate = get_surrogate(surrogate)
        self.observation = get_observation(observation)
        self.dt_ms = float(dt_ms)
        self.n_hidden = int(n_hidden)
        self.n_recorded = 0
        self.layout_ = None
        self.provenance_ = {}
        self.stim_coupling = None
        self.electrodes = None
        if n_recorded is not None:
            self.build(n_recorded)

    # ------------------------------------------------------------------ construction
    @property
    def n_neurons(self) -> int:
        """Recorded plus hidden neurons."""
        return self.n_recorded + self.n_hidden

    @property
    def n_syn(self) -> int:
        """Number of synapse types (one per ``tau_syn_ms``)."""
        return len(self.hparams["tau_syn_ms"])

    @property
    def sparse(self) -> bool:
        """True when the synapses are a list (``in_degree`` or ``density``), not a dense matrix."""
        return self.hparams.get("in_degree") is not None or self.hparams.get("density") is not None

    def build(self, n_recorded: int, unit_xy_um: np.ndarray | None = None, electrodes=None,
              rates_hz: np.ndarray | None = None, synapses=None) -> "SpikingNetworkModel":
        """Allocate parameters for ``n_recorded`` recorded neurons (called by :meth:`fit`).

        ``unit_xy_um`` places the recorded neurons (um); hidden neurons go uniformly inside the
        bounding box of the electrodes (or of the units). ``rates_hz`` sets the initial biases so
        that each neuron starts at its recorded rate. ``synapses`` (sparse models): ``(pre, post)``
        index arrays to use instead of drawing them (loading a saved model).
        """
        hp = self.hparams
        n_rec = int(n_recorded)
        n = n_rec + self.n_hidden
        gen = np.random.default_rng(hp["seed"])
        xy = _place_units(np.zeros((n_rec, 2)) + np.arange(n_rec)[:, None] * [200.0, 0.0]
                          if unit_xy_um is None else unit_xy_um)
        box = xy
        if electrodes is not None and len(electrodes) and np.isfinite(electrodes.positions).all():
            box = electrodes.positions
        lo, hi = (box.min(0), box.max(0)) if len(box) else (np.zeros(2), np.full(2, 200.0))
        hidden_xy = lo + gen.random((self.n_hidden, 2)) * np.maximum(hi - lo, 1.0)
        self.n_recorded = n_rec
        self.register_buffer("neuron_xy_um", torch.tensor(np.vstack([xy, hidden_xy]), dtype=torch.float32))
        n_inh = int(round(hp["hidden_inhibitory_fraction"] * self.n_hidden))
        sign = np.ones(n)
        if n_inh:
            sign[n - n_inh:] = -1.0
        self.register_buffer("sign", torch.tensor(sign, dtype=torch.float32))
        # An electrode's unit is usually several neurons exciting each other, so recorded units may
        # keep a self-connection (``autapses``); hidden neurons never do.
        if self.sparse:
            pre, post = (np.asarray(v, np.int64) for v in synapses) if synapses is not None else \
                sample_synapses(n, gen, hp.get("in_degree"), hp.get("density"))
            self.register_buffer("syn_pre", torch.from_numpy(pre.astype(np.int32)))
            self.register_buffer("syn_post", torch.from_numpy(post.astype(np.int32)))
            w_shape = (self.n_syn, len(pre))
        else:
            mask = 1.0 - torch.eye(n)
            if hp["autapses"]:
                mask[:n_rec, :n_rec] = 1.0
            self.register_buffer("mask", mask)
            w_shape = (self.n_syn, n, n)
        self.register_buffer("tau_syn_ms", torch.tensor(hp["tau_syn_ms"], dtype=torch.float32))
        rates = np.full(n, 1.0) if rates_hz is None else np.concatenate(
            [np.maximum(np.asarray(rates_hz, float), 0.01), np.full(self.n_hidden, max(float(np.mean(rates_hz)), 0.1))])
        du = hp["delta_u"]
        self.bias = nn.Parameter(torch.tensor(1.0 + du * (np.log(rates) - LOG_R0), dtype=torch.float32))
        self.theta_raw = nn.Parameter(torch.full((n,), _inv_softplus(1.0)))
        self.log_delta_u = nn.Parameter(torch.full((n,), math.log(du)))
        self.beta_raw = nn.Parameter(torch.full((n,), _inv_softplus(max(hp["beta"], 1e-4))))
        self.use_logit = nn.Parameter(torch.full((n,), math.log(hp["use"] / (1 - hp["use"]))))
        self.log_tau_rec_ms = nn.Parameter(torch.full((n,), math.log(hp["tau_rec_ms"])))
        self.log_tau_adapt_ms = nn.Parameter(torch.full((n,), math.log(hp["tau_adapt_ms"])))
        if hp["max_rate_hz"] is not None:
            self.log_max_rate = nn.Parameter(torch.full((n,), math.log(hp["max_rate_hz"])))
        w0 = gen.normal(0.0, 0.01, w_shape)
        if hp["dale"]:
            w0 = np.abs(w0) if hp["dale_weights"] == "abs" else np.full(w_shape, -5.0)
        self.weight = nn.Parameter(torch.tensor(w0, dtype=torch.float32))
        if electrodes is not None:
            self.electrodes = electrodes
            self._make_coupling()
        return self

    def _make_coupling(self) -> None:
        """Create the stimulation coupling prior."""
        self.stim_coupling = StimulusCoupling.from_prior(self.neuron_xy_um.cpu().numpy(), self.electrodes).to(
            self.neuron_xy_um.device)

    # ------------------------------------------------------------------ resolved parameters
    @property
    def theta(self) -> torch.Tensor:
        """Per-neuron threshold (threshold units, > 0)."""
        return F.softplus(self.theta_raw)

    @property
    def beta(self) -> torch.Tensor:
        """Per-neuron adaptation strength (threshold units per spike, >= 0)."""
        return F.softplus(self.beta_raw)

    @property
    def delta_u(self) -> torch.Tensor:
        """Per-neuron escape-noise softness (threshold units)."""
        return torch.exp(self.log_delta_u)

    @property
    def use(self) -> torch.Tensor:
        """Per-neuron Tsodyks-Markram utilisation ``U``."""
        return torch.sigmoid(self.use_logit)

    def eta_max(self, dt_ms: float | None = None) -> torch.Tensor | None:
        """Log of the largest expected spike count per step of ``dt_ms`` (per neuron), or None
        without saturation (``max_rate_hz=None``)."""
        if self.hparams["max_rate_hz"] is None:
            return None
        dt = self.dt_ms if dt_ms is None else float(dt_ms)
        return self.log_max_rate + math.log(dt / 1000.0)

    def effective_weight(self) -> torch.Tensor:
        """``[n_syn, n_post, n_pre]`` signed weights (threshold units per presynaptic spike), diagonal 0.

        Sparse models scatter their synapses into this dense matrix (O(n^2) memory: small networks
        only; simulation goes through :meth:`to_engine`, which never forms it)."""
        w = self.weight
        if self.sparse:
            n = self.n_neurons
            pre, post = self.syn_pre.long(), self.syn_post.long()
            if self.hparams["dale"]:
                w = (w.abs() if self.hparams["dale_weights"] == "abs" else F.softplus(w)) * self.sign[pre]
            k = torch.arange(self.n_syn, device=w.device)[:, None].expand_as(w)
            dense = torch.zeros(self.n_syn, n, n, dtype=w.dtype, device=w.device)
            return dense.index_put((k, post.expand_as(w), pre.expand_as(w)), w)
        if self.hparams["dale"]:
            w = (w.abs() if self.hparams["dale_weights"] == "abs" else F.softplus(w)) * self.sign
        return w * self.mask

    def step_params(self, dt_ms: float | None = None) -> StepParams:
        """Parameters resolved for step ``dt_ms`` (default the model's), differentiable."""
        dt = self.dt_ms if dt_ms is None else float(dt_ms)
        return StepParams(
            weight=self.effective_weight(),
            alpha_syn=torch.exp(-dt / self.tau_syn_ms).view(-1, 1, 1),
            alpha_m=math.exp(-dt / self.hparams["tau_mem_ms"]),
            alpha_a=torch.exp(-dt / torch.exp(self.log_tau_adapt_ms)),
            alpha_rec=torch.exp(-dt / torch.exp(self.log_tau_rec_ms)),
            log1m_u=torch.log1p(-self.use), theta=self.theta, beta=self.beta, bias=self.bias,
            inv_delta_u=1.0 / self.delta_u, log_r0_dt=LOG_R0 + math.log(dt / 1000.0), eta_max=self.eta_max(dt))

    def distance_penalty(self, block: int | None = None) -> torch.Tensor:
        """``sum_ij l2 * exp(d_ij / distance_um) * W_ij^2`` over all synapse types (the distance prior);
        ``block=k`` restricts it to the first ``k`` neurons (the recorded ones)."""
        xy = self.neuron_xy_um[:block]
        scale = torch.exp(torch.cdist(xy, xy) / self.hparams["distance_um"])
        return self.hparams["l2"] * (scale * self.effective_weight()[:, :block, :block] ** 2).sum()

    # ------------------------------------------------------------------ teacher forcing
    @torch.no_grad()
    def uncouple_recorded(self) -> None:
        """Make the recorded neurons fire independently: no weights among them, no reset and no
        adaptation (threshold and adaptation strength ~1e-13 threshold units). With biases fitted
        (:func:`organoid_sim.fit.teacher.fit_uncoupled`) this is the homogeneous Poisson model
        inside the network's parametrisation: the null that coupling has to beat. Refinement from
        this state can grow the weights (not under Dale's law with ``"abs"`` weights: no gradient
        at 0) but hardly the threshold and adaptation (softplus gradient ~1e-13)."""
        nr = self.n_recorded
        off = -30.0 if self.hparams["dale"] and self.hparams["dale_weights"] == "softplus" else 0.0
        if self.sparse:
            self.weight[:, (self.syn_pre < nr) & (self.syn_post < nr)] = off
        else:
            self.weight[:, :nr, :nr] = off
        self.theta_raw[:nr] = -30.0   # softplus: ~1e-13, so no residual refractoriness biases the rates
        self.beta_raw[:nr] = -30.0

    def teacher_design(self, counts: torch.Tensor) -> torch.Tensor:
        """Teacher-forced design matrix ``X = [F1, F2, F3]`` (``[T, (n_syn + 2) * n_recorded]``) of
        recorded counts ``[T, n_recorded]``: synaptic drives per type, own resets and adaptation
        traces (see :mod:`organoid_sim.nn.filters`), for the current time constants."""
        nr = self.n_recorded
        with torch.no_grad():
            f = teacher_features(counts.detach().cpu().double().numpy(), self.dt_ms, self.hparams["tau_mem_ms"],
                                 self.tau_syn_ms.cpu().numpy(), torch.exp(self.log_tau_adapt_ms[:nr]).cpu().numpy(),
                                 torch.exp(self.log_tau_rec_ms[:nr]).cpu().numpy(), self.use[:nr].cpu().numpy())
        X = np.concatenate([*f["F1"], f["F2"], f["F3"]], axis=1)
        return torch.as_tensor(X, dtype=torch.float32, device=self.bias.device)

    def teacher_readout(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(A, c)`` with ``eta = X A + c`` for the design of :meth:`teacher_design` (differentiable).

        ``A`` stacks ``W_k^T / delta_u`` per synapse type, then ``diag(-theta / delta_u)`` (resets)
        and ``diag(-beta / delta_u)`` (adaptation); ``c = log(r0 dt) + (b - theta) / delta_u``.
        """
        A, D, c = self.teacher_blocks()
        return torch.cat([A, torch.diag(D[0]), torch.diag(D[1])], dim=0), c

    def teacher_blocks(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """:meth:`teacher_readout` with its diagonal blocks as vectors: ``(A_syn, D, c)``,
        ``A_syn`` ``[n_syn * n_recorded, n_recorded]`` (the synaptic rows), ``D`` ``[2, n_recorded]``
        (``-theta / delta_u``, ``-beta / delta_u``) and ``c`` (differentiable)."""
        nr = self.n_recorded
        inv = 1.0 / self.delta_u[:nr]
        w = self.effective_weight()[:, :nr, :nr]                  # [k, post, pre]
        theta, beta = self.theta[:nr], self.beta[:nr]
        c = LOG_R0 + math.log(self.dt_ms / 1000.0) + (self.bias[:nr] - theta) * inv
        return w.permute(0, 2, 1).reshape(-1, nr) * inv, torch.stack([-theta * inv, -beta * inv]), c

    def teacher_eta(self, X: torch.Tensor) -> torch.Tensor:
        """Teacher-forced ``log`` expected count per bin ``[T, n_recorded]`` from a design matrix."""
        A, c = self.teacher_readout()
        return self.teacher_link(X @ A + c)

    def teacher_link(self, eta: torch.Tensor) -> torch.Tensor:
        """The recorded neurons' saturation applied to a teacher-forced ``eta`` ``[T, n_recorded]``."""
        em = self.eta_max()
        return eta if em is None else saturate(eta, em[:self.n_recorded])

    def _eta(self, counts: torch.Tensor) -> torch.Tensor:
        return self.teacher_eta(self.teacher_design(counts))

    def torch_device(self) -> torch.device:
        """Where the parameters are (CPU before the model is built).

        Returns
        -------
        torch.device
        """
        return self.bias.device if self.n_recorded else torch.device("cpu")

    @classmethod
    def for_stimulation(cls, **params) -> "SpikingNetworkModel":
        """A model configured for stimulation experiments: :data:`STIMULATION_FIT` (no hidden
        neurons, 1 ms steps, no free-running refinement), with ``params`` taking precedence.

        The estimator's defaults were chosen for the statistics of spontaneous activity; on the
        stimulation benchmark's ground-truth cultures, fits with free-running refinement and hidden
        neurons predicted held-out pulses worse (docs/stimulation.md, "Which fit to calibrate").

        Parameters
        ----------
        **params
            Any constructor argument (times in ms).

        Returns
        -------
        SpikingNetworkModel
            Unfitted.
        """
        return cls(**{**STIMULATION_FIT, **params})

    def stimulation_fit_differences(self) -> dict[str, Any]:
        """The settings of :data:`STIMULATION_FIT` this model was configured (or fitted) with
        otherwise, name -> value; empty for a model configured with :meth:`for_stimulation`.

        Returns
        -------
        dict
        """
        p = self.get_params()
        return {k: p[k] for k, v in STIMULATION_FIT.items() if p[k] != v}

    # ------------------------------------------------------------------ fitting
    def fit(self, recording: SpikeRecording, **legacy_options) -> "SpikingNetworkModel":
        """Fit to ``recording``: teacher-forced maximum likelihood with early stopping on a held-out
        window, then free-running refinement of summary statistics and rate calibration (undone
        if they cost more than ``max_likelihood_loss`` bits/spike on the held-out window).

        The fit options are constructor parameters (:meth:`set_params`); passing them here, as
        earlier releases did, still works for one release (FutureWarning; ``seed`` maps onto
        ``fit_seed``).

        Parameters
        ----------
        recording : SpikeRecording
            The fitting window.

        Returns
        -------
        SpikingNetworkModel
            ``self``, fitted.
        """
        self._legacy_fit_options(legacy_options)
        return fit_network(self, recording, self.fit_config())

    def fit_config(self) -> FitConfig:
        """The fit options as a :class:`organoid_sim.fit.FitConfig`.

        Returns
        -------
        FitConfig
        """
        p = self._params
        return FitConfig(**{f.name: p["fit_seed" if f.name == "seed" else f.name] for f in fields(FitConfig)})

    def attach_recording(self, recording: SpikeRecording) -> None:
        """Build parameters and layout for ``recording``'s units (first step of fitting)."""
        self.layout_ = layout_of(recording)
        self.build(recording.n_units, recording.positions, recording.electrodes, recording.firing_rates())

    # ------------------------------------------------------------------ simulation
    def _external_input(self, n_steps: int, dt_ms: float, t_start: float, stim, input_current):
        """``(ext, direct)``: membrane input (threshold units per step) from stim events and
        currents, and the directly evoked spikes per step (None without them); ``[n_steps,
        n_neurons]`` tensors or, with stim events, sources that :meth:`run` reads chunk by chunk."""
        ext = direct = None
        dev = self.torch_device()
        if stim is not None and len(stim):
            if self.stim_coupling is None:
                raise RuntimeError("this model has no stimulation coupling (it was never fitted to a recording "
                                   "with electrodes)")
            # computed chunk by chunk inside run: long stimulated runs never hold [n_steps, n_neurons]
            ext, direct = self.stim_coupling.lazy_inputs(stim, n_steps, dt_ms / 1000.0, t_start)
        if input_current is not None:
            cur = torch.as_tensor(input_current, dtype=torch.float32, device=dev)
            if cur.ndim != 2 or cur.shape[0] != n_steps or cur.shape[1] not in (self.n_recorded, self.n_neurons):
                raise ValueError(f"input_current must have shape [{n_steps}, {self.n_neurons}] (steps x neurons) "
                                 f"or [{n_steps}, {self.n_recorded}] (recorded neurons only), got {tuple(cur.shape)}")
            if cur.shape[1] < self.n_neurons:
                cur = F.pad(cur, (0, self.n_neurons - cur.shape[1]))
            ext = cur if ext is None else ext.with_current(cur)
        return ext, direct

    @torch.no_grad()
    def run(self, n_steps: int, *, batch: int = 1, seed: int = 0, dt_ms: float | None = None, ext=None,
            state: NetworkState | None = None, burn_in_steps: int = 0, chunk_steps: int = 4096,
            progress: bool = False, record: bool = True, direct=None, engine: str = "auto"):
        """Free-running simulation without gradients (the fast path).

        Returns ``(events, state, n_saturated)``: ``events`` is an ``int64 [K, 4]`` array of
        ``(step, trajectory, neuron, count)`` for every nonzero count (or None with
        ``record=False``), the final state, and how many bins hit the observation's count cap (a
        run-away network shows up there). ``ext``: ``[n_steps, n_neurons]`` input (same for all
        trajectories, or ``[n_steps, batch, n_neurons]``); ``direct``: expected directly evoked
        spikes per step, same shapes, added to each step's expected count (the coupling's direct
        pathway, :meth:`StimulusCoupling.direct_input`). ``ext``/``direct`` may also be sources
        with ``rows(lo, hi)``, read one chunk at a time. ``engine="auto"``: on the CPU the compiled
        engine runs (:class:`organoid_sim.engine.Simulator`, set up once per parameter values and
        cached on the model; its random stream is seeded with ``seed``); elsewhere the
        step-by-step torch loop with a ``torch.Generator`` on the device. The two give the same
        spikes for the same uniforms and the same statistics for a seed (different streams).
        ``engine="torch"`` runs that loop on any device (the CPU too: the accelerator code path,
        testable without one).
        """
        from tqdm.auto import tqdm

        from ..engine import input_rows

        if engine not in ("auto", "torch"):
            raise ValueError(f"engine must be 'auto' or 'torch', got {engine!r}")
        self._require_built()
        dev = self.torch_device()
        cap = float(self.observation.max_count)
        total = burn_in_steps + n_steps
        bar = tqdm(total=total, disable=not progress, desc="simulate", unit="step", unit_scale=True)
        if dev.type == "cpu" and engine == "auto":
            try:
                return self._run_engine(n_steps, batch, seed, dt_ms, ext, direct, state, burn_in_steps,
                                        chunk_steps, record, bar)
            finally:
                bar.close()
        p = self.step_params(dt_ms)
        st = state or NetworkState.rest(batch, self.n_neurons, self.n_syn, device=dev)
        out, n_sat = [], 0
        gen = torch.Generator(device=dev)
        gen.manual_seed(int(seed))
        sparse = False  # on accelerators a dense product beats gathering the columns of spiking neurons
        for c0 in range(0, total, chunk_steps):
            c1 = min(c0 + chunk_steps, total)
            u = torch.rand((c1 - c0, batch, self.n_neurons), generator=gen, device=dev)
            spikes = torch.empty((c1 - c0, batch, self.n_neurons), dtype=torch.uint8, device=dev) if record else None
            lo, hi = max(c0 - burn_in_steps, 0), max(c1 - burn_in_steps, 0)   # this chunk's recorded steps
            ext_c = None if ext is None or hi <= lo else torch.as_tensor(input_rows(ext, lo, hi), device=dev)
            dir_c = None if direct is None or hi <= lo else torch.as_tensor(input_rows(direct, lo, hi), device=dev)
            for k in range(c1 - c0):
                t = c0 + k - burn_in_steps
                e = ext_c[t - lo] if (ext_c is not None and t >= 0) else None
                m = dir_c[t - lo] if (dir_c is not None and t >= 0) else None
                st, _ = lif_step(p, st, e, u[k], self.observation, self.surrogate, sparse, direct=m)
                if record:
                    spikes[k] = st.s.to(torch.uint8)
            if record:
                lo = max(0, burn_in_steps - c0)
                nz = torch.nonzero(spikes[lo:])
                if len(nz):
                    cnt = spikes[lo:][nz[:, 0], nz[:, 1], nz[:, 2]].to(torch.int64)
                    n_sat += int((cnt >= cap).sum())
                    nz[:, 0] += c0 + lo - burn_in_steps
                    out.append(torch.cat([nz, cnt[:, None]], 1).cpu().numpy())
            bar.update(c1 - c0)
        bar.close()
        events = (np.concatenate(out) if out else np.zeros((0, 4), np.int64)) if record else None
        return events, st, n_sat

    def to_engine(self, dt_ms: float | None = None):
        """This network as a torch-free :class:`organoid_sim.engine.NetworkSpec`.

        Parameters
        ----------
        dt_ms : step size (ms) to resolve the decays for; default the model's ``dt_ms``.

        Returns
        -------
        NetworkSpec
            The same arrays :func:`organoid_sim.engine.load_network` reads from ``model.save(dir)``.
        """
        from ..engine import spec_from_arrays

        self._require_built()
        tensors = {k: v.detach().cpu().numpy() for k, v in self.state_dict().items()
                   if not k.startswith("stim_coupling.")}
        spec = spec_from_arrays(self.config(), tensors, self.layout_, dt_ms)
        if spec.max_count != self.observation.max_count:
            spec = replace(spec, max_count=int(self.observation.max_count))
        return spec

    def _engine_key(self, dt_ms: float) -> tuple:
        """Changes whenever a parameter or buffer is replaced or modified in place (``_version``)."""
        return (float(dt_ms), self.observation.max_count,
                tuple((id(t), t._version) for t in (*self.parameters(), *self.buffers())))

    def engine_simulator(self, dt_ms: float | None = None, seed: int = 0, batch: int = 1):
        """The cached :class:`organoid_sim.engine.Simulator` of this network, reset to rest with
        ``seed`` and ``batch`` trajectories (set up again only after the parameters changed).

        Parameters
        ----------
        dt_ms : step size (ms); default the model's.
        seed : seed of the escape noise.
        batch : number of trajectories.

        Returns
        -------
        Simulator
        """
        from ..engine import Simulator

        dt = self.dt_ms if dt_ms is None else float(dt_ms)
        key = self._engine_key(dt)
        cached = self.__dict__.get("_engine_cache")
        if cached is None or cached[0] != key:
            cached = (key, Simulator(self.to_engine(dt), seed=seed, batch=batch))
            self.__dict__["_engine_cache"] = cached
        sim = cached[1]
        sim.reset(seed=seed, batch=batch)
        return sim

    def _run_engine(self, n_steps, batch, seed, dt_ms, ext, direct, state, burn_in_steps, chunk_steps, record, bar):
        """:meth:`run` on the compiled engine (CPU)."""
        sim = self.engine_simulator(dt_ms, seed, batch)
        sim.chunk_steps = int(chunk_steps)
        if state is not None:
            sim.state = {f.name: getattr(state, f.name).detach().cpu().numpy() for f in fields(state)}
        if burn_in_steps:
            sim.run(int(burn_in_steps), record=False, progress_bar=bar)
        events = sim.run(int(n_steps), ext=_as_numpy_rows(ext), direct=_as_numpy_rows(direct), record=record,
                         progress_bar=bar)
        n_sat = int((events[:, 3] >= self.observation.max_count).sum()) if record else 0
        st = NetworkState(**{k: torch.from_numpy(v) for k, v in sim.state.items()})
        return events, st, n_sat

    def _require_built(self) -> None:
        if self.n_recorded == 0:
            raise RuntimeError("SpikingNetworkModel has no neurons yet: call fit(recording) or pass n_recorded=")

    def simulate(self, duration_s: float, seed: int = 0, stim=None, input_current=None, t_start: float = 0.0,
                 dt_ms: float | None = None, *, burn_in_s: float = 0.0, n_parallel: int = 1,
                 include_hidden: bool = False, progress: bool | None = None) -> SpikeRecording:
        """Free-running simulation of ``duration_s`` seconds as a :class:`SpikeRecording`.

        ``stim`` (:class:`StimEvents`, absolute times in s) drives the neurons through
        :attr:`stim_coupling` (membrane input and, when it has one, its direct pathway);
        ``input_current`` (``[steps, n_neurons]`` or ``[steps, n_recorded]``, threshold units per
        step) is added to the membrane. The result starts at ``t_start`` (s),
        carries ``stim`` and holds the recorded units (``include_hidden=True`` adds hidden
        neurons as extra units). ``burn_in_s`` seconds are simulated first and discarded (from
        rest). ``n_parallel > 1`` runs that many independent trajectories of
        ``duration_s / n_parallel`` each side by side and joins them in time (faster; no stim).
        Metadata ``saturated_bins`` counts bins at the observation's count cap (run-away activity);
        None for a Bernoulli observation, whose cap of one spike per bin is every spike.
        ``progress``: a tqdm bar of the steps (``None``: only for long runs, more than
        :data:`PROGRESS_NEURON_STEPS` neuron-steps). A run whose ``steps x neurons`` counts pass the
        request-size limit is refused first (:mod:`organoid_sim.limits`).
        """
        from ..limits import BYTES_PER_COUNT, check_request

        self._require_built()
        dt = self.dt_ms if dt_ms is None else float(dt_ms)
        if not (math.isfinite(duration_s) and duration_s > 0):
            raise ValueError(f"duration_s must be a positive, finite number of seconds, got {duration_s}")
        n_parallel = int(n_parallel)
        if n_parallel < 1:
            raise ValueError(f"n_parallel must be >= 1 trajectories, got {n_parallel}")
        if n_parallel > 1 and (stim is not None and len(stim) or input_current is not None):
            raise ValueError("n_parallel > 1 cannot be combined with stim or input_current")
        n_steps = int(round(duration_s * 1000.0 / dt))
        if n_steps < 1:
            raise ValueError(f"duration_s ({duration_s:g} s) is shorter than half a model step ({dt:g} ms)")
        if self.layout is None:   # built with n_recorded= but never fitted: no unit ids to label the output
            raise RuntimeError("SpikingNetworkModel has no unit layout: fit it to a recording (or set model.layout) "
                               "before simulate(); run() works without one")
        n_out = self.n_neurons if include_hidden else self.n_recorded
        check_request(f"simulate({duration_s:g} s)", float(n_steps) * n_out * BYTES_PER_COUNT,
                      f"{n_steps:,} steps of {dt:g} ms x {n_out} neurons")
        per = int(math.ceil(n_steps / n_parallel))
        burn = int(round(burn_in_s * 1000.0 / dt))
        if progress is None:
            progress = (per + burn) * n_parallel * self.n_neurons > PROGRESS_NEURON_STEPS
        ext, direct = self._external_input(n_steps, dt, t_start, stim, input_current)
        events, _, n_sat = self.run(per, batch=n_parallel, seed=seed, dt_ms=dt, ext=ext, direct=direct,
                                    burn_in_steps=burn, progress=progress)
        # trajectory b follows trajectory b-1 in time
        counts = add_event_counts(np.zeros((n_steps, n_out), dtype=np.int64), events, steps_per_trajectory=per)
        layout = self.layout
        if include_hidden:
            layout = _with_hidden(layout, self.n_hidden, self.neuron_xy_um[self.n_recorded:].cpu().numpy())
        md = {"model": "SpikingNetworkModel", "seed": int(seed), "dt_ms": dt,
              "saturated_bins": saturated_bins(n_sat, self.observation),
              "source_model": self.provenance_.get("source"), "well": self.provenance_.get("well")}
        return counts_to_recording(counts, dt, layout, t_start=t_start, seed=seed, stim=stim, metadata=md)

    def stimulate(self, protocol, seed: int = 0, **kwargs) -> SpikeRecording:
        """Run a stimulation protocol (a :class:`StimEvents` or an object with ``to_events()`` and
        ``duration_s``); other keyword arguments go to :meth:`simulate`."""
        events = protocol.to_events() if hasattr(protocol, "to_events") else protocol
        duration = getattr(protocol, "duration_s", None)
        if duration is None:
            duration = float(events.time.max()) + 1.0 if len(events) else 1.0
        return self.simulate(float(duration), seed=seed, stim=events, **kwargs)

    # ------------------------------------------------------------------ files
    def config(self) -> dict:
        """JSON configuration (constructor arguments, sizes, surrogate, stimulation coupling)."""
        cfg = {**self.hparams, "n_recorded": self.n_recorded, "surrogate": self.surrogate.config()}
        if self.stim_coupling is not None:
            cfg["stim_coupling"] = self.stim_coupling.config()
        return cfg

    def _tensors(self) -> dict[str, torch.Tensor]:
        return dict(self.state_dict())

    @classmethod
    def _from_files(cls, config: Mapping, tensors: Mapping[str, torch.Tensor]) -> "SpikingNetworkModel":
        cfg = dict(config)
        coupling_cfg = cfg.pop("stim_coupling", None)
        n_rec = cfg.pop("n_recorded", None)
        model = cls(**cfg)
        if n_rec is not None:
            syn = (tensors["syn_pre"], tensors["syn_post"]) if model.sparse else None
            model.build(int(n_rec), synapses=None if syn is None else tuple(np.asarray(v) for v in syn))
        if coupling_cfg is not None:
            model.stim_coupling = StimulusCoupling.from_config(coupling_cfg)
        model.load_state_dict(dict(tensors))
        return model

    def finish_loading(self) -> None:
        """Restore the electrode layout after :func:`load_model` set ``layout``."""
        if self.layout_ is not None:
            self.electrodes = electrodes_from_layout(self.layout_)


def sample_synapses(n: int, gen: np.random.Generator, in_degree: int | None = None,
                    density: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(pre, post)`` int64 indices of random synapses among ``n`` neurons, sorted by ``post``
    then ``pre``, no self-connections, no duplicates: ``in_degree`` distinct presynaptic partners
    per neuron, or each ordered pair with probability ``density``. O(synapses) memory.

    Parameters
    ----------
    n : number of neurons.
    gen : random generator.
    in_degree : synapses received per neuron (capped at ``n - 1``).
    density : connection probability of each ordered pair.

    Returns
    -------
    tuple of numpy.ndarray
    """
    if n < 2:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    if in_degree is not None:
        deg = np.full(n, min(int(in_degree), n - 1), np.int64)
    else:
        deg = gen.binomial(n - 1, float(density), size=n)
    post = np.repeat(np.arange(n, dtype=np.int64), deg)
    if deg.max() > (n - 1) // 2:  # dense rows: a random subset of each row, without rejection
        order = np.argsort(gen.random((n, n - 1)), axis=1)
        pre = np.concatenate([order[i, :deg[i]] for i in range(n)]).astype(np.int64)
        pre += pre >= post
    else:  # sparse rows: draw with replacement and redraw the duplicates (few per row)
        pre = gen.integers(0, n - 1, size=len(post))
        pre += pre >= post
        todo = np.arange(len(post))
        while len(todo):
            key = post * n + pre
            order = np.argsort(key, kind="stable")
            dup = np.zeros(len(key), bool)
            dup[order[1:]] = key[order[1:]] == key[order[:-1]]
            todo = np.flatnonzero(dup)
            redraw = gen.integers(0, n - 1, size=len(todo))
            pre[todo] = redraw + (redraw >= post[todo])
    order = np.lexsort((pre, post))
    return pre[order], post[order]


class _NumpyRows:
    """A row source (``rows(lo, hi)``) whose rows come back as NumPy arrays (detached tensors)."""

    def __init__(self, src) -> None:
        self.src = src

    def __len__(self) -> int:
        return len(self.src)

    def rows(self, lo: int, hi: int) -> np.ndarray:
        r = self.src.rows(lo, hi) if hasattr(self.src, "rows") else self.src[lo:hi]
        return r.detach().cpu().numpy() if isinstance(r, torch.Tensor) else np.asarray(r)


def _as_numpy_rows(src):
    """Per-step input for the engine: None, a NumPy array, or a row source giving NumPy rows."""
    if src is None or isinstance(src, np.ndarray):
        return src
    if isinstance(src, torch.Tensor):
        return src.detach().cpu().numpy()
    return _NumpyRows(src)


def _with_hidden(layout: Mapping, n_hidden: int, xy: np.ndarray) -> dict:
    """A layout with hidden neurons appended as units ``hidden_0..`` (electrode -1) at ``xy`` um."""
    lay = dict(layout)
    ids = list(lay["unit_ids"])
    if lay.get("unit_ids_kind", "i") in "iu":
        start = (max(ids) + 1) if ids else 0
        hidden = list(range(start, start + n_hidden))
    else:
        hidden = [f"hidden_{k}" for k in range(n_hidden)]
    lay["unit_ids"] = ids + hidden
    lay["electrode_ids"] = list(lay["electrode_ids"]) + [-1] * n_hidden
    lay["positions"] = list(lay["positions"]) + xy.tolist()
    return lay
