"""A fitted model run forward as a CL1 data stream: frames and spikes on demand, pulses as they come.

:class:`ModelStream` is the engine behind the cl-sdk data source (:mod:`organoid_sim.cl.datasource`) and
needs no cl-sdk: ``read(from_frame, n_frames)`` returns the int16 frames and the ``(frame,
channel)`` spikes of that window, ``add_pulses(...)`` hands it committed stimulation pulses.

Time: frame ``f`` (25 kHz) is model time ``f / 25000`` s; model step ``k`` (``dt_ms``, by default
the model's, 2.52 ms = 63 frames for a 2.5 ms model) covers frames ``[k F, (k + 1) F)``. The model
is advanced step by step with the torch-free engine (:class:`organoid_sim.engine.Simulator`, state carried over) only as far as a
read needs (a spike's waveform starts at its timestamp, :mod:`.signal`), and pulses reach it through its fitted stimulus coupling (:mod:`organoid_sim.engine.stimulus`:
membrane input and directly evoked spikes, the inputs ``model.stimulate`` gives for the same pulses).

Causality: a pulse never changes what was already read. A step is drawn as soon as its first frame
is read; when a pulse arrives for a step that is drawn but not read to its end, the stream goes back
to the state before that step and draws it again with the pulse (same random numbers, so only the
pulse's effect changes); spikes already read stay as they were, and the step's other spikes fall
after the read position. In a step that holds a pulse onset, spikes fall after the onset.

Spike frames inside a step: uniform, from a generator seeded by ``(seed, step)``, so the same seed
and the same pulses give the same spikes whatever the read sizes.
"""

from __future__ import annotations

import copy
import math
import warnings
from pathlib import Path
from typing import Mapping

import numpy as np

from ..engine import Simulator, load_network
from ..model_files import read_document
from ..engine.stimulus import Coupling
from ..events import StimEvents
from .channels import GROUNDED, ChannelMapping, map_channels
from .signal import FPS, POST_FRAMES, PRE_FRAMES, Signal


def _layout(model_dir: Path) -> dict:
    doc = read_document(model_dir)
    path = model_dir / "model.json"
    lay = doc.get("layout")
    if not isinstance(lay, dict) or "electrode_ids" not in lay or "electrodes" not in lay:
        raise ValueError(f"{path}: the model has no electrode layout (fit it to a recording with electrodes)")
    return lay


_EMPTY = np.zeros(0, np.int64)
_M1, _M2, _GAMMA = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB), np.uint64(0x9E3779B97F4A7C15)


def _uniforms(seed: int, step: int, n: int) -> np.ndarray:
    """``n`` uniforms in [0, 1) for step ``step``: SplitMix64 of a counter (seed, step, i), so a
    step's draws do not depend on what was drawn before (reads of any size give the same spikes)."""
    if n == 0:
        return np.zeros(0)
    with np.errstate(over="ignore"):
        z = (np.uint64(seed & 0xFFFFFFFF) << np.uint64(32)) ^ np.uint64(step & 0xFFFFFFFF)
        z = z * _GAMMA + np.arange(1, n + 1, dtype=np.uint64) * _GAMMA
        z = (z ^ (z >> np.uint64(30))) * _M1
        z = (z ^ (z >> np.uint64(27))) * _M2
        z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(11)).astype(np.float64) / 9007199254740992.0


def _nan(v) -> float:
    return np.nan if v is None else float(v)


