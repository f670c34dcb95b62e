"""A closed-loop session over a fitted model, shaped like Cortical Labs' CL API.

::

    from organoid_sim.stimulation import VirtualMEA, ChannelSet, StimDesign, BurstDesign

    with VirtualMEA(model, device="cl1", seed=0).open() as neurons:
        design = StimDesign(160, -1.0, 160, 1.0)          # (phase us, current uA) pairs
        next_stim_s = 0.0
        for tick in neurons.loop(ticks_per_second=100, stop_after_seconds=5):
            counts = tick.spike_counts(channels=[8, 9])    # new spikes of this tick
            if counts.sum() < 2 and tick.stop_s >= next_stim_s:
                neurons.stim(ChannelSet(8, 9), design, BurstDesign(4, 100))   # 30 ms
                next_stim_s = tick.stop_s + 0.04           # no burst on top of the last one
        session = neurons.recording()                      # SpikeRecording with every pulse in .stim

Time is simulated: tick ``k`` covers ``[k / ticks_per_second, (k + 1) / ticks_per_second)`` seconds
of model time. The loop hands each tick's new spikes to the user code *after* the model has been
advanced over that window (as a real rig hands over the samples it has acquired), and pulses asked
for with :meth:`Neurons.stim` are delivered at the start of the next tick plus ``lead_time_us``.
``accelerated=True`` (default) runs as fast as the model computes; ``accelerated=False`` paces ticks
to the wall clock (a tick is not handed over before its simulated window has elapsed in real time).

Every pulse is checked against the session's :class:`~organoid_sim.stimulation.devices.DeviceProfile`
(including the rate limit against pulses already scheduled) before it is accepted.

The model is advanced tick by tick with its state carried over (``model.run(..., state=...)``, see
:class:`ModelStepper`); the spikes therefore follow the same dynamics as a single long
``model.simulate`` run.
"""

from __future__ import annotations

import math
import time as _time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Iterator, Sequence

import numpy as np
import torch

from ..events import StimEvents
from ..models.base import unit_ids_from_layout
from ..nn.stim_coupling import KERNEL_SPAN_TAU
from ..recording import SpikeRecording
from ..tensor import bin_index
from .devices import DeviceProfile, get_profile
from .protocol import Protocol, PulseTrain
from .pulses import PulseDesign

#: frames per second of the CL1 (timestamps in ``Spike.timestamp`` count these)
FRAMES_PER_SECOND = 25_000


# ---------------------------------------------------------------------------------- CL-style designs
class ChannelSet(tuple):
    """A set of channels (electrode ids) to stimulate: ``ChannelSet(8, 9)`` or ``ChannelSet([8, 9])``."""

    def __new__(cls, *channels) -> "ChannelSet":
        flat = [int(c) for ch in channels for c in np.atleast_1d(ch)]
        if not flat:
            raise ValueError("ChannelSet needs at least one channel")
        if len(set(flat)) != len(flat):
            raise ValueError(f"ChannelSet has duplicate channels: {flat}")
        return super().__new__(cls, flat)


class StimDesign(PulseDesign):
    """A pulse given as ``(phase_us, amplitude)`` pairs, CL-style: ``StimDesign(160, -1.0, 160, 1.0)``
    is a cathodic-first biphasic pulse of 1 uA and 160 us per phase. ``unit="mV"`` for voltage rigs."""

    def __init__(self, *pairs: float, unit: str = "uA") -> None:
        if len(pairs) < 2 or len(pairs) % 2:
            raise ValueError(f"StimDesign takes (phase_us, amplitude) pairs, got {len(pairs)} numbers")
        super().__init__(tuple(pairs[0::2]), tuple(pairs[1::2]), unit)


@dataclass(frozen=True)
class BurstDesign:
    """``burst_count`` pulses at ``burst_hz`` Hz (CL-style ``BurstDesign(4, 100)``)."""

    burst_count: int = 1
    burst_hz: float = 100.0

    def __post_init__(self) -> None:
        if int(self.burst_count) != self.burst_count or self.burst_count < 1 or not self.burst_hz > 0:
            raise ValueError(f"BurstDesign needs burst_count >= 1 and burst_hz > 0, got "
                             f"{self.burst_count}, {self.burst_hz}")


