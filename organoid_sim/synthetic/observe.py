"""Recording model: how the electrodes see the virtual neurons (multi-unit activity).

A spike of neuron ``i`` is detected on electrode ``e`` with probability
``p_max * exp(-(d_ie / detect_radius_um)^2 / 2)`` (extracellular amplitude falls steeply with
distance, so only neurons within about 100 um cross the detection threshold), independently for
each spike and electrode. Each electrode becomes one multi-unit channel (unit id = electrode id).
A detector dead time (``dead_time_ms``) merges near-coincident spikes on a channel, and all
channels are blanked for ``blank_ms`` after each stimulation pulse (the stimulus artefact), as
on real rigs. Spike times are jittered uniformly inside the simulation step.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class RecordingConfig:
    """Detection parameters (distances um, times ms)."""

    p_max: float = 0.6
    detect_radius_um: float = 35.0
    min_probability: float = 0.01     # pairs below this are ignored (never detected)
    dead_time_ms: float = 0.5
    blank_ms: float = 1.0

    def to_dict(self) -> dict:
        """Plain dict (JSON)."""
        return asdict(self)


class RecordingModel:
    """Multi-unit detection of neurons at ``xy_um`` by electrodes at ``electrode_xy_um``."""

    def __init__(self, config: RecordingConfig, xy_um: np.ndarray, electrode_xy_um: np.ndarray) -> None:
        self.config = config
        d = np.linalg.norm(np.asarray(electrode_xy_um)[:, None, :] - np.asarray(xy_um)[None, :, :], axis=-1)
        p = config.p_max * np.exp(-0.5 * (d / config.detect_radius_um) ** 2)
        p[p < config.min_probability] = 0.0
        self.probability = p                                                     # [E, N]
        # CSR by neuron of the electrodes that can see it, for vectorised per-spike detection
        neuron, electrode = np.nonzero(p.T)
        self._electrode = electrode.astype(np.int64)
        self._count = np.bincount(neuron, minlength=p.shape[1])
        self._start = np.concatenate([[0], np.cumsum(self._count)[:-1]])

    def neurons_seen(self) -> np.ndarray:
        """Number of neurons each electrode can detect (probability above ``min_probability``)."""
        return (self.probability > 0).sum(1)

    def detect(self, times_s: np.ndarray, neurons: np.ndarray, rng: np.random.Generator,
               stim_times_s: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Detected ``(times_s, electrode_row)`` from true spikes ``(times_s, neuron)``."""
        c = self.config
        k = self._count[neurons]
        spike = np.repeat(np.arange(len(times_s)), k)
        # position of each (spike, electrode) pair inside its neuron's CSR row
        within = np.arange(len(spike)) - np.repeat(np.cumsum(k) - k, k)
        rows = self._electrode[self._start[neurons][spike] + within]
        keep = rng.random(len(rows)) < self.probability[rows, neurons[spike]]
        t, e = times_s[spike[keep]], rows[keep].astype(np.int64)
        if stim_times_s is not None and len(stim_times_s):
            stim_times_s = np.sort(stim_times_s)
            last = np.searchsorted(stim_times_s, t, side="right") - 1
            blanked = (last >= 0) & (t - stim_times_s[np.maximum(last, 0)] < c.blank_ms * 1e-3)
            t, e = t[~blanked], e[~blanked]
        order = np.lexsort((t, e))
        t, e = t[order], e[order]
        # dead time: drop a detection closer than dead_time_ms to the previous one on its channel
        if len(t) > 1 and c.dead_time_ms > 0:
            close = (np.diff(t) < c.dead_time_ms * 1e-3) & (e[1:] == e[:-1])
            keep = np.concatenate([[True], ~close])
            t, e = t[keep], e[keep]
        return t, e