class ModelStream:
    """A saved model as a stream of CL1 frames and spikes (see the module docstring).

    Parameters
    ----------
    model_dir : directory of a saved :class:`~organoid_sim.models.SpikingNetworkModel`.
    seed : seed of the network's noise, the spike frames and the signal noise.
    channel_map : optional ``{electrode_id: channel}`` (see :mod:`organoid_sim.cl.channels`).
    noise_uv, spike_uv : noise standard deviation and spike amplitude (uV), see :mod:`.signal`.
    dt_ms : model step (ms); ``dt_ms * 25`` must be a whole number of frames. Default: the model's,
        or where that is not a whole number of frames (2.5 ms: 62.5) the nearest step that is (2.52 ms):
        the model's parameters are in continuous time, so it runs at that step with the same rates
        and time constants (``dt_adjusted`` then says so).
    """

    def __init__(self, model_dir, seed: int = 0, channel_map: Mapping | None = None, noise_uv: float = 2.5,
                 spike_uv: float = 60.0, dt_ms: float | None = None) -> None:
        model_dir = Path(model_dir)
        step_ms = float(read_document(model_dir)["config"]["dt_ms"]) if dt_ms is None else float(dt_ms)
        fps_step = step_ms * FPS / 1000.0
        self.dt_adjusted = dt_ms is None and abs(fps_step - round(fps_step)) > 1e-6
        if self.dt_adjusted:   # the model's own step is not whole frames: the nearest step that is
            fps_step = max(1, int(fps_step + 0.5))   # half frames up: 62.5 -> 63
            step_ms = fps_step * 1000.0 / FPS
        self.spec = load_network(model_dir, dt_ms=step_ms)
        if abs(fps_step - round(fps_step)) > 1e-6 or round(fps_step) < 1:
            raise ValueError(f"{model_dir}: model step {self.spec.dt_ms} ms is not a whole number of 25 kHz "
                             f"frames (pass dt_ms= a multiple of 0.04 ms)")
        self.frames_per_step = int(round(fps_step))
        self.dt_s = self.spec.dt_ms / 1000.0
        lay = _layout(model_dir)
        e = lay["electrodes"]
        exy = np.c_[[_nan(v) for v in e["x"]], [_nan(v) for v in e["y"]]].reshape(-1, 2)
        self.mapping: ChannelMapping = map_channels(lay["electrode_ids"], e["ids"], exy, channel_map)
        n_rec = self.spec.n_recorded
        if len(self.mapping.unit_channel) != n_rec:
            raise ValueError(f"{model_dir}: layout has {len(self.mapping.unit_channel)} units, the network "
                             f"{n_rec} recorded neurons")
        unreported = int((self.mapping.unit_channel < 0).sum())
        if unreported:
            warnings.warn(f"{model_dir}: {unreported} units sit on the CL1's grounded corner channels "
                          f"{GROUNDED}: simulated with the network, never reported", UserWarning, stacklevel=2)
        # neuron -> channel (hidden neurons and units on grounded corners: -1, not seen on the array)
        self.neuron_channel = np.r_[self.mapping.unit_channel, np.full(self.spec.n_hidden, -1)].astype(np.int64)
        coupling = Coupling.from_model_dir(model_dir)
        if coupling is not None:
            known = set(coupling.electrode_ids.tolist())
            virt = [c for c, eid in enumerate(self.mapping.stim_electrode) if int(eid) not in known]
            coupling = coupling.with_electrodes(self.mapping.stim_electrode[virt], self.mapping.virtual_xy_um[virt])
        self.coupling = coupling
        self.seed = int(seed)
        self.signal = Signal(seed, noise_uv=noise_uv, spike_uv=spike_uv)
        self.sim = Simulator(self.spec, seed=self.seed)
        self._span_steps = 0 if coupling is None else int(math.ceil(coupling.span_s() / self.dt_s)) + 2
        self._pulses: list[tuple[int, int, float, float, int]] = []   # (frame, channel, uA, phase us, phases)
        self._prep = None                                              # prepared pulses (Coupling.prepare)
        self._onsets = np.zeros(0, np.int64)                          # pulse frames (sorted)
        self.read_pos = 0                                              # next frame not yet read (stream frames)
        self.origin: int | None = None                                 # cl frame number of stream frame 0
        self.steps_done = 0                                            # steps drawn
        self._snaps: dict[int, Simulator] = {}                        # state before each drawn, unread step
        self._spikes: dict[int, tuple[np.ndarray, np.ndarray]] = {}   # step -> (frames, channels)
        self.n_pulses = 0
        self.n_redrawn_steps = 0

    def warm_up(self) -> None:
        """Compile the engine's step loop (numba) on a throwaway copy, so the first read is fast
        (cl-sdk's accelerated loop waits at most 0.1 s for a tick)."""
        sim = self._snapshot()
        n = self.spec.n_neurons
        sim.run(2)
        sim.run(2, ext=np.zeros((2, n), np.float32), direct=np.zeros((2, n), np.float32))
        self.signal.noise(-1, 1)   # the first noise blocks (one gather of a second each)

    # ------------------------------------------------------------------ stimulation
    def add_pulses(self, frames, channels, amplitude_ua, phase_us, n_phases=2) -> None:
        """Commit stimulation pulses (their onsets in frames, CL channels, first-phase current in uA,
        phase duration in us, number of phases); steps they reach are redrawn if drawn but unread.

        Parameters
        ----------
        frames : onset frames (25 kHz, cl frame numbers as in :meth:`read`).
        channels : CL channel of each pulse.
        amplitude_ua : signed current of the first phase (uA).
        phase_us : duration of one phase (us).
        n_phases : number of phases.
        """
        frames = np.atleast_1d(np.asarray(frames, np.int64)) - (self.origin or 0)
        if not len(frames):
            return
        ch = np.broadcast_to(np.asarray(channels, np.int64), frames.shape)
        amp = np.broadcast_to(np.asarray(amplitude_ua, float), frames.shape)
        ph = np.broadcast_to(np.asarray(phase_us, float), frames.shape)
        nph = np.broadcast_to(np.asarray(n_phases, np.int64), frames.shape)
        if np.any((ch < 0) | (ch >= len(self.mapping.stim_electrode))):
            raise ValueError(f"pulse channels must be 0..63, got {np.unique(ch).tolist()}")
        self.n_pulses += len(frames)
        if self.coupling is None:
            return  # a model without a coupling does not respond (its pulses are still recorded by cl)
        self._pulses.extend(zip(frames.tolist(), ch.tolist(), amp.tolist(), ph.tolist(), nph.tolist()))
        self._rebuild_events()
        first_step = int(frames.min()) // self.frames_per_step
        if first_step < self.steps_done:
            self._redraw(first_step)

    def _rebuild_events(self) -> None:
        # pulses whose input has died out before the first unread step are dropped; the strengths of
        # the others are computed once (Coupling.prepare), not at every step they reach
        keep_from = (self.read_pos // self.frames_per_step - self._span_steps) * self.frames_per_step
        self._pulses = sorted(p for p in self._pulses if p[0] >= keep_from)
        if not self._pulses:
            self._prep, self._onsets = None, np.zeros(0, np.int64)
            return
        f, c, a, p, n = (np.array(col) for col in zip(*self._pulses))
        self._onsets = f.astype(np.int64)
        events = StimEvents.from_columns(f / FPS, self.mapping.stim_electrode[c], a, p, n)
        self._prep = self.coupling.prepare(events)

    # ------------------------------------------------------------------ drawing steps
    def _inputs(self, k0: int, k1: int):
        """Membrane input and direct spikes ``[k1 - k0, n]`` of steps ``k0..k1-1`` (None: no pulse reaches them)."""
        if self._prep is None:
            return None, None
        t = self._prep.time
        lo, hi = np.searchsorted(t, [(k0 - self._span_steps) * self.dt_s, k1 * self.dt_s])
        if hi <= lo:  # no pulse reaches these steps
            return None, None
        prep = self._prep.take(slice(lo, hi))
        ext = self.coupling.deliver_prepared(prep, k0, k1, self.dt_s, 0.0, direct=False)
        direct = self.coupling.deliver_prepared(prep, k0, k1, self.dt_s, 0.0, direct=True) \
            if self.coupling.direct else None
        return (ext if ext.any() else None), (direct if direct is not None and direct.any() else None)

    def _run(self, k0: int, k1: int) -> None:
        """Draw steps ``k0..k1-1`` (``k0 == steps_done``) and place their spikes."""
        if k1 <= k0:
            return
        ext, direct = self._inputs(k0, k1)
        ev = self.sim.run(k1 - k0, ext=ext, direct=direct)
        ch = self.neuron_channel[ev[:, 2]]
        ok = ch >= 0
        steps, ch, cnt = ev[ok, 0] + k0, ch[ok], ev[ok, 3]
        for k in range(k0, k1):
            sel = steps == k
            self._place(k, ch[sel], cnt[sel])
        self.steps_done = k1

    def _place(self, k: int, channels: np.ndarray, counts: np.ndarray) -> None:
        """Frames of step ``k``'s spikes: keep those already read, the rest uniform after the read
        position and after the step's first pulse onset."""
        F = self.frames_per_step
        start, end = k * F, (k + 1) * F
        old = self._spikes.get(k)
        if not len(channels) and old is None:
            self._spikes[k] = (_EMPTY, _EMPTY)
            return
        kept_f = kept_c = np.zeros(0, np.int64)
        if old is not None and self.read_pos > start:
            read = old[0] < self.read_pos
            kept_f, kept_c = old[0][read], old[1][read]
        want = np.bincount(channels, weights=counts, minlength=64).astype(np.int64)
        have = np.bincount(kept_c, minlength=64)
        extra = np.maximum(want - have, 0)
        lo = max(start, self.read_pos)
        i = np.searchsorted(self._onsets, start)
        if i < len(self._onsets) and self._onsets[i] < end:
            lo = max(lo, int(self._onsets[i]) + 1)
        lo = min(lo, end - 1)
        new_c = np.repeat(np.arange(64), extra)
        u = _uniforms(self.seed, k, int(want.sum()))[:len(new_c)]   # same draws for the step, whatever was kept
        new_f = lo + np.floor(u * (end - lo)).astype(np.int64)
        f = np.r_[kept_f, new_f]
        c = np.r_[kept_c, new_c]
        order = np.lexsort((c, f))
        self._spikes[k] = (f[order], c[order])

    def _snapshot(self) -> Simulator:
        """A copy of the simulator whose arrays (state, random streams) are its own; the network
        spec is shared (read only)."""
        snap = copy.copy(self.sim)
        for k, v in vars(self.sim).items():
            if isinstance(v, np.ndarray):
                setattr(snap, k, v.copy())
        return snap

    def _advance(self, need: int, k_open: int) -> None:
        """Draw steps up to ``need``; ``k_open`` is the first step that will not be read to its end.
        Steps from ``k_open`` on are drawn one by one with the state before each kept (a later pulse
        may redraw them); earlier steps are drawn in one call."""
        if self.steps_done < k_open:
            self._run(self.steps_done, min(k_open, need))
        while self.steps_done < need:
            self._snaps[self.steps_done] = self._snapshot()
            self._run(self.steps_done, self.steps_done + 1)
        for k in [k for k in self._snaps if k < k_open]:
            del self._snaps[k]

    def _redraw(self, first_step: int) -> None:
        """Draw again from the first step a new pulse reaches that is drawn but not read to its end."""
        # a pulse whose onset step was read already reaches only the steps from the first unread one on
        open_steps = [k for k in self._snaps if first_step <= k < self.steps_done]
        if not open_steps:
            return
        k0, need = min(open_steps), self.steps_done
        self.sim = self._snaps[k0]
        self.sim = self._snapshot()  # the kept snapshot stays as it was
        self.steps_done = k0
        self.n_redrawn_steps += need - k0
        while self.steps_done < need:
            self._snaps[self.steps_done] = self._snapshot()
            self._run(self.steps_done, self.steps_done + 1)

    # ------------------------------------------------------------------ reading
    def read(self, from_frame: int, n_frames: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Frames ``from_frame .. from_frame + n_frames - 1`` and the spikes in them.

        Parameters
        ----------
        from_frame : first frame (cl frame numbers; the first read's ``from_frame`` is model time 0,
            later reads continue where the previous one ended: the stream is sequential).
        n_frames : frames to read (> 0).

        Returns
        -------
        ``(frames int16 [n_frames, 64], spike_frames int64 [S], spike_channels int64 [S])``
        """
        if self.origin is None:  # the first read fixes which cl frame is model time 0
            self.origin = int(from_frame)
        if from_frame - self.origin != self.read_pos:
            raise ValueError(f"ModelStream reads sequentially: asked for frame {from_frame}, next is "
                             f"{self.read_pos + self.origin}")
        a, b = self.read_pos, self.read_pos + int(n_frames)
        F = self.frames_per_step
        self._advance(-(-(b + PRE_FRAMES) // F), b // F)
        k_lo, k_hi = max((a - POST_FRAMES) // F, 0), (b + PRE_FRAMES - 1) // F + 1
        parts = [self._spikes[k] for k in range(k_lo, k_hi) if k in self._spikes]
        sf = np.concatenate([p[0] for p in parts]) if parts else np.zeros(0, np.int64)
        sc = np.concatenate([p[1] for p in parts]) if parts else np.zeros(0, np.int64)
        frames = self.signal.frames(a, b, sf, sc)
        inside = (sf >= a) & (sf < b)
        self.read_pos = b
        self._forget(a)
        return frames, sf[inside] + self.origin, sc[inside]

    def _forget(self, a: int) -> None:
        old = (a - POST_FRAMES) // self.frames_per_step - 1
        for k in [k for k in self._spikes if k < old]:
            del self._spikes[k]