# ---------------------------------------------------------------------------------- ticks
@dataclass(frozen=True)
class Spike:
    """One detected spike: ``channel`` (electrode id), ``unit`` (unit id), ``time_s`` (s) and
    ``timestamp`` (frames at :data:`FRAMES_PER_SECOND`)."""

    channel: int
    unit: Any
    time_s: float
    timestamp: int


@dataclass(frozen=True)
class TickAnalysis:
    """What happened in one tick: ``spikes`` (list of :class:`Spike`) and ``stims`` (StimEvents)."""

    spikes: list
    stims: StimEvents


@dataclass(frozen=True)
class Tick:
    """One loop iteration over simulated time ``[start_s, stop_s)``.

    ``times`` (s), ``units`` (unit index), ``channels`` (electrode id) are the tick's new spikes as
    arrays; ``analysis.spikes`` the same as :class:`Spike` objects. ``late_s`` (paced mode only):
    how far the simulation lagged behind the wall clock when the tick was handed over.
    """

    iteration: int
    start_s: float
    stop_s: float
    times: np.ndarray
    units: np.ndarray
    channels: np.ndarray
    analysis: TickAnalysis
    late_s: float = 0.0

    @property
    def timestamp(self) -> int:
        """Frame count at the start of the tick."""
        return int(round(self.start_s * FRAMES_PER_SECOND))

    def spike_counts(self, channels: Sequence[int] | None = None) -> np.ndarray:
        """Spikes per channel in this tick, for ``channels`` (electrode ids) in the order given."""
        if channels is None:
            return np.asarray(len(self.times))
        channels = np.asarray(channels, dtype=np.int64)
        return (self.channels[None, :] == channels[:, None]).sum(axis=1)


