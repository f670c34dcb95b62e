"""The virtual organoid's own stimulation physics (independent of the model's ``StimulusCoupling``).

Extracellular pulses excite neurons mostly through their axons, which are far more excitable
than somata (Nowak & Bullier 1998; Histed, Bonin & Reid 2009). Each virtual neuron therefore has
a straight axon of ``axon_length_um`` in a random direction. A pulse of charge ``q`` (nC per
phase) on an electrode activates the neuron when ``q`` exceeds the neuron's threshold charge at
the closest point of its axon or soma, following the current-distance law
(``threshold = q0_i * (1 + (r / r0_um)^2)``, Stoney et al. 1968), with a trial-to-trial jitter
of the threshold (probit slope ``threshold_cv``). ``q0_i`` is log-normal across neurons.

An activated neuron fires a *direct* spike after the conduction time from the activation point
back to the soma (antidromic, ``conduction_um_per_ms``) plus ``base_latency_ms``, with a small
jitter: 2-6 ms after the pulse. Its spike then spreads through the network, which may answer
with a burst 10-100 ms later: the evoked response has the direct and the network components of
real cultures (Wagenaar, Pine & Potter 2004).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy.special import ndtr

from ..events import StimEvents
from ..nn.stim_coupling import charge_per_phase_nc


@dataclass(frozen=True)
class PhysicsConfig:
    """Parameters of direct activation (charge nC, distances um, times ms)."""

    q0_nc: float = 0.12              # median threshold charge per phase at zero distance
    q0_sd_log: float = 0.4           # log-normal spread of q0 across neurons
    r0_um: float = 40.0              # distance at which the threshold doubles
    threshold_cv: float = 0.15       # relative trial-to-trial threshold jitter
    axon_length_um: float = 300.0
    soma_factor: float = 2.0         # somata need this much more charge than axons at equal distance
    base_latency_ms: float = 2.0
    conduction_um_per_ms: float = 100.0
    latency_jitter_ms: float = 0.3
    ua_per_mv: float = 1e-3          # voltage-mode conversion (uA per mV), as the model's default

    def to_dict(self) -> dict:
        """Plain dict (JSON)."""
        return asdict(self)


class StimPhysics:
    """Direct activation of the neurons at ``xy_um`` by pulses on electrodes at ``electrode_xy_um``."""

    def __init__(self, config: PhysicsConfig, xy_um: np.ndarray, electrode_ids: np.ndarray,
                 electrode_xy_um: np.ndarray, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        self.config = config
        n = len(xy_um)
        angle = rng.uniform(0, 2 * np.pi, n)
        direction = np.stack([np.cos(angle), np.sin(angle)], 1)
        self.q0 = config.q0_nc * np.exp(rng.normal(0, config.q0_sd_log, n))
        self.electrode_ids = np.asarray(electrode_ids, np.int64)
        # per electrode x neuron: effective distance and path length from activation point to soma
        rel = np.asarray(electrode_xy_um)[:, None, :] - np.asarray(xy_um)[None, :, :]     # [E, N, 2]
        along = np.clip((rel * direction[None]).sum(-1), 0, config.axon_length_um)      # foot on the axon
        r_axon = np.linalg.norm(rel - along[..., None] * direction[None], axis=-1)
        r_soma = np.linalg.norm(rel, axis=-1)
        thr_axon = 1 + (r_axon / config.r0_um) ** 2
        thr_soma = config.soma_factor * (1 + (r_soma / config.r0_um) ** 2)
        self.rel_threshold = np.minimum(thr_axon, thr_soma)                              # [E, N]
        self.path_um = np.where(thr_axon <= thr_soma, along, 0.0)

    def activation_probability(self, electrode_row: int, charge_nc: float) -> np.ndarray:
        """Probability ``[N]`` that one pulse of ``charge_nc`` (nC per phase) directly fires each neuron."""
        thr = self.q0 * self.rel_threshold[electrode_row]
        return ndtr((charge_nc - thr) / (self.config.threshold_cv * thr))

    def rows_of(self, electrode: np.ndarray) -> np.ndarray:
        """Row index in the layout of each electrode id (``ValueError`` for unknown ids)."""
        electrode = np.asarray(electrode, np.int64)
        lookup = {int(e): k for k, e in enumerate(self.electrode_ids)}
        missing = sorted({int(e) for e in electrode} - set(lookup))
        if missing:
            raise ValueError(f"stimulation on electrodes {missing[:10]} that the virtual organoid does not have")
        return np.array([lookup[int(e)] for e in electrode], np.int64)

    def draw(self, events: StimEvents, rng: np.random.Generator, dt_ms: float, onset_ms=None
             ) -> list[tuple[np.ndarray, np.ndarray]]:
        """For each event, the directly activated neurons and their spike delays in steps of ``dt_ms``.

        ``onset_ms``: where each pulse falls inside its step (ms after the step start). Delays are
        rounded up, so that no direct spike lands earlier than its latency after the pulse.
        """
        c = self.config
        rows = self.rows_of(events.electrode)
        charge = charge_per_phase_nc(events, c.ua_per_mv)
        out = []
        onset_ms = np.zeros(len(events)) if onset_ms is None else np.asarray(onset_ms, float)
        for row, q, on in zip(rows, charge, onset_ms):
            hit = np.flatnonzero(rng.random(len(self.q0)) < self.activation_probability(row, q))
            lat = (c.base_latency_ms + self.path_um[row, hit] / c.conduction_um_per_ms
                   + np.abs(rng.normal(0, c.latency_jitter_ms, len(hit))))
            out.append((hit, np.maximum(1, np.ceil((on + lat) / dt_ms - 1e-9)).astype(np.int32)))
        return out
