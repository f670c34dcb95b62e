"""`VirtualOrganoid`: network + stimulation physics + recording model, and its true evoked responses."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from ..events import StimEvents
from ..recording import Electrodes, SpikeRecording
from ..tensor import bin_index
from .network import Network, NetworkConfig, NetworkState
from .observe import RecordingConfig, RecordingModel
from .physics import PhysicsConfig, StimPhysics

#: window (s after the pulse) of the true responses: after the 1 ms blanking, before the next pulse
RESPONSE_WINDOW = (0.002, 0.050)


def grid_electrodes(rows: int = 8, cols: int = 8, pitch_um: float = 200.0) -> Electrodes:
    """A CL1-like square grid: ids ``0..rows*cols-1`` row by row, ``x = col * pitch``, ``y = row * pitch`` (um)."""
    r, c = np.divmod(np.arange(rows * cols), cols)
    return Electrodes(np.arange(rows * cols, dtype=np.int64), c * float(pitch_um), r * float(pitch_um))


@dataclass(frozen=True)
class OrganoidConfig:
    """Everything that defines a virtual organoid (the ``seed`` draws its anatomy)."""

    rows: int = 8
    cols: int = 8
    pitch_um: float = 200.0
    network: NetworkConfig = field(default_factory=NetworkConfig)
    physics: PhysicsConfig = field(default_factory=PhysicsConfig)
    recording: RecordingConfig = field(default_factory=RecordingConfig)
    warmup_s: float = 5.0

    def to_dict(self) -> dict:
        """Nested plain dict (JSON)."""
        return {"rows": self.rows, "cols": self.cols, "pitch_um": self.pitch_um, "warmup_s": self.warmup_s,
                "network": self.network.to_dict(), "physics": self.physics.to_dict(),
                "recording": self.recording.to_dict()}

    @classmethod
    def small(cls, n_neurons: int = 300, rows: int = 3, cols: int = 3) -> "OrganoidConfig":
        """A small organoid for tests and quick looks: same densities, fewer electrodes and neurons."""
        return cls(rows=rows, cols=cols, network=NetworkConfig(n_neurons=n_neurons), warmup_s=1.0)


@dataclass(frozen=True)
class TrueResponses:
    """Ground-truth evoked responses, measured with many independent trials on the organoid.

    ``response_probability`` and ``median_latency_s`` are ``[E, A, C]``: stimulated electrode x
    amplitude (uA, ``phase_us`` per phase) x recorded channel (``unit_ids``); latency NaN where the
    channel never responded. ``window`` (s after the pulse) is where first spikes are counted.
    """

    electrodes: np.ndarray
    amplitudes_ua: np.ndarray
    phase_us: float
    unit_ids: np.ndarray
    response_probability: np.ndarray
    median_latency_s: np.ndarray
    n_trials: int
    window: tuple[float, float]

    def to_dict(self) -> dict:
        """JSON-ready dict (latencies in ms, ``None`` where undefined)."""
        lat = np.where(np.isfinite(self.median_latency_s), self.median_latency_s * 1e3, np.nan)
        return {"electrodes": self.electrodes.tolist(), "amplitudes_uA": self.amplitudes_ua.tolist(),
                "phase_us": self.phase_us, "unit_ids": self.unit_ids.tolist(), "n_trials": self.n_trials,
                "window_s": list(self.window),
                "response_probability": np.round(self.response_probability, 4).tolist(),
                "median_latency_ms": [[[None if not np.isfinite(v) else round(float(v), 3) for v in row]
                                       for row in block] for block in lat]}

    @classmethod
    def from_dict(cls, d: dict) -> "TrueResponses":
        """Inverse of :meth:`to_dict`."""
        lat = np.array([[[np.nan if v is None else v for v in row] for row in block]
                        for block in d["median_latency_ms"]], float) * 1e-3
        return cls(np.asarray(d["electrodes"], np.int64), np.asarray(d["amplitudes_uA"], float), float(d["phase_us"]),
                   np.asarray(d["unit_ids"]), np.asarray(d["response_probability"], float), lat,
                   int(d["n_trials"]), tuple(d["window_s"]))


class VirtualOrganoid:
    """A ground-truth bursting culture under an MEA (see :mod:`organoid_sim.synthetic`).

    ``seed`` draws the anatomy (positions, connections, thresholds); each simulation takes its own
    ``seed`` for noise, activation and detection, so the same seeds give the same recording.
    """

    def __init__(self, config: OrganoidConfig | None = None, seed: int = 0) -> None:
        self.config = config or OrganoidConfig()
        self.seed = int(seed)
        c = self.config
        self.electrodes = grid_electrodes(c.rows, c.cols, c.pitch_um)
        exy = self.electrodes.positions
        bbox = (exy[:, 0].min(), exy[:, 0].max(), exy[:, 1].min(), exy[:, 1].max())
        self.network = Network.build(c.network, bbox, seed=self.seed)
        self.physics = StimPhysics(c.physics, self.network.xy_um, self.electrodes.ids, exy, seed=self.seed + 1)
        self.recorder = RecordingModel(c.recording, self.network.xy_um, exy)

    @property
    def dt_s(self) -> float:
        """Simulation step in seconds."""
        return self.config.network.dt_ms * 1e-3

    def _steps(self, duration_s: float) -> int:
        return int(bin_index(np.array([duration_s / self.dt_s]))[0])

    def warm_state(self, batch: int = 1, seed: int = 0) -> NetworkState:
        """State after ``warmup_s`` seconds of spontaneous activity (past the start-up transient)."""
        state = self.network.initial_state(batch, seed=seed)
        self.network.run(state, self._steps(self.config.warmup_s), seed=seed + 7919)
        return state

    def _forced(self, events: StimEvents, batch_of_event: np.ndarray, t0: float, rng) -> dict:
        """Direct activations per simulation step: ``{step: (batch_idx, neuron_idx, delay_steps)}``."""
        steps = bin_index((events.time - t0) / self.dt_s)
        onset_ms = ((events.time - t0) - steps * self.dt_s) * 1e3
        draws = self.physics.draw(events, rng, self.config.network.dt_ms, np.clip(onset_ms, 0, None))
        forced: dict[int, list] = {}
        for k, (hit, delay) in enumerate(draws):
            forced.setdefault(int(steps[k]), []).append((np.full(len(hit), batch_of_event[k]), hit, delay))
        return {s: tuple(torch.as_tensor(np.concatenate(p)) for p in zip(*parts)) for s, parts in forced.items()}

    def _observe(self, step, neuron, t0: float, t_stop: float, rng, stim: StimEvents,
                 metadata: dict) -> SpikeRecording:
        times = t0 + (step + rng.random(len(step))) * self.dt_s          # jitter inside the step
        keep = times < t_stop
        t, row = self.recorder.detect(times[keep], neuron[keep], rng, stim.time)
        ids = self.electrodes.ids
        md = {"source": "organoid_sim.synthetic", "format": "synthetic", "organoid_seed": self.seed,
              "config": self.config.to_dict(), **metadata}
        return SpikeRecording.from_pairs(t, ids[row], unit_ids=ids, electrode_ids=ids, electrodes=self.electrodes,
                                         t_start=t0, t_stop=t_stop, stim=stim, sampling_rate=1.0 / self.dt_s,
                                         metadata=md)

    def spontaneous(self, duration_s: float, seed: int = 0, progress: bool = True) -> SpikeRecording:
        """A spontaneous recording of ``duration_s`` seconds (one multi-unit channel per electrode)."""
        return self.stimulate(StimEvents.empty(), duration_s, seed=seed, progress=progress)

    def stimulate(self, events: StimEvents, duration_s: float | None = None, seed: int = 0,
                  progress: bool = True) -> SpikeRecording:
        """A recording of the organoid receiving ``events`` (times s from 0); default duration: last pulse + 1 s."""
        if duration_s is None:
            duration_s = float(events.time.max()) + 1.0 if len(events) else 1.0
        if len(events) and events.time.max() >= duration_s:
            raise ValueError(f"stimulation events run to {events.time.max():.3f} s, past duration_s={duration_s} s")
        self.physics.rows_of(events.electrode)               # refuse unknown electrodes before simulating
        rng = np.random.default_rng([self.seed, seed, 1])
        state = self.warm_state(1, seed=seed)
        forced = self._forced(events, np.zeros(len(events), np.int64), 0.0, rng)
        step, _, neuron = self.network.run(state, self._steps(duration_s), seed=seed, forced=forced, progress=progress)
        return self._observe(step, neuron, 0.0, float(duration_s), rng, events, {"seed": int(seed)})

    def true_responses(self, electrodes=None, amplitudes_ua=(1.0, 1.5, 2.0, 2.5), phase_us: float = 200.0,
                       n_trials: int = 20, window: tuple[float, float] = RESPONSE_WINDOW, seed: int = 0,
                       batch: int = 256, progress: bool = True) -> TrueResponses:
        """Response probability and median first-spike latency per electrode x amplitude x channel.

        Each trial starts from an independent snapshot of spontaneous activity (so bursts in progress
        and depleted synapses occur as often as at rest) and receives one biphasic pulse of
        ``amplitude`` uA and ``phase_us`` us per phase; ``n_trials`` trials per condition, run
        ``batch`` at a time. Statistics use :func:`organoid_sim.stats.evoked_responses`.
        """
        from ..stats import evoked_responses
        from tqdm.auto import tqdm

        elec = self.electrodes.ids if electrodes is None else np.asarray(electrodes, np.int64)
        amps = np.asarray(amplitudes_ua, float)
        snaps = self._snapshots(n_trials, seed)
        cond_e, cond_a = np.repeat(elec, len(amps)), np.tile(amps, len(elec))
        trial_e, trial_a = np.repeat(cond_e, n_trials), np.repeat(cond_a, n_trials)
        trial_snap = np.tile(np.arange(n_trials), len(cond_e))
        pre_s, trial_s = 0.01, window[1] + 0.01
        rng = np.random.default_rng([self.seed, seed, 2])
        parts, stims, t_next = [], [], 0.0
        for lo in tqdm(range(0, len(trial_e), batch), disable=not progress, desc="true responses"):
            sl = slice(lo, min(lo + batch, len(trial_e)))
            b = sl.stop - sl.start
            # cathodic-first biphasic pulses (the sign is the polarity of the first phase)
            ev = StimEvents.from_columns(np.full(b, pre_s), trial_e[sl], -trial_a[sl], phase_us, 2, sort=False)
            state = snaps.take(torch.as_tensor(trial_snap[sl]))
            forced = self._forced(ev, np.arange(b), 0.0, rng)
            step, tb, neuron = self.network.run(state, self._steps(trial_s), seed=int(rng.integers(2**31)),
                                                forced=forced)
            # lay the trials end to end in time so that one recording holds them all
            offs = t_next + np.arange(b) * trial_s
            parts.append((step + bin_index(offs / self.dt_s)[tb], neuron))
            stims.append(StimEvents(offs + pre_s, ev.electrode, ev.amplitude, ev.phase_us, ev.n_phases))
            t_next += b * trial_s
        step = np.concatenate([p[0] for p in parts])
        neuron = np.concatenate([p[1] for p in parts])
        stim = StimEvents.concat(stims)
        rec = self._observe(step, neuron, 0.0, t_next, rng, stim, {"seed": int(seed), "trials": True})
        resp = evoked_responses(rec, window=window, by_amplitude=True)
        shape = (len(elec), len(amps), rec.n_units)
        prob, lat = np.full(shape, np.nan), np.full(shape, np.nan)
        ei = {int(e): i for i, e in enumerate(elec)}
        ai = {float(a): i for i, a in enumerate(amps)}
        for g in range(len(resp.electrodes)):
            i, j = ei[int(resp.electrodes[g])], ai[abs(float(resp.amplitudes[g]))]
            prob[i, j], lat[i, j] = resp.response_probability[g], resp.median_latency_s[g]
        return TrueResponses(elec, amps, float(phase_us), rec.unit_ids, prob, lat, int(n_trials), tuple(window))

    def _snapshots(self, n: int, seed: int) -> NetworkState:
        """``n`` states of one spontaneous run, taken at irregular intervals of about 0.5 s."""
        state = self.warm_state(1, seed=seed + 101)
        rng = np.random.default_rng([self.seed, seed, 3])
        snaps = []
        for k in range(n):
            self.network.run(state, self._steps(float(rng.uniform(0.3, 0.7))), seed=int(rng.integers(2**31)))
            snaps.append(state.take(slice(0, 1)))
        return NetworkState.stack(snaps)
