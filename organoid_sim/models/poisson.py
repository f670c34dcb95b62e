"""`PoissonModel`: every unit fires as an independent homogeneous Poisson process (the baseline)."""

from __future__ import annotations

from typing import Mapping

import numpy as np
import torch

from ..nn.observation import PoissonObservation
from ..recording import SpikeRecording
from .base import (DEFAULT_DT_MS, ModelBase, electrodes_from_layout, layout_of, positions_from_layout,
                   unit_ids_from_layout)

__all__ = ["PoissonModel"]


class PoissonModel(ModelBase):
    """Homogeneous Poisson process per unit, rate = spike count / duration of the fitting window.

    ``dt_ms`` is only the bin used by :meth:`score`; simulation is exact in continuous time.
    """

    def __init__(self, *, dt_ms: float = DEFAULT_DT_MS) -> None:
        if dt_ms <= 0:
            raise ValueError(f"dt_ms must be positive milliseconds, got {dt_ms}")
        self._store_params(locals())
        self.dt_ms = float(dt_ms)
        self.observation = PoissonObservation()
        self.rates_hz_: np.ndarray | None = None
        self.layout_ = None
        self.provenance_ = {}

    @property
    def rates_hz(self) -> np.ndarray | None:
        """Same as :attr:`rates_hz_` (the fitted rate of each unit, Hz)."""
        return self.rates_hz_

    @rates_hz.setter
    def rates_hz(self, value) -> None:
        self.rates_hz_ = value

    def fit(self, recording: SpikeRecording) -> "PoissonModel":
        """Estimate each unit's rate (Hz) by maximum likelihood: spikes / duration.

        Parameters
        ----------
        recording : SpikeRecording
            The fitting window.

        Returns
        -------
        PoissonModel
            ``self``, fitted (:attr:`rates_hz_`).
        """
        if recording.duration <= 0:
            raise ValueError(f"cannot fit rates on a zero-length recording ({recording!r})")
        self.rates_hz_ = recording.firing_rates().astype(np.float64)
        self.layout_ = layout_of(recording)
        self.set_provenance(recording, {"dt_ms": self.dt_ms})
        return self

    def _eta(self, counts: torch.Tensor) -> torch.Tensor:
        rate = torch.as_tensor(self.rates_hz_ * self.dt_ms / 1000.0, dtype=counts.dtype, device=counts.device)
        return torch.log(rate.clamp_min(1e-12)).expand_as(counts)

    def simulate(self, duration_s: float, seed: int = 0, t_start: float = 0.0, *, n_parallel: int = 1,
                 burn_in_s: float = 0.0, progress: bool = False) -> SpikeRecording:
        """Independent Poisson spike trains (exact, continuous time) over ``[t_start, t_start + duration_s]`` s.

        Parameters
        ----------
        duration_s : float
            Length (s).
        seed : int
            Seed of the spike times.
        t_start : float
            Start time (s) of the result.
        n_parallel, burn_in_s, progress : int, float, bool
            Accepted so that every model simulates with the same arguments; they change nothing
            here (a homogeneous Poisson process is stationary and has no memory, and drawing it
            takes no time worth a progress bar).

        Returns
        -------
        SpikeRecording
        """
        self._require_fitted()
        if duration_s <= 0:
            raise ValueError(f"duration_s must be positive seconds, got {duration_s}")
        rng = np.random.default_rng(seed)
        n = rng.poisson(self.rates_hz_ * duration_s)
        trains = [np.sort(t_start + rng.random(k) * duration_s) for k in n]
        return SpikeRecording.from_spike_times(
            trains, t_start=t_start, t_stop=t_start + duration_s, unit_ids=unit_ids_from_layout(self.layout_),
            electrode_ids=np.asarray(self.layout_["electrode_ids"], np.int64),
            positions=positions_from_layout(self.layout_), electrodes=electrodes_from_layout(self.layout_),
            metadata={"model": "PoissonModel", "seed": int(seed)})

    def config(self) -> dict:
        """JSON configuration."""
        return {"dt_ms": self.dt_ms}

    def _tensors(self) -> dict:
        return {"rates_hz": torch.as_tensor(self.rates_hz_, dtype=torch.float64)}

    @classmethod
    def _from_files(cls, config: Mapping, tensors: Mapping) -> "PoissonModel":
        model = cls(**config)
        model.rates_hz_ = tensors["rates_hz"].numpy().astype(np.float64)
        return model
