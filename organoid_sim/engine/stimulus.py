"""NumPy port of the stimulus coupling's inputs (no torch).

:class:`Coupling` computes what :class:`organoid_sim.nn.stim_coupling.StimulusCoupling` feeds a
model for a table of stimulation pulses (:class:`~organoid_sim.events.StimEvents`): the membrane
input (threshold units per step) and, with the direct pathway, the expected directly evoked spikes
per step, both ``[n_steps, n_neurons]`` float32, chunk by chunk (:meth:`Coupling.lazy_inputs`
returns row sources with ``rows(lo, hi)`` that the engine's ``Simulator.run`` reads). The physics
and its units are documented in the torch module; the arithmetic here follows it operation by
operation (float32 amplitudes, float64 onsets and kernel integrals, the same step binning), so the
two agree to float32 rounding (tested against the torch coupling).

The coupling is read from a saved model directory (``model.json`` ``config.stim_coupling`` and the
``stim_coupling.*`` tensors of ``weights.safetensors``) with :meth:`Coupling.from_model_dir`, or
from those two parts with :meth:`Coupling.from_parts`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from ..events import StimEvents, step_rows
from ..model_files import read_document, read_saved

#: default conversion of voltage-mode amplitudes: uA per mV (1 MOhm electrode impedance)
UA_PER_MV = 1e-3
#: the alpha kernel is cut after this many time constants (as in the torch coupling)
KERNEL_SPAN_TAU = 10.0
#: binning tolerance of onsets (the spike tensors' rule: values this close below an integer round up)
BIN_TOLERANCE = 1e-9

_NAMES = ("gain", "q50_nc", "hill", "length_um", "tau_ms", "distance_power")
_DIRECT_NAMES = ("direct_gain", "direct_q50_nc", "direct_hill", "direct_length_um", "direct_power",
                 "direct_tau_ms", "velocity_um_per_ms", "direct_local_fraction")
_LOGIT = ("direct_local_fraction",)
PREFIX = "stim_coupling."


def bin_index(values: np.ndarray, tolerance: float = BIN_TOLERANCE) -> np.ndarray:
    """``floor(values)`` where values within ``tolerance`` below an integer round up (int64).

    Parameters
    ----------
    values : array of step positions (onset / dt, dimensionless).
    tolerance : how close below an integer a value rounds up.

    Returns
    -------
    int64 array of step indices.
    """
    values = np.asarray(values, dtype=np.float64)
    idx = np.floor(values)
    idx[(values - idx) > 1.0 - tolerance] += 1
    return idx.astype(np.int64)


def charge_per_phase_nc(events: StimEvents, ua_per_mv: float = UA_PER_MV) -> np.ndarray:
    """Charge per phase (nC) of each event: ``|I uA| * phase_us * 1e-3``, mV converted by ``ua_per_mv``.

    Parameters
    ----------
    events : the pulses.
    ua_per_mv : uA per mV for voltage-mode amplitudes.

    Returns
    -------
    float64 array ``[K]`` in nC.
    """
    amp = np.abs(events.amplitude)
    if events.amplitude_unit == "mV":
        amp = amp * ua_per_mv
    return amp * events.phase_us * 1e-3


def _f32(x) -> np.ndarray:
    return np.asarray(x, dtype=np.float32)


class Coupling:
    """The stimulus coupling of a fitted model in NumPy (see the module docstring).

    Parameters
    ----------
    neuron_xy_um : ``[n_neurons, 2]`` neuron positions (um).
    electrode_ids : ``[E]`` electrode ids (those of ``StimEvents.electrode``).
    electrode_xy_um : ``[E, 2]`` electrode positions (um; NaN: the electrode reaches no neuron).
    raw : the stored parameters, ``{"log_<name>": float, "neuron_log_gain": [n_neurons]}`` and optionally
        ``"pair_log_gain": [E, n_pair]`` with its charge slopes ``"pair_log_slope"`` (same shape) around
        ``"pair_log_q_ref"`` (log nC) (log space; ``log_direct_local_fraction`` is a logit), as in the
        model's weights.
    direct : whether the direct activation pathway is on.
    ua_per_mv : conversion of voltage-mode amplitudes (uA per mV).
    """

    def __init__(self, neuron_xy_um, electrode_ids, electrode_xy_um, raw: Mapping[str, Any], *,
                 direct: bool, ua_per_mv: float = UA_PER_MV) -> None:
        self.neuron_xy_um = _f32(neuron_xy_um).reshape(-1, 2)
        self.electrode_ids = np.asarray(electrode_ids, dtype=np.int64).reshape(-1)
        self.electrode_xy_um = _f32(electrode_xy_um).reshape(-1, 2)
        if len(self.electrode_ids) != len(self.electrode_xy_um):
            raise ValueError(f"Coupling: {len(self.electrode_ids)} electrode ids but "
                             f"{len(self.electrode_xy_um)} electrode positions")
        self.direct = bool(direct)
        self.ua_per_mv = float(ua_per_mv)
        names = _NAMES + (_DIRECT_NAMES if self.direct else ())
        missing = [n for n in names if "log_" + n not in raw]
        if missing:
            raise ValueError(f"Coupling: parameters {missing} missing (expected log_<name> entries)")
        # float32 scalars: the torch parameters' precision
        self.raw = {n: np.float32(np.asarray(raw["log_" + n]).reshape(())) for n in names}
        nlg = raw.get("neuron_log_gain")
        self.neuron_log_gain = np.zeros(self.n_neurons, np.float32) if nlg is None else _f32(nlg).reshape(-1)
        if len(self.neuron_log_gain) != self.n_neurons:
            raise ValueError(f"Coupling: neuron_log_gain has {len(self.neuron_log_gain)} entries for "
                             f"{self.n_neurons} neurons")
        pair = raw.get("pair_log_gain")
        pair = np.zeros((0, 0), np.float32) if pair is None else _f32(pair)
        if pair.size and (pair.ndim != 2 or pair.shape[0] != len(self.electrode_ids)
                          or pair.shape[1] > self.n_neurons):
            raise ValueError(f"Coupling: pair_log_gain must be [{len(self.electrode_ids)} electrodes, "
                             f"<= {self.n_neurons} neurons], got {pair.shape}")
        self.pair_log_gain = pair.reshape(pair.shape if pair.size else (0, 0))
        slope = raw.get("pair_log_slope")
        slope = np.zeros((0, 0), np.float32) if slope is None or not pair.size else _f32(slope)
        if slope.size and slope.shape != self.pair_log_gain.shape:
            raise ValueError(f"Coupling: pair_log_slope must have pair_log_gain's shape {self.pair_log_gain.shape}, "
                             f"got {slope.shape}")
        self.pair_log_slope = slope.reshape(slope.shape if slope.size else (0, 0))
        self.pair_log_q_ref = np.float32(np.asarray(raw.get("pair_log_q_ref", 0.0)).reshape(()))

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_parts(cls, config: Mapping[str, Any], tensors: Mapping[str, np.ndarray],
                   prefix: str = PREFIX) -> "Coupling":
        """The coupling from ``model.json``'s ``config["stim_coupling"]`` and the model's weights.

        Parameters
        ----------
        config : the coupling's configuration (``StimulusCoupling.config()``).
        tensors : the model's tensors by name (NumPy arrays), holding ``<prefix>neuron_xy_um`` etc.
        prefix : name prefix of the coupling's tensors.

        Returns
        -------
        Coupling
        """
        def get(name):
            if prefix + name not in tensors:
                raise ValueError(f"model weights have no {prefix + name!r} tensor")
            return np.asarray(tensors[prefix + name])

        direct = bool(config.get("direct", False))
        raw = {}
        for n in _NAMES + _DIRECT_NAMES:
            key = prefix + "log_" + n
            if key in tensors:
                raw["log_" + n] = tensors[key]
            elif n in config:  # models saved before the parameter existed keep the configured value
                v = float(config[n])
                raw["log_" + n] = math.log(v / (1 - v)) if n in _LOGIT else math.log(v)
        for name in ("neuron_log_gain", "pair_log_gain", "pair_log_slope", "pair_log_q_ref"):
            if prefix + name in tensors:
                raw[name] = tensors[prefix + name]
        return cls(get("neuron_xy_um"), get("electrode_ids"), get("electrode_xy_um"), raw, direct=direct,
                   ua_per_mv=float(config.get("ua_per_mv", UA_PER_MV)))

    @classmethod
    def from_model_dir(cls, model_dir) -> "Coupling | None":
        """The coupling of a model saved with ``model.save(model_dir)``; None if it has none.

        Parameters
        ----------
        model_dir : directory holding ``model.json`` and ``weights.safetensors``.

        Returns
        -------
        Coupling or None
        """
        from safetensors.numpy import load

        model_dir = Path(model_dir)
        doc = read_document(model_dir)
        cfg = (doc.get("config") or {}).get("stim_coupling")
        if cfg is None:
            return None
        doc, data = read_saved(model_dir, doc)   # checked against the digest model.json records, read once
        cfg = (doc.get("config") or {}).get("stim_coupling")
        if cfg is None:
            return None
        return cls.from_parts(cfg, load(data))

    def with_electrodes(self, electrode_ids, electrode_xy_um) -> "Coupling":
        """The same coupling with extra electrodes appended (ids not already known; positions um).

        Parameters
        ----------
        electrode_ids : ``[E2]`` new electrode ids.
        electrode_xy_um : ``[E2, 2]`` their positions (um).

        Returns
        -------
        Coupling
        """
        ids = np.asarray(electrode_ids, np.int64).reshape(-1)
        clash = np.intersect1d(ids, self.electrode_ids)
        if len(clash):
            raise ValueError(f"Coupling.with_electrodes: electrodes {clash[:10].tolist()} already exist")
        raw = {"log_" + n: v for n, v in self.raw.items()}
        raw["neuron_log_gain"] = self.neuron_log_gain
        if self.pair_log_gain.size:       # the new electrodes have no pair gains (0)
            raw["pair_log_gain"] = np.concatenate(
                [self.pair_log_gain, np.zeros((len(ids), self.pair_log_gain.shape[1]), np.float32)])
        if self.pair_log_slope.size:
            raw["pair_log_slope"] = np.concatenate(
                [self.pair_log_slope, np.zeros((len(ids), self.pair_log_slope.shape[1]), np.float32)])
            raw["pair_log_q_ref"] = self.pair_log_q_ref
        return Coupling(self.neuron_xy_um, np.concatenate([self.electrode_ids, ids]),
                        np.concatenate([self.electrode_xy_um, _f32(electrode_xy_um).reshape(-1, 2)]), raw,
                        direct=self.direct, ua_per_mv=self.ua_per_mv)

    @property
    def n_neurons(self) -> int:
        """Number of model neurons driven by the coupling."""
        return int(self.neuron_xy_um.shape[0])

    def value(self, name: str) -> float:
        """Global parameter ``name`` in natural units (as ``StimulusCoupling.values()``)."""
        return float(self._value(name))

    def _value(self, name: str) -> np.float32:
        raw = self.raw[name]
        if name in _LOGIT:
            return np.float32(1.0) / (np.float32(1.0) + np.exp(-raw))
        return np.exp(raw)

    # ------------------------------------------------------------------ physics
    def _electrode_rows(self, electrode: np.ndarray) -> np.ndarray:
        ids = self.electrode_ids
        order = np.argsort(ids)
        pos = np.clip(np.searchsorted(ids, electrode, sorter=order), 0, max(len(ids) - 1, 0))
        rows = order[pos] if len(ids) else pos
        bad = (ids[rows] != electrode) if len(ids) else np.ones(len(electrode), bool)
        if np.any(bad):
            raise ValueError(f"stimulation events use electrodes {np.unique(electrode[bad])[:10].tolist()} "
                             f"that are not in the model's electrode layout ({len(ids)} electrodes)")
        return rows

    def _charge_and_d2(self, events: StimEvents) -> tuple[np.ndarray, np.ndarray]:
        """``q`` ``[K]`` (nC, float32) and squared distances ``[K, N]`` (um^2; inf where unknown)."""
        q = _f32(charge_per_phase_nc(events, self.ua_per_mv))
        rows = self._electrode_rows(np.asarray(events.electrode))
        d2 = ((self.electrode_xy_um[rows][:, None, :] - self.neuron_xy_um[None, :, :]) ** 2).sum(-1)
        return q, np.nan_to_num(d2, nan=np.inf).astype(np.float32)

    @staticmethod
    def _attenuation(d2: np.ndarray, log_length: np.float32, log_power: np.float32) -> np.ndarray:
        """``1 / (1 + (d / length)^p)`` from ``d^2`` (float32)."""
        with np.errstate(over="ignore"):
            ratio = np.maximum(d2 / np.exp(np.float32(2) * log_length), np.float32(1e-12)) ** (
                np.float32(0.5) * np.exp(log_power))
        return np.float32(1.0) / (np.float32(1.0) + ratio)

    def strength(self, events: StimEvents) -> np.ndarray:
        """``[K, n_neurons]`` total depolarisation (threshold units) each event gives each neuron.

        Parameters
        ----------
        events : the pulses.

        Returns
        -------
        float32 array ``[K, n_neurons]``.
        """
        if len(events) == 0:
            return np.zeros((0, self.n_neurons), np.float32)
        r = self.raw
        q, d2 = self._charge_and_d2(events)
        q_eff = q[:, None] * self._attenuation(d2, r["length_um"], r["distance_power"])
        x = np.maximum(q_eff / np.exp(r["q50_nc"]), np.float32(0)) ** np.exp(r["hill"])
        return np.exp(self._log_gains(r["gain"], events, q)) * x / (np.float32(1.0) + x)

    def _log_gains(self, log_gain: np.float32, events: StimEvents, q: np.ndarray) -> np.ndarray:
        """``[K or 1, n_neurons]`` log of a pathway's gain times the neuron and pair gains (float32; ``q``
        ``[K]`` nC per phase, for the pair gains' charge slopes)."""
        g = (log_gain + self.neuron_log_gain)[None, :]
        if self.pair_log_gain.size == 0:
            return g
        rows = self._electrode_rows(np.asarray(events.electrode))
        pair = self.pair_log_gain[rows]
        if self.pair_log_slope.size:
            x = np.log(np.maximum(q, np.float32(1e-12))).astype(np.float32) - self.pair_log_q_ref
            pair = pair + self.pair_log_slope[rows] * x[:, None]
        pad = np.zeros((len(pair), self.n_neurons - pair.shape[1]), np.float32)
        return g + np.concatenate([pair, pad], 1)

    def direct_strength(self, events: StimEvents) -> np.ndarray:
        """``[K, n_neurons]`` expected directly evoked spikes per event (zeros when ``direct`` is off).

        Parameters
        ----------
        events : the pulses.

        Returns
        -------
        float32 array ``[K, n_neurons]`` (spikes).
        """
        if len(events) == 0 or not self.direct:
            return np.zeros((len(events), self.n_neurons), np.float32)
        r = self.raw
        q, d2 = self._charge_and_d2(events)
        f = self._value("direct_local_fraction")
        prof = f * self._attenuation(d2, r["length_um"], r["distance_power"]) + (np.float32(1.0) - f) * \
            self._attenuation(d2, r["direct_length_um"], r["direct_power"])
        x = np.maximum(q[:, None] * prof / np.exp(r["direct_q50_nc"]), np.float32(0)) ** np.exp(r["direct_hill"])
        return np.exp(self._log_gains(r["direct_gain"], events, q)) * x / (np.float32(1.0) + x)

    def direct_delay_s(self, events: StimEvents) -> np.ndarray:
        """``[K, n_neurons]`` conduction delay (s) of direct spikes: distance / ``velocity_um_per_ms``."""
        _, d2 = self._charge_and_d2(events)
        return np.sqrt(d2) / np.exp(self.raw["velocity_um_per_ms"]) * np.float32(1e-3)

    @staticmethod
    def _alpha_weights(offsets_s: np.ndarray, dt_s: float, log_tau_ms: np.float32) -> np.ndarray:
        """Integral of the normalised alpha kernel over ``[o, o + dt_s)`` (float64 maths, float32 out)."""
        tau = math.exp(float(log_tau_ms)) * 1e-3
        offsets_s = np.asarray(offsets_s, np.float64)

        def cdf(t):
            u = np.maximum(t, 0.0) / tau
            return 1.0 - (1.0 + u) * np.exp(-u)

        return (cdf(offsets_s + dt_s) - cdf(offsets_s)).astype(np.float32)

    def _membrane_span_s(self) -> float:
        return KERNEL_SPAN_TAU * float(np.exp(self.raw["tau_ms"])) * 1e-3

    def span_s(self) -> float:
        """How long (s) after a pulse its input lasts (kernel cut plus the longest conduction delay)."""
        if getattr(self, "_span", None) is None:
            self._span = self._compute_span_s()  # the coupling does not change after construction
        return self._span

    def _compute_span_s(self) -> float:
        span = self._membrane_span_s()
        if self.direct:
            d_max = 0.0
            if len(self.electrode_xy_um) and self.n_neurons:
                diff = self.electrode_xy_um[:, None, :] - self.neuron_xy_um[None, :, :]
                d = np.sqrt((diff ** 2).sum(-1))
                d = d[np.isfinite(d)]
                d_max = float(d.max()) if d.size else 0.0
            span = max(span, KERNEL_SPAN_TAU * float(self._value("direct_tau_ms")) * 1e-3
                       + d_max / float(self._value("velocity_um_per_ms")) * 1e-3)
        return span

    def deliver(self, events: StimEvents, n_steps: int, dt_s: float, t0: float, direct: bool,
                rows: tuple[int, int] | None = None) -> np.ndarray:
        """``[n_steps, n_neurons]`` input of ``events`` on steps ``t0 + j * dt_s`` (s); ``rows=(lo, hi)``
        computes steps ``lo..hi-1`` only (``[hi - lo, n_neurons]``, equal to the whole window's slice).

        Parameters
        ----------
        events : the pulses (absolute times, s).
        n_steps : steps in the window.
        dt_s : step (s).
        t0 : start of step 0 (s).
        direct : the direct pathway's expected spikes instead of the membrane input.
        rows : optional ``(lo, hi)`` step range.

        Returns
        -------
        float32 array: threshold units per step (membrane) or expected spikes per step (direct).
        """
        lo, hi = step_rows(n_steps, dt_s, rows, "Coupling")
        out = np.zeros((max(hi - lo, 0), self.n_neurons), np.float32)
        if len(events) == 0 or hi <= lo or (direct and not self.direct):
            return out
        span_s = self.span_s() if direct else self._membrane_span_s()
        events = events.reaching_steps(lo, hi, dt_s, t0, span_s)
        if len(events) == 0:
            return out
        prep = self.prepare(events, membrane=not direct, direct=direct)
        return self.deliver_prepared(prep, lo, hi, dt_s, t0, direct, out=out)

    def prepare(self, events: StimEvents, membrane: bool = True, direct: bool = True) -> "Prepared":
        """The per-pulse part of the inputs (strengths and delays), computed once for :meth:`deliver_prepared`.

        Parameters
        ----------
        events : the pulses (absolute times, s).
        membrane : compute the membrane strengths.
        direct : compute the direct pathway's strengths and delays (when the pathway is on).

        Returns
        -------
        Prepared
        """
        direct = direct and self.direct
        return Prepared(np.asarray(events.time, np.float64),
                        self.strength(events) if membrane else None,
                        self.direct_strength(events) if direct else None,
                        self.direct_delay_s(events).astype(np.float64) if direct else None)

    def deliver_prepared(self, prep: "Prepared", lo: int, hi: int, dt_s: float, t0: float, direct: bool,
                         out: np.ndarray | None = None) -> np.ndarray:
        """Steps ``lo..hi-1`` (start ``t0 + j * dt_s``, s) of the input of prepared pulses,
        ``[hi - lo, n_neurons]`` float32 (what :meth:`deliver` returns for those rows).

        Parameters
        ----------
        prep : :meth:`prepare` of the pulses (any superset of those that reach the steps).
        lo, hi : step range.
        dt_s : step (s).
        t0 : start of step 0 (s).
        direct : the direct pathway's expected spikes instead of the membrane input.
        out : optional zeroed ``[hi - lo, n_neurons]`` float32 array to add into.

        Returns
        -------
        float32 array ``[hi - lo, n_neurons]``.
        """
        if out is None:
            out = np.zeros((max(hi - lo, 0), self.n_neurons), np.float32)
        if len(prep.time) == 0 or hi <= lo:
            return out
        if direct:
            amp, delay, log_tau = prep.direct_amp, prep.delay, self.raw["direct_tau_ms"]
            span_s = self.span_s()
        else:
            amp, delay, log_tau = prep.amp, None, self.raw["tau_ms"]
            span_s = self._membrane_span_s()
        rel = prep.time - t0
        first = bin_index(rel / dt_s)                       # step holding the onset
        n_span = int(math.ceil(span_s / dt_s)) + 1
        for lag in range(n_span):
            step = first + lag
            ok = (step >= lo) & (step < hi)
            if not ok.any():
                continue
            offset = step.astype(np.float64) * dt_s - rel   # step start minus onset (s)
            if direct:
                w = self._alpha_weights(offset[ok, None] - delay[ok], dt_s, log_tau)
                np.add.at(out, step[ok] - lo, w * amp[ok])
            else:
                w = self._alpha_weights(offset[ok], dt_s, log_tau)
                np.add.at(out, step[ok] - lo, w[:, None] * amp[ok])
        return out

    def forward(self, events: StimEvents, n_steps: int, dt_s: float, t0: float = 0.0) -> np.ndarray:
        """Membrane input ``[n_steps, n_neurons]`` (threshold units per step) for steps ``t0 + j * dt_s`` (s)."""
        return self.deliver(events, n_steps, dt_s, t0, direct=False)

    def direct_input(self, events: StimEvents, n_steps: int, dt_s: float, t0: float = 0.0) -> np.ndarray | None:
        """Expected directly evoked spikes per step ``[n_steps, n_neurons]``; None without the direct pathway."""
        if not self.direct:
            return None
        return self.deliver(events, n_steps, dt_s, t0, direct=True)

    def inputs(self, events: StimEvents, n_steps: int, dt_s: float, t0: float = 0.0):
        """``(membrane input, direct spikes or None)``, each ``[n_steps, n_neurons]`` float32.

        Parameters
        ----------
        events : the pulses (absolute times, s).
        n_steps : number of steps.
        dt_s : step (s).
        t0 : start of step 0 (s).

        Returns
        -------
        tuple of arrays (the second None without the direct pathway).
        """
        return self.forward(events, n_steps, dt_s, t0), self.direct_input(events, n_steps, dt_s, t0)

    def lazy_inputs(self, events: StimEvents, n_steps: int, dt_s: float, t0: float = 0.0):
        """:meth:`inputs` (same arguments) as :class:`StepInput` row sources (``rows(lo, hi)``) computed
        on demand: ``(StepInput, StepInput or None)``."""
        direct = StepInput(self, events, n_steps, dt_s, t0, direct=True) if self.direct else None
        return StepInput(self, events, n_steps, dt_s, t0, direct=False), direct


