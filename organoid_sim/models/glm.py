"""`CoupledGLM`: a coupled point-process GLM (Pillow et al. 2008) on a raised-cosine basis.

For unit ``i`` in bin ``t`` (bins of ``dt_ms``):

    eta_i(t) = log E[y_i(t)] = b_i + sum_j sum_k w_ijk (phi_k * y_j)(t)

where ``phi_k`` are ``n_basis`` raised cosines on a logarithmic time axis covering lags
``1..history_ms`` (Pillow et al. 2008, Nature 454:995): ``j = i`` is the self-history filter,
``j != i`` the coupling filters. Observation: Poisson counts or Bernoulli spikes
(:mod:`organoid_sim.nn.observation`). Penalty: ``l2 * sum w^2 + l1 * sum sqrt(w^2 + eps)``
(a smooth L1). Maximum likelihood with L-BFGS and early stopping on a held-out part of the
fitting window (:mod:`organoid_sim.fit.solver`).

Free-running simulation feeds the model its own samples; a GLM with strong positive coupling
can run away (rates up to the observation's cap) or fall silent: ``simulate`` reports the number
of saturated bins in the recording's metadata rather than hiding it.
"""

from __future__ import annotations

import math
from typing import Mapping

import numpy as np
import torch
from scipy.signal import oaconvolve
from torch import nn

from ..fit.checkpoint import Checkpointer
from ..fit.teacher import fit_linear_predictor
from ..nn.observation import get_observation, saturated_bins
from ..recording import SpikeRecording
from .base import DEFAULT_DT_MS, ModelBase, counts_to_recording, layout_of

__all__ = ["CoupledGLM", "raised_cosine_basis"]


def raised_cosine_basis(n_basis: int, n_lags: int, first_peak: float = 1.0, last_peak: float | None = None,
                        offset: float = 1.0) -> np.ndarray:
    """``[n_lags, n_basis]`` raised cosines over lags ``1..n_lags`` (bins), log-stretched (Pillow 2008).

    Peaks are equally spaced in ``log(lag + offset)`` from ``first_peak`` to ``last_peak``
    (default 60 % of the window); neighbours overlap by half so the basis sums to ~1 in between.

    Parameters
    ----------
    n_basis : int
        Basis functions.
    n_lags : int
        Lags (bins).
    first_peak, last_peak : float
        Lags of the first and last peaks.
    offset : float
        Offset of the log stretch.

    Returns
    -------
    np.ndarray
        ``[n_lags, n_basis]`` basis.
    """
    if n_basis < 1 or n_lags < 1:
        raise ValueError(f"need n_basis >= 1 and n_lags >= 1, got {n_basis}, {n_lags}")
    last_peak = 0.6 * n_lags if last_peak is None else last_peak
    lags = np.arange(1, n_lags + 1, dtype=np.float64)
    y = np.log(lags + offset)
    lo, hi = math.log(first_peak + offset), math.log(max(last_peak, first_peak + 1e-6) + offset)
    db = (hi - lo) / max(n_basis - 1, 1)
    centers = lo + db * np.arange(n_basis)
    arg = np.clip((y[:, None] - centers[None, :]) * math.pi / (2 * db), -math.pi, math.pi)
    return (np.cos(arg) + 1.0) / 2.0