# ---------------------------------------------------------------------------------- stepping the model
class ModelStepper:
    """Advances a :class:`~organoid_sim.models.SpikingNetworkModel` over consecutive windows, carrying
    its explicit :class:`~organoid_sim.nn.neurons.NetworkState` from one window to the next.

    Pulses are turned into input current once, when they are scheduled (:meth:`add_events`):
    ``model.stim_coupling(events, n, dt_s, t0)`` (and its ``direct_input``, the directly evoked spikes)
    over the steps their kernel reaches, kept in a buffer
    of absolute steps; each window then takes its slice, so a pulse near the end of a window still
    drives the next ones. Each window calls ``model.run(n_steps, seed=..., ext=..., state=...)`` and
    draws its noise from its own seed (``SeedSequence(seed)`` child ``k``): a session is
    reproducible; its random stream differs from one long ``simulate`` run, its dynamics do not.
    """

    #: how long (s) after a pulse its input is computed, beyond the coupling's own kernel span
    MIN_SPAN_S = 0.05

    def __init__(self, model: Any, seed: int) -> None:
        if not callable(getattr(model, "run", None)) or not hasattr(model, "dt_ms"):
            raise TypeError(f"{type(model).__name__} cannot run closed loop: VirtualMEA needs a model with an "
                            "explicit-state run(n_steps, seed=, ext=, state=) method (SpikingNetworkModel)")
        if getattr(model, "layout", None) is None:
            raise ValueError("the model is not fitted yet (no recorded units): call model.fit(recording) first")
        self.model = model
        self.dt_s = float(model.dt_ms) * 1e-3
        self.n_recorded = int(model.n_recorded)
        self._seeds = np.random.SeedSequence(int(seed))
        self._inputs: list[tuple[int, Any]] = []   # (first absolute step, [n, n_neurons] input)
        self.state = None

    def _kernel_span_s(self) -> float:
        coupling = self.model.stim_coupling
        if callable(getattr(coupling, "span_s", None)):
            return max(coupling.span_s(), self.MIN_SPAN_S)
        try:
            return max(KERNEL_SPAN_TAU * coupling.values()["tau_ms"] * 1e-3, self.MIN_SPAN_S)
        except (ImportError, AttributeError, KeyError):
            return 0.25

    def add_events(self, events: StimEvents) -> None:
        """Precompute the input of newly scheduled pulses (absolute times in s)."""
        if not len(events):
            return
        if self.model.stim_coupling is None:
            raise RuntimeError("this model has no stimulation coupling (fit it to a recording with electrodes)")
        first = int(bin_index(np.array([events.time.min() / self.dt_s]))[0])  # the spike tensors' binning rule
        last = int(np.ceil((events.time.max() + events.duration.max() + self._kernel_span_s()) / self.dt_s))
        with torch.no_grad():
            self._inputs.append((first, *self._coupled(events, last - first, first * self.dt_s)))

    def _coupled(self, events: StimEvents, n_steps: int, t0: float):
        """``(membrane input, direct spikes or None)``, each ``[n_steps, n_neurons]``: the coupling's
        ``forward`` and ``direct_input`` over these steps, computed from its public ``pulse_inputs``
        when it has it (the same numbers, tested) without a scatter per lag, which is slow for the
        few-step windows here."""
        coupling = self.model.stim_coupling
        if not callable(getattr(coupling, "pulse_inputs", None)):
            return coupling(events, n_steps, self.dt_s, t0), None
        dev = coupling.neuron_xy_um.device
        starts = torch.arange(n_steps, dtype=torch.float64, device=dev) * self.dt_s + t0
        onsets = torch.tensor(np.array(events.time), dtype=torch.float64, device=dev)
        mem, direct = coupling.pulse_inputs(events, starts[:, None] - onsets[None, :], self.dt_s)  # [T, K, N]
        return mem.sum(1), (None if direct is None else direct.sum(1))

    def _input(self, s0: int, n_steps: int):
        """``(membrane input, direct spikes)`` ``[n_steps, n_neurons]`` of absolute steps ``s0 ..`` (each
        None when no pulse reaches them)."""
        out = [None, None]
        keep = []
        for first, *blocks in self._inputs:
            length = blocks[0].shape[0]
            lo, hi = max(s0, first), min(s0 + n_steps, first + length)
            if hi > lo:
                for j, block in enumerate(blocks):
                    if block is None:
                        continue
                    if out[j] is None:
                        out[j] = block.new_zeros((n_steps, block.shape[1]))
                    out[j][lo - s0:hi - s0] += block[lo - first:hi - first]
            if first + length > s0 + n_steps:
                keep.append((first, *blocks))   # still reaches later windows
        self._inputs = keep
        return out[0], out[1]

    def advance(self, t0: float, n_steps: int) -> tuple[np.ndarray, np.ndarray]:
        """Spike times (s) and recorded-unit indices in ``[t0, t0 + n_steps * dt)``, sorted by time."""
        child = self._seeds.spawn(1)[0]
        torch_seed, jitter_seed = (int(x) for x in child.generate_state(2, dtype=np.uint32))
        ext, direct = self._input(int(round(t0 / self.dt_s)), n_steps)
        out, self.state, _ = self.model.run(n_steps, batch=1, seed=torch_seed, ext=ext, direct=direct,
                                            state=self.state)
        out = out[out[:, 2] < self.n_recorded]
        step = np.repeat(out[:, 0], out[:, 3])
        unit = np.repeat(out[:, 2], out[:, 3])
        # a spike lies uniformly inside its step (as in simulate), never on the grid
        times = t0 + (step + np.random.default_rng(jitter_seed).random(len(step))) * self.dt_s
        order = np.argsort(times, kind="stable")
        return times[order], unit[order].astype(np.int64)


# ---------------------------------------------------------------------------------- the session
class VirtualMEA:
    """A virtual rig over ``model`` (a fitted SpikingNetworkModel).

    Parameters
    ----------
    model : a fitted :class:`~organoid_sim.models.SpikingNetworkModel` (needs ``dt_ms``, ``layout``,
        ``stim_coupling`` and the explicit-state ``run`` method).
    device : a :class:`DeviceProfile` or its name (``"cl1"``, ``"maxone"``, ``"generic"``): every pulse is
        validated against it.
    seed : seed of the session (same seed, same stimulation -> same spikes).
    accelerated : run simulated time as fast as possible (True) or paced to the wall clock (False).
    clock : object with ``monotonic()`` and ``sleep(s)`` used for pacing (default :mod:`time`).
    warmup_s : seconds of spontaneous activity simulated (and discarded) before time 0, so the session
        starts from the network's ongoing activity rather than from rest.
    """

    def __init__(self, model: Any, device: DeviceProfile | str = "generic", *, seed: int = 0,
                 accelerated: bool = True, clock: Any = None, warmup_s: float = 0.0) -> None:
        if warmup_s < 0:
            raise ValueError(f"warmup_s must be >= 0 seconds, got {warmup_s}")
        self.warmup_s = float(warmup_s)
        self.model = model
        self.device = get_profile(device) if isinstance(device, str) else device
        self.seed = int(seed)
        self.accelerated = bool(accelerated)
        self.clock = clock or _time

    @contextmanager
    def open(self) -> Iterator["Neurons"]:
        """Start a session (``with mea.open() as neurons:``); the model state is created fresh."""
        neurons = Neurons(self)
        try:
            yield neurons
        finally:
            neurons._closed = True


