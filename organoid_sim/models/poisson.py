"""`PoissonModel`: every unit fires as an independent homogeneous Poisson process (the baseline)."""

from __future__ import annotations

from typing import Mapping

import numpy as np
import torch

from ..nn.observation import PoissonObservation
from ..recording import SpikeRecording
from .base import ModelBase, electrodes_from_layout, layout_of, positions_from_layout, unit_ids_from_layout

__all__ = ["PoissonModel"]


class PoissonModel(ModelBase):
    """Homogeneous Poisson process per unit, rate = spike count / duration of the fitting window.

    ``dt_ms`` is only the bin used by :meth:`score`; simulation is exact in continuous time.
    """

    def __init__(self, *, dt_ms: float = 5.0) -> None:
        if dt_ms <= 0:
            raise ValueError(f"dt_ms must be positive milliseconds, got {dt_ms}")
        self.dt_ms = float(dt_ms)
        self.observation = PoissonObservation()
        self.rates_hz: np.ndarray | None = None
        self.layout = None
        self.provenance = {}

    def fit(self, recording: SpikeRecording, **_ignored) -> "PoissonModel":
        """Estimate each unit's rate (Hz) by maximum likelihood: spikes / duration."""
        if recording.duration <= 0:
            raise ValueError(f"cannot fit rates on a zero-length recording ({recording!r})")
        self.rates_hz = recording.firing_rates().astype(np.float64)
        self.layout = layout_of(recording)
        self._set_provenance(recording, {"dt_ms": self.dt_ms})
        return self

    def _eta(self, counts: torch.Tensor) -> torch.Tensor:
        rate = torch.as_tensor(self.rates_hz * self.dt_ms / 1000.0, dtype=counts.dtype, device=counts.device)
        return torch.log(rate.clamp_min(1e-12)).expand_as(counts)

    def simulate(self, duration_s: float, seed: int = 0, t_start: float = 0.0, **_ignored) -> SpikeRecording:
        """Independent Poisson spike trains (exact, continuous time) over ``[t_start, t_start + duration_s]`` s."""
        self._require_fitted()
        if duration_s <= 0:
            raise ValueError(f"duration_s must be positive seconds, got {duration_s}")
        rng = np.random.default_rng(seed)
        n = rng.poisson(self.rates_hz * duration_s)
        trains = [np.sort(t_start + rng.random(k) * duration_s) for k in n]
        return SpikeRecording.from_spike_times(
            trains, t_start=t_start, t_stop=t_start + duration_s, unit_ids=unit_ids_from_layout(self.layout),
            electrode_ids=np.asarray(self.layout["electrode_ids"], np.int64),
            positions=positions_from_layout(self.layout), electrodes=electrodes_from_layout(self.layout),
            metadata={"model": "PoissonModel", "seed": int(seed)})

    def config(self) -> dict:
        """JSON configuration."""
        return {"dt_ms": self.dt_ms}

    def _tensors(self) -> dict:
        return {"rates_hz": torch.as_tensor(self.rates_hz, dtype=torch.float64)}

    @classmethod
    def _from_files(cls, config: Mapping, tensors: Mapping) -> "PoissonModel":
        model = cls(**config)
        model.rates_hz = tensors["rates_hz"].numpy().astype(np.float64)
        return model
