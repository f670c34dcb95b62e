"""The cl-sdk simulator data source backed by a fitted model (needs cl-sdk, Python >= 3.12).

cl-sdk's simulator builds this source in its producer subprocess from the factory
``organoid_sim.cl:source`` and calls ``read(from_timestamp, frame_count)`` for every block of
frames, and ``on_stims(stims)`` with each committed pulse *before* it reads the block the pulse
falls in; both go to a :class:`~organoid_sim.cl.stream.ModelStream`.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
from cl.sim import DataSourceBatch, DataSourceSpike, DataSourceStim, SimulatorDataSource, SimulatorDataSourceMetadata

from .signal import N_CHANNELS, UV_PER_UNIT
from .stream import ModelStream

#: cl-sdk's metadata of this source: 64 channels at 25 kHz, unbounded, sequential, accelerated allowed
METADATA = SimulatorDataSourceMetadata(channel_count=N_CHANNELS, uV_per_sample_unit=UV_PER_UNIT,
                                       start_timestamp=0, duration_frames=None, seekable=False,
                                       realtime_only=False, supports_accelerated=True)


def _pulse(stim: DataSourceStim) -> tuple[float, float, int]:
    """First-phase current (uA), phase duration (us) and phase count of a committed stim."""
    if not stim.phase_durations_us:
        raise ValueError(f"stim on channel {stim.channel} at frame {stim.timestamp} has no phase data")
    return float(stim.phase_currents_uA[0]), float(stim.phase_durations_us[0]), len(stim.phase_durations_us)


class ModelDataSource(SimulatorDataSource):
    """A saved model as cl-sdk's simulated CL1 (see :mod:`organoid_sim.cl`).

    Parameters
    ----------
    model : directory of a saved ``SpikingNetworkModel``.
    seed : seed (network noise, spike frames, signal noise): the same seed gives the same spikes.
    channel_map : optional ``{electrode_id: channel}`` (:mod:`organoid_sim.cl.channels`).
    noise_uv, spike_uv : noise standard deviation and spike amplitude (uV).
    dt_ms : model step (ms); default the model's.
    """

    def __init__(self, model: str, seed: int = 0, channel_map: Mapping | None = None, noise_uv: float = 2.5,
                 spike_uv: float = 60.0, dt_ms: float | None = None) -> None:
        from pathlib import Path

        if not (Path(model) / "model.json").exists():  # fail in the parent process, before cl starts
            raise FileNotFoundError(f"{model}: not a saved organoid-sim model (model.json missing)")
        self._kwargs = dict(model_dir=model, seed=int(seed), channel_map=channel_map, noise_uv=float(noise_uv),
                            spike_uv=float(spike_uv), dt_ms=dt_ms)
        self.stream: ModelStream | None = None

    @property
    def metadata(self) -> SimulatorDataSourceMetadata:
        """Static description for cl-sdk (64 channels, 25 kHz, unbounded, accelerated allowed)."""
        return METADATA

    def open(self) -> None:
        """Load the model (in cl-sdk's producer process) and start it from rest."""
        self.stream = ModelStream(**self._kwargs)
        self.stream.warm_up()

    def close(self) -> None:
        """Drop the model."""
        self.stream = None

    def on_stims(self, stims: Sequence[DataSourceStim]) -> None:
        """Hand committed pulses to the model (each at its own timestamp)."""
        if self.stream is None or not stims:
            return
        amp, ph, n = zip(*(_pulse(s) for s in stims))
        self.stream.add_pulses([s.timestamp for s in stims], [s.channel for s in stims], amp, ph, n)

    def on_stim(self, stim: DataSourceStim) -> None:
        """Hand one committed pulse to the model."""
        self.on_stims([stim])

    def read(self, from_timestamp: int, frame_count: int) -> DataSourceBatch:
        """Frames and spikes of ``[from_timestamp, from_timestamp + frame_count)``."""
        if self.stream is None:
            raise RuntimeError("ModelDataSource.read before open()")
        frames, sf, sc = self.stream.read(from_timestamp, frame_count)
        sig, origin = self.stream.signal, self.stream.origin
        spikes = [DataSourceSpike(timestamp=int(f), channel=int(c), samples=sig.snippet_uv(int(f) - origin, int(c)),
                                  channel_mean_sample=0.0) for f, c in zip(sf, sc)]
        return DataSourceBatch(frames=np.ascontiguousarray(frames), spikes=spikes)