@dataclass
class _History:
    times: list = field(default_factory=list)
    units: list = field(default_factory=list)


class Neurons:
    """An open session (what ``VirtualMEA.open()`` yields): ``stim``, ``loop``, ``recording``."""

    def __init__(self, mea: VirtualMEA) -> None:
        self._mea = mea
        self._stepper = ModelStepper(mea.model, mea.seed)
        n_warm = int(round(mea.warmup_s / self._stepper.dt_s))
        if n_warm:
            self._stepper.advance(-n_warm * self._stepper.dt_s, n_warm)  # discarded
        self._unit_ids, self._electrode_ids = _recorded_units(mea.model)
        self._now = 0.0                       # simulated time up to which the model has run (s)
        self._trains: list[PulseTrain] = []   # every accepted pulse train (absolute times)
        self._events = StimEvents.empty(mea.device.unit)
        self._spikes = _History()
        self._closed = False

    # ------------------------------------------------------------------ clock
    def timestamp(self) -> int:
        """Current simulated time in frames (:data:`FRAMES_PER_SECOND`)."""
        return int(round(self._now * FRAMES_PER_SECOND))

    def get_frames_per_second(self) -> int:
        """Frames per second of the virtual rig."""
        return FRAMES_PER_SECOND

    @property
    def channels(self) -> np.ndarray:
        """Electrode id of each recorded unit (the channel its spikes are reported on)."""
        return self._electrode_ids.copy()

    @property
    def scheduled(self) -> StimEvents:
        """Every pulse accepted so far (delivered or still to come), absolute times in s."""
        return self._events

    @property
    def time_s(self) -> float:
        """Simulated time (s) reached so far."""
        return self._now

    # ------------------------------------------------------------------ stimulation
    def stim(self, channels, design: PulseDesign | float, burst: BurstDesign | None = None, *,
             lead_time_us: float = 80.0) -> StimEvents:
        """Schedule ``design`` (a :class:`StimDesign`/:class:`PulseDesign`, or a current in uA for a
        biphasic 160 us pulse) on ``channels`` (a :class:`ChannelSet`, an int or a list), repeated per
        ``burst``, starting ``lead_time_us`` us after the current simulated time.

        The pulses are validated against the device profile (with the pulses already scheduled, so rate
        limits hold across calls); a refused pulse raises ``DeviceLimitError`` and nothing is scheduled.
        Returns the scheduled pulses.
        """
        self._check_open()
        if not isinstance(design, PulseDesign):
            design = PulseDesign.biphasic(float(design), 160.0, unit=self._mea.device.unit)
        burst = burst or BurstDesign()
        chans = channels if isinstance(channels, ChannelSet) else ChannelSet(channels)
        start = round(self._now + lead_time_us * 1e-6, 9)
        train = PulseTrain(design, tuple(chans), start, int(burst.burst_count),
                           float(burst.burst_hz) if burst.burst_count > 1 else None)
        recent = [t for t in self._trains if t.end_s > start - 1.0]  # rate limits look back < 1 s
        self._mea.device.validate(Protocol(tuple(recent) + (train,)))
        new = Protocol((train,)).to_events()
        self._stepper.add_events(new)
        self._trains.append(train)
        self._events = _merge_events(self._events, new)
        return new

    # ------------------------------------------------------------------ the loop
    def loop(self, ticks_per_second: float, stop_after_seconds: float | None = None,
             stop_after_ticks: int | None = None) -> Iterator[Tick]:
        """Advance the model tick by tick and yield each :class:`Tick` with its new spikes.

        ``ticks_per_second`` must divide into whole model steps (``1 / (ticks_per_second * dt)``).
        Stops after the whole ticks that cover ``stop_after_seconds`` s of simulated time (``ceil``, as
        cl-sdk) or ``stop_after_ticks`` ticks (or when the caller breaks out). In paced mode
        (``accelerated=False``) each tick is handed over no earlier than its end in wall-clock time
        from the loop start.
        """
        self._check_open()
        dt = self._stepper.dt_s
        steps = 1.0 / (float(ticks_per_second) * dt)
        if not ticks_per_second > 0 or abs(steps - round(steps)) > 1e-6 or round(steps) < 1:
            raise ValueError(f"ticks_per_second={ticks_per_second} must give a whole number of model steps "
                             f"of {dt * 1e3:g} ms per tick (got {steps:.3f})")
        steps = int(round(steps))
        n_ticks = _n_ticks(ticks_per_second, stop_after_seconds, stop_after_ticks)
        clock, paced = self._mea.clock, not self._mea.accelerated
        wall0, sim0 = clock.monotonic(), self._now
        k = 0
        while n_ticks is None or k < n_ticks:
            t0 = self._now
            t1 = round(t0 + steps * dt, 12)
            times, units = self._stepper.advance(t0, steps)
            self._spikes.times.append(times)
            self._spikes.units.append(units)
            self._now = t1
            late = 0.0
            if paced:
                due = wall0 + (t1 - sim0)
                wait = due - clock.monotonic()
                if wait > 0:
                    clock.sleep(wait)
                else:
                    late = -wait
            yield self._tick(k, t0, t1, times, units, late)
            k += 1

    def _tick(self, k: int, t0: float, t1: float, times: np.ndarray, units: np.ndarray, late: float) -> Tick:
        channels = self._electrode_ids[units] if len(units) else np.zeros(0, np.int64)
        spikes = [Spike(int(c), self._unit_ids[u].item(), float(t), int(f))
                  for c, u, t, f in zip(channels, units, times, _frames(times, t0, t1))]
        stims = self._events.time_slice(t0, t1)
        return Tick(k, t0, t1, times, units, channels, TickAnalysis(spikes, stims), late)

    # ------------------------------------------------------------------ results
    def recording(self) -> SpikeRecording:
        """Everything recorded so far as a :class:`SpikeRecording` over ``[0, time_s]`` with the
        delivered pulses (those before ``time_s``) in ``stim``."""
        times = np.concatenate(self._spikes.times) if self._spikes.times else np.zeros(0)
        units = np.concatenate(self._spikes.units) if self._spikes.units else np.zeros(0, np.int64)
        return SpikeRecording.from_pairs(
            times, self._unit_ids[units], unit_ids=self._unit_ids, t_start=0.0, t_stop=self._now,
            electrode_ids=self._electrode_ids, electrodes=getattr(self._mea.model, "electrodes", None),
            stim=self._events.time_slice(0.0, self._now),
            metadata={"source": "VirtualMEA", "device": self._mea.device.name, "seed": self._mea.seed})

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("this VirtualMEA session is closed; open a new one with VirtualMEA.open()")