class CoupledGLM(ModelBase, nn.Module):
    """Coupled Poisson/Bernoulli GLM with raised-cosine history and coupling filters.

    Parameters: ``dt_ms`` bin (ms); ``history_ms`` filter length (ms); ``n_basis`` raised cosines;
    ``observation`` ``"poisson"``/``"bernoulli"``; ``l2``, ``l1`` penalties (per spike of data);
    ``max_epochs`` L-BFGS epochs of 10 iterations; ``validation_fraction`` held out for early stopping;
    ``max_count`` the Poisson count cap per bin. Fit options: ``progress`` (progress bar), ``device``
    (``"cpu"``/``"cuda"``; default where the model is), ``checkpoint_dir`` (interrupt-safe checkpoints).
    """

    fit_options = ("max_epochs", "validation_fraction", "progress", "device", "checkpoint_dir")

    def __init__(self, *, dt_ms: float = DEFAULT_DT_MS, history_ms: float = 200.0, n_basis: int = 8,
                 observation: str = "poisson", l2: float = 1e-3, l1: float = 0.0, max_epochs: int = 20,
                 validation_fraction: float = 0.1, max_count: int = 4, progress: bool = True, device=None,
                 checkpoint_dir=None) -> None:
        nn.Module.__init__(self)
        self._store_params(locals())
        if dt_ms <= 0 or history_ms < dt_ms:
            raise ValueError(f"need dt_ms > 0 and history_ms >= dt_ms, got {dt_ms}, {history_ms}")
        self.hparams = dict(dt_ms=float(dt_ms), history_ms=float(history_ms), n_basis=int(n_basis),
                            observation=str(observation), l2=float(l2), l1=float(l1), max_epochs=int(max_epochs),
                            validation_fraction=float(validation_fraction), max_count=int(max_count))
        self.dt_ms = float(dt_ms)
        self.observation = get_observation(observation)
        if self.observation.name == "poisson":
            self.observation.max_count = int(max_count)
        self.n_lags = max(1, int(round(history_ms / dt_ms)))
        self.register_buffer("basis", torch.tensor(raised_cosine_basis(n_basis, self.n_lags), dtype=torch.float32))
        self.layout_ = None
        self.provenance_ = {}
        self.n_units = 0

    def _build(self, n: int) -> None:
        self.n_units = n
        self.bias = nn.Parameter(torch.zeros(n))
        self.filters = nn.Parameter(torch.zeros(n, n, self.hparams["n_basis"]))  # [post, pre, basis]

    def design(self, counts: torch.Tensor) -> torch.Tensor:
        """``[T, N * n_basis]`` history features: each unit's counts filtered by each basis function
        (lags ``1..n_lags``; FFT overlap-add convolution, no loop over time)."""
        y = counts.detach().cpu().double().numpy()
        basis = self.basis.cpu().double().numpy()
        T, n = y.shape
        out = np.empty((T, n, basis.shape[1]), dtype=np.float32)
        for k in range(basis.shape[1]):
            kern = np.concatenate([[0.0], basis[:, k]])  # lag 0 excluded: strictly causal
            out[:, :, k] = oaconvolve(y, kern[:, None], axes=0)[:T] if T else 0.0
        return torch.from_numpy(out.reshape(T, -1)).to(self.bias.device)

    def readout(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(A, c)`` with ``eta = X A + c``: filters as ``[N * n_basis, N]`` and the biases."""
        return self.filters.permute(1, 2, 0).reshape(-1, self.n_units), self.bias

    def eta_from_design(self, X: torch.Tensor) -> torch.Tensor:
        """``eta = b + X w`` (``[T, N]``)."""
        A, c = self.readout()
        return X @ A + c

    def _eta(self, counts: torch.Tensor) -> torch.Tensor:
        return self.eta_from_design(self.design(counts))

    def penalty(self) -> torch.Tensor:
        """L2 and smooth-L1 penalty on the filter weights."""
        w = self.filters
        return self.hparams["l2"] * (w ** 2).sum() + self.hparams["l1"] * torch.sqrt(w ** 2 + 1e-8).sum()

    def torch_device(self) -> torch.device:
        """Where the model's tensors are.

        Returns
        -------
        torch.device
        """
        return self.basis.device

    def fit(self, recording: SpikeRecording, **legacy_options) -> "CoupledGLM":
        """Maximum-likelihood fit (L-BFGS, penalised, early-stopped on the held-out end of the window).

        Fit options are constructor parameters; passing them here still works for one release
        (FutureWarning).

        Parameters
        ----------
        recording : SpikeRecording
            The fitting window.

        Returns
        -------
        CoupledGLM
            ``self``, fitted.
        """
        self._legacy_fit_options(legacy_options)
        progress, device, checkpoint_dir = (self._params[k] for k in ("progress", "device", "checkpoint_dir"))
        # fit options that steer the solver only (max_epochs, validation_fraction) are read below
        if recording.n_units == 0 or recording.n_spikes == 0:
            raise ValueError(f"cannot fit a GLM to a recording without spikes ({recording!r})")
        self._build(recording.n_units)
        if device is not None:
            self.to(device)
        self.layout_ = layout_of(recording)
        self.set_provenance(recording, dict(self.hparams))
        y = self.observation.prepare(self.binned(recording, device=self.torch_device()))
        with torch.no_grad():
            self.bias.copy_(torch.log(y.mean(0).clamp_min(1e-6)))
        X = self.design(y)
        out = fit_linear_predictor(self, X, y, self.readout, [self.bias, self.filters], self.penalty,
                                   observation=self.observation,
                                   validation_fraction=self.hparams["validation_fraction"],
                                   max_epochs=self.hparams["max_epochs"], progress=progress, desc="GLM fit",
                                   checkpoint=Checkpointer(checkpoint_dir), stage="glm")
        self.provenance_["metrics"] = out
        return self

    def coupling_filters(self) -> np.ndarray:
        """``[N_post, N_pre, n_lags]`` filters in log-rate units per spike at lags ``1..n_lags`` bins."""
        return torch.einsum("ijk,lk->ijl", self.filters, self.basis).detach().cpu().numpy()

    @torch.no_grad()
    def simulate(self, duration_s: float, seed: int = 0, t_start: float = 0.0, *, n_parallel: int = 1,
                 burn_in_s: float = 0.0, progress: bool = False) -> SpikeRecording:
        """Free-running simulation (the model fed its own samples) as a :class:`SpikeRecording`.

        ``n_parallel`` independent trajectories of ``duration_s / n_parallel`` run side by side and
        are joined in time; ``burn_in_s`` seconds from silence are discarded first. Metadata
        ``saturated_bins`` counts bins at the count cap (a run-away GLM shows up there); None for
        a Bernoulli observation (its cap of one spike per bin is every spike). ``progress``: a
        tqdm bar of the steps.
        """
        from tqdm.auto import tqdm

        self._require_fitted()
        if duration_s <= 0:
            raise ValueError(f"duration_s must be positive seconds, got {duration_s}")
        n_steps = int(round(duration_s * 1000.0 / self.dt_ms))
        B = max(1, int(n_parallel))
        per = int(math.ceil(n_steps / B))
        burn = int(round(burn_in_s * 1000.0 / self.dt_ms))
        H, n = self.n_lags, self.n_units
        # event-driven: a spike of unit j at step s adds its filters at lags 1..H to the drive of
        # steps s+1..s+H (a ring buffer), so a step costs O(spikes * H * n), not O(H * n^2)
        filt = np.ascontiguousarray(self.coupling_filters().transpose(1, 2, 0))  # [pre, lag 1..H, post]
        bias = self.bias.detach().cpu().numpy().astype(np.float64)
        rng = np.random.default_rng(seed)
        cap = self.observation.max_count
        total = burn + per
        y = np.zeros((H + total, B, n), dtype=np.float64)
        drive = np.zeros((H, B, n))
        lags = np.arange(H)
        bern = self.observation.name == "bernoulli"
        # Poisson: the intensity stops at the count cap; Bernoulli: p = 1 - exp(-mu) needs no cap
        # (the bound only keeps exp finite)
        eta_cap = 30.0 if bern else math.log(float(cap))
        bar = tqdm(total=total, disable=not progress, desc="simulate GLM", unit="step", unit_scale=True)
        for t in range(total):
            if t % 1000 == 999:
                bar.update(1000)
            slot = t % H
            mu = np.exp(np.minimum(bias + drive[slot], eta_cap))
            drive[slot] = 0.0
            if bern:
                yt = (rng.random((B, n)) < -np.expm1(-mu)).astype(np.float64)
            else:
                yt = np.minimum(rng.poisson(mu), cap).astype(np.float64)
            y[t + H] = yt
            rows = (t + 1 + lags) % H              # ring slots of steps t+1..t+H
            for b, j in zip(*np.nonzero(yt)):
                drive[rows, b] += yt[b, j] * filt[j]
        bar.update(total - bar.n)
        bar.close()
        out = y[H + burn:].transpose(1, 0, 2).reshape(B * per, n)[:n_steps]
        md = {"model": "CoupledGLM", "seed": int(seed), "dt_ms": self.dt_ms,
              "saturated_bins": saturated_bins(int((out >= cap).sum()), self.observation)}
        return counts_to_recording(out.astype(np.int64), self.dt_ms, self.layout_, t_start=t_start, seed=seed,
                                   metadata=md)

    def config(self) -> dict:
        """JSON configuration (constructor arguments and number of units)."""
        return {**self.hparams, "n_units": self.n_units}

    def _tensors(self) -> dict:
        return dict(self.state_dict())

    @classmethod
    def _from_files(cls, config: Mapping, tensors: Mapping) -> "CoupledGLM":
        cfg = dict(config)
        n = int(cfg.pop("n_units"))
        model = cls(**cfg)
        model._build(n)
        model.load_state_dict(dict(tensors))
        return model