@dataclass(frozen=True)
class Prepared:
    """Per-pulse part of a stimulation's input (:meth:`Coupling.prepare`).

    Attributes
    ----------
    time : float64 ``[K]`` onsets (s).
    amp : float32 ``[K, N]`` membrane strengths (threshold units), or None.
    direct_amp : float32 ``[K, N]`` expected directly evoked spikes, or None.
    delay : float64 ``[K, N]`` conduction delays (s) of direct spikes, or None.
    """

    time: np.ndarray
    amp: np.ndarray | None
    direct_amp: np.ndarray | None
    delay: np.ndarray | None

    def take(self, index) -> "Prepared":
        """Rows of the selected pulses."""
        pick = (lambda a: None if a is None else a[index])  # noqa: E731
        return Prepared(self.time[index], pick(self.amp), pick(self.direct_amp), pick(self.delay))

    @staticmethod
    def concat(parts: "list[Prepared]") -> "Prepared":
        """Pulses of several tables (all prepared with the same flags) in one."""
        cat = (lambda name: None if getattr(parts[0], name) is None  # noqa: E731
               else np.concatenate([getattr(p, name) for p in parts]))
        return Prepared(np.concatenate([p.time for p in parts]), cat("amp"), cat("direct_amp"), cat("delay"))


class StepInput:
    """Per-step input of a stimulation computed in row blocks: ``rows(lo, hi)`` equals ``full[lo:hi]``.

    Parameters
    ----------
    coupling : the :class:`Coupling`.
    events : the pulses (absolute times, s).
    n_steps : steps in the window.
    dt_s : step (s).
    t0 : start of step 0 (s).
    direct : the direct pathway's expected spikes instead of the membrane input.
    """

    def __init__(self, coupling: Coupling, events: StimEvents, n_steps: int, dt_s: float, t0: float,
                 direct: bool) -> None:
        self.coupling, self.events, self.n_steps = coupling, events, int(n_steps)
        self.dt_s, self.t0, self.direct = float(dt_s), float(t0), bool(direct)

    def __len__(self) -> int:
        return self.n_steps

    def rows(self, lo: int, hi: int) -> np.ndarray:
        """Steps ``lo..hi-1`` of the input, ``[hi - lo, n_neurons]`` float32."""
        return self.coupling.deliver(self.events, self.n_steps, self.dt_s, self.t0, self.direct, rows=(lo, hi))