def _recorded_units(model: Any) -> tuple[np.ndarray, np.ndarray]:
    """``(unit_ids, electrode_ids)`` of the model's recorded units (from the fitted layout)."""
    return unit_ids_from_layout(model.layout), np.asarray(model.layout["electrode_ids"], dtype=np.int64)


def _frames(times: np.ndarray, t0: float, t1: float) -> np.ndarray:
    """Frame (:data:`FRAMES_PER_SECOND`) each time (s) of the tick ``[t0, t1)`` falls in: floor, not round
    (a spike in a tick's last half frame is not on the next tick's first frame), kept inside the tick's
    frames against float rounding at its edges."""
    lo, hi = round(t0 * FRAMES_PER_SECOND), round(t1 * FRAMES_PER_SECOND)
    return np.clip(np.floor(np.asarray(times) * FRAMES_PER_SECOND + 1e-6), lo, hi - 1).astype(np.int64)


def _n_ticks(tps: float, seconds: float | None, ticks: int | None) -> int | None:
    if seconds is not None and ticks is not None:
        raise ValueError("give stop_after_seconds or stop_after_ticks, not both")
    if seconds is not None:
        # whole ticks covering the time, exactly as cl-sdk's Loop counts them (float rounding included)
        return int(math.ceil(float(seconds) * float(tps)))
    return None if ticks is None else int(ticks)


def _merge_events(a: StimEvents, b: StimEvents) -> StimEvents:
    """Union of two event tables, sorted by time (a burst may still be running when the next starts)."""
    if not len(a):
        return b
    cols = {c: np.concatenate([getattr(a, c), getattr(b, c)]) for c in ("time", "electrode", "amplitude",
                                                                       "phase_us", "n_phases")}
    return StimEvents.from_columns(**cols, amplitude_unit=a.amplitude_unit, sort=True)
