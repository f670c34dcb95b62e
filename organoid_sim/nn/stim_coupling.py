"""How an electrode pulse reaches the neurons of a model: :class:`StimulusCoupling`.

Physics (the prior, after the current-distance law of extracellular stimulation)
-------------------------------------------------------------------------------
A pulse on electrode ``e`` delivers a charge per phase ``q = |I| * phase_us * 1e-3`` nC (current
mode, ``I`` in uA). Voltage-mode pulses (mV) are first converted to a current through the
electrode's impedance: ``I = |V| * ua_per_mv`` with ``ua_per_mv = 1e-3`` by default (1 mV across a
1 MOhm electrode-electrolyte impedance drives 1 nA), a documented, settable assumption.

The threshold charge of a neuron at distance ``d`` (um) from a point electrode grows with the
square of the distance (Stoney, Thompson & Brunner 1968; Ranck 1975: ``I_th = I_0 + K d^2``).
The coupling therefore uses the distance-scaled *effective charge*

    q_eff = q / (1 + (d / length_um)^p)          (p = distance_power, 2 in the prior)

and a saturating (Hill) recruitment curve, so the drive of neuron ``i`` by event ``k`` is

    A_ki = gain * exp(neuron_log_gain_i) * q_eff^h / (q_eff^h + q50_nc^h)       (threshold units)

``A`` grows monotonically with charge and falls monotonically with distance; ``gain`` is the
largest depolarisation (in units of the firing threshold) a pulse can give, ``q50_nc`` the charge
(nC) that gives half of it at the electrode, ``h`` the steepness, ``length_um`` the distance at
which the effective charge halves and ``p`` how steeply it falls beyond (2 for a point source
acting on somata; smaller when long axons passing near the electrode spread the activation).
``neuron_log_gain`` (zero in the prior) lets calibration make some neurons more or less
excitable than the prior says. ``pair_log_gain`` (``[E, n_pair]``, empty in the prior) adds, for
the first ``n_pair`` neurons (the recorded units), a log-gain per electrode x neuron pair: what a
calibration session measured about how strongly each electrode reaches each recorded channel
(:func:`organoid_sim.stimulation.calibrate.fit_pair_gains`); both pathways' drives are multiplied
by ``exp(neuron_log_gain_i + pair_log_gain_ei + pair_log_slope_ei * (log q - pair_log_q_ref))``:
``pair_log_slope`` (same shape, empty when not fitted) lets a pair's drive grow faster or slower
with charge than the recruitment law says, around the reference log charge ``pair_log_q_ref``
(log nC).

Time course: the depolarisation is delivered through a normalised alpha kernel
``k(t) = t / tau^2 * exp(-t / tau)`` (``tau = tau_ms`` ms, peak at ``tau``, integral 1), which
stands for the short delay of axonal/synaptic activation after the pulse. ``forward`` integrates
the kernel exactly over each time step, so the sum of the returned input over time is ``A``
whatever the step size: the value in a step is the membrane increment in that step, in units of
the threshold (the models add it to the membrane potential).

Direct activation pathway (``direct=True``, the default of :meth:`StimulusCoupling.from_prior`)
------------------------------------------------------------------------------------------------
A recorded channel is usually many cells, and a pulse recruits *some* of them directly (their
axons pass near the electrode); the channel's response probability then grows smoothly with
charge, which one model neuron's steep escape rate, driven through the membrane, cannot
reproduce. The direct pathway adds, to the spike *intensity* of neuron ``i`` (not to its
membrane), directly evoked spikes with Poisson mean

    q_dir  = q * (f_loc / (1 + (d / length_um)^p) + (1 - f_loc) / (1 + (d / direct_length_um)^direct_power))
    m_ki   = direct_gain * exp(neuron_log_gain_i) * q_dir^hd / (q_dir^hd + direct_q50_nc^hd)   (spikes)

(``hd = direct_hill``, ``f_loc = direct_local_fraction``: a local soma term with the membrane
pathway's spread plus a broad axonal term), delivered through an alpha kernel with peak
``direct_tau_ms`` that starts ``d / velocity_um_per_ms`` ms after the pulse (conduction along
the axon, so latencies grow with distance). With the network silent, ``P(at least one spike) =
1 - exp(-m)``: graded in charge. The models add ``m`` per step to the expected spike count of the
step, on top of the network drive after its saturation (``exp(eta') + m``,
:func:`organoid_sim.nn.neurons.lif_step`), so direct spikes are
ordinary spikes of the neuron (they reset it and reach its synaptic targets). :meth:`direct_input`
gives the per-step values; ``direct=False`` (and models saved before this pathway existed)
switches it off.

All parameters are stored in log space (positive by construction) and are learnable
(:func:`organoid_sim.stimulation.calibrate.calibrate` fits them); they are saved with the model's
safetensors weights, and :meth:`config` / :meth:`from_config` carry the rest as JSON.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

import numpy as np
import torch
from torch import nn

from ..events import StimEvents, step_rows
from ..recording import Electrodes, index_of
from ..tensor import bin_index

__all__ = ["StimulusCoupling", "StepInput", "charge_per_phase_nc", "UA_PER_MV", "KERNEL_SPAN_TAU"]

#: default conversion of voltage-mode amplitudes: uA per mV (1 MOhm electrode impedance)
UA_PER_MV = 1e-3
#: the alpha kernel is cut after this many time constants (it holds < 0.1 % of the charge beyond)
KERNEL_SPAN_TAU = 10.0

_PRIOR = dict(gain=3.0, q50_nc=0.3, hill=2.0, length_um=50.0, tau_ms=2.0, distance_power=2.0)
_NAMES = tuple(_PRIOR)
#: prior of the direct pathway: about 2 directly evoked spikes per pulse at saturation under the
#: electrode, half of them at 0.3 nC; a broad axonal term carrying 20 % of the effective charge
#: that stays flat out to about 250 um and then falls (power 4: axons a few hundred um long reach
#: only so far); peak 1.5 ms after the pulse plus conduction at 100 um/ms (unmyelinated axons)
_DIRECT_PRIOR = dict(direct_gain=2.0, direct_q50_nc=0.3, direct_hill=1.0, direct_length_um=250.0,
                     direct_power=4.0, direct_tau_ms=1.5, velocity_um_per_ms=100.0, direct_local_fraction=0.8)
_DIRECT_NAMES = tuple(_DIRECT_PRIOR)
#: parameters stored as logits (fractions in (0, 1)); all others in log space
_LOGIT = ("direct_local_fraction",)


def charge_per_phase_nc(events: StimEvents, ua_per_mv: float = UA_PER_MV) -> np.ndarray:
    """Charge per phase in nC of each event: ``|I uA| * phase_us * 1e-3`` (mV converted by ``ua_per_mv``).

    Parameters
    ----------
    events : StimEvents
        The pulses.
    ua_per_mv : float
        uA per mV for voltage-mode pulses.

    Returns
    -------
    np.ndarray
        Charge per phase (nC) of each event.
    """
    amp = np.abs(events.amplitude)
    if events.amplitude_unit == "mV":
        amp = amp * ua_per_mv
    return amp * events.phase_us * 1e-3


class StimulusCoupling(nn.Module):
    """Input that stimulation events inject into each model neuron (see the module docstring).

    Parameters
    ----------
    neuron_xy_um : ``[n_neurons, 2]`` neuron positions in um.
    electrode_ids : ``[E]`` electrode ids (those of ``StimEvents.electrode``).
    electrode_xy_um : ``[E, 2]`` electrode positions in um.
    gain : largest depolarisation per pulse, in units of the firing threshold.
    q50_nc : charge per phase (nC) giving half the largest depolarisation at zero distance.
    hill : steepness of the recruitment curve (dimensionless, > 0).
    length_um : distance (um) at which the effective charge is halved.
    tau_ms : peak time (ms) of the alpha kernel of the evoked input.
    distance_power : exponent ``p`` of the distance law (2: Stoney's current-distance law).
    ua_per_mv : conversion of voltage-mode amplitudes (uA per mV).
    direct : switch the direct activation pathway on (see the module docstring).
    direct_gain : largest expected number of directly evoked spikes per pulse (spikes).
    direct_q50_nc : effective charge (nC) giving half of ``direct_gain``.
    direct_hill : steepness of the direct recruitment curve (dimensionless).
    direct_length_um, direct_power : spread (um) and exponent of the broad (axonal) distance term.
    direct_local_fraction : share (0..1) of the local term (``length_um``, ``distance_power``).
    direct_tau_ms : peak time (ms) of the alpha kernel of direct spikes after their delay.
    velocity_um_per_ms : conduction velocity (um/ms): direct spikes start ``d / velocity`` ms late.
    """

    def __init__(self, neuron_xy_um, electrode_ids, electrode_xy_um, *, gain: float = _PRIOR["gain"],
                 q50_nc: float = _PRIOR["q50_nc"], hill: float = _PRIOR["hill"],
                 length_um: float = _PRIOR["length_um"], tau_ms: float = _PRIOR["tau_ms"],
                 distance_power: float = _PRIOR["distance_power"], ua_per_mv: float = UA_PER_MV,
                 direct: bool = False, **direct_params: float) -> None:
        super().__init__()
        xy = torch.as_tensor(np.array(neuron_xy_um, dtype=np.float32))
        eids = np.asarray(electrode_ids, dtype=np.int64)
        exy = torch.as_tensor(np.array(electrode_xy_um, dtype=np.float32)).reshape(-1, 2)
        if xy.ndim != 2 or xy.shape[1] != 2:
            raise ValueError(f"StimulusCoupling: neuron_xy_um must have shape (n_neurons, 2) um, got {tuple(xy.shape)}")
        if eids.ndim != 1 or len(eids) != exy.shape[0]:
            raise ValueError(f"StimulusCoupling: {len(eids)} electrode ids but {exy.shape[0]} electrode positions")
        unknown = set(direct_params) - set(_DIRECT_NAMES)
        if unknown:
            raise TypeError(f"StimulusCoupling: unknown parameters {sorted(unknown)}")
        dp = {**_DIRECT_PRIOR, **{k: float(v) for k, v in direct_params.items()}}
        for name, v in (("gain", gain), ("q50_nc", q50_nc), ("hill", hill), ("length_um", length_um),
                        ("tau_ms", tau_ms), ("distance_power", distance_power), ("ua_per_mv", ua_per_mv),
                        *dp.items()):
            if not (np.isfinite(v) and v > 0):
                raise ValueError(f"StimulusCoupling: {name} must be a positive finite number, got {v}")
        if not dp["direct_local_fraction"] < 1:
            raise ValueError("StimulusCoupling: direct_local_fraction must lie in (0, 1), "
                             f"got {dp['direct_local_fraction']}")
        self.ua_per_mv = float(ua_per_mv)
        self.direct = bool(direct)
        self.register_buffer("neuron_xy_um", xy)
        self.register_buffer("electrode_ids", torch.as_tensor(eids.copy()))
        self.register_buffer("electrode_xy_um", exy)
        self.log_gain = nn.Parameter(torch.tensor(math.log(gain)))
        self.log_q50_nc = nn.Parameter(torch.tensor(math.log(q50_nc)))
        self.log_hill = nn.Parameter(torch.tensor(math.log(hill)))
        self.log_length_um = nn.Parameter(torch.tensor(math.log(length_um)))
        self.log_tau_ms = nn.Parameter(torch.tensor(math.log(tau_ms)))
        self.log_distance_power = nn.Parameter(torch.tensor(math.log(distance_power)))
        self.neuron_log_gain = nn.Parameter(torch.zeros(xy.shape[0]))
        # [E, n_pair] log-gains per electrode x recorded neuron; empty (no pair gains) in the prior
        self.register_buffer("pair_log_gain", torch.zeros(0, 0))
        # [E, n_pair] change of a pair's log-gain per unit of log charge, around log charge pair_log_q_ref
        self.register_buffer("pair_log_slope", torch.zeros(0, 0))
        self.register_buffer("pair_log_q_ref", torch.zeros(()))
        for name, v in dp.items():
            raw = math.log(v / (1.0 - v)) if name in _LOGIT else math.log(v)
            setattr(self, "log_" + name, nn.Parameter(torch.tensor(raw)))

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_prior(cls, neuron_xy_um, electrodes: Electrodes, **overrides) -> "StimulusCoupling":
        """The physical prior for neurons at ``neuron_xy_um`` (um) under the ``electrodes`` layout.

        ``overrides`` replace prior values (``gain``, ``q50_nc``, ``hill``, ``length_um``,
        ``tau_ms``, ``distance_power``, ``ua_per_mv``, ``direct`` and the direct pathway's
        parameters). The direct pathway is on unless ``direct=False``. Electrodes with unknown
        (NaN) positions cannot stimulate anyone.
        """
        xy = electrodes.positions if len(electrodes) else np.zeros((0, 2))
        overrides.setdefault("direct", True)
        return cls(neuron_xy_um, electrodes.ids, xy, **overrides)

    @property
    def n_neurons(self) -> int:
        """Number of model neurons driven by the coupling."""
        return int(self.neuron_xy_um.shape[0])

    @property
    def parameter_names(self) -> tuple[str, ...]:
        """Names of the global parameters in use (the direct pathway's only when it is on)."""
        return _NAMES + (_DIRECT_NAMES if self.direct else ())

    def _value(self, name: str) -> torch.Tensor:
        raw = getattr(self, "log_" + name)
        return torch.sigmoid(raw) if name in _LOGIT else torch.exp(raw)

    def set_value(self, name: str, value: float) -> None:
        """Set global parameter ``name`` to ``value`` in natural units (no gradient)."""
        raw = math.log(value / (1.0 - value)) if name in _LOGIT else math.log(value)
        with torch.no_grad():
            getattr(self, "log_" + name).fill_(raw)

    def values(self) -> dict[str, float]:
        """The global parameters in natural units (``gain``, ``q50_nc``, ``hill``, ``length_um``, ``tau_ms``,
        ``distance_power``, and with the direct pathway ``direct_gain`` (spikes), ``direct_q50_nc``,
        ``direct_hill``, ``direct_length_um``, ``direct_power``, ``direct_tau_ms``,
        ``velocity_um_per_ms``, ``direct_local_fraction``)."""
        return {name: float(self._value(name).detach()) for name in self.parameter_names}

    def config(self) -> dict[str, Any]:
        """JSON-serialisable configuration; tensors (positions, parameters) live in the state dict."""
        return {"n_neurons": self.n_neurons, "n_electrodes": int(self.electrode_ids.shape[0]),
                "ua_per_mv": self.ua_per_mv, "direct": self.direct, **self.values()}

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> "StimulusCoupling":
        """An instance shaped by :meth:`config`; load the saved state dict into it for positions and gains.

        Configurations saved before the direct pathway existed have no ``direct`` key: it stays off.
        """
        n, e = int(config["n_neurons"]), int(config["n_electrodes"])
        kw = {k: float(config[k]) for k in (*_NAMES, *_DIRECT_NAMES, "ua_per_mv") if k in config}
        return cls(np.zeros((n, 2)), np.arange(e), np.zeros((e, 2)), direct=bool(config.get("direct", False)), **kw)

    def set_pair_log_gain(self, values, slope=None, log_q_ref: float = 0.0) -> None:
        """Set the electrode x recorded-neuron log-gains, and optionally their charge slopes (no gradient).

        Parameters
        ----------
        values : array_like
            ``[E, n_pair]`` natural-log gains (``n_pair <= n_neurons``: the first ``n_pair`` neurons,
            rows in the order of the electrode layout); an empty array switches them (and the
            slopes) off.
        slope : array_like, optional
            ``[E, n_pair]``: each pair's log-gain grows by ``slope * (log(q) - log_q_ref)`` for a pulse
            of charge ``q`` nC per phase (what a session at several amplitudes measured about how
            steeply each electrode recruits each channel). None: no slopes.
        log_q_ref : float
            Natural log of the reference charge (nC) at which the slopes add nothing.

        Returns
        -------
        None
        """
        v = torch.as_tensor(np.asarray(values, dtype=np.float32))
        if v.numel() and (v.ndim != 2 or v.shape[0] != self.electrode_ids.shape[0] or v.shape[1] > self.n_neurons):
            raise ValueError(f"StimulusCoupling: pair_log_gain must be [{self.electrode_ids.shape[0]} electrodes, "
                             f"<= {self.n_neurons} neurons], got {tuple(v.shape)}")
        dev = self.neuron_xy_um.device
        sl = torch.zeros(0, 0) if slope is None or not v.numel() else torch.as_tensor(np.asarray(slope, np.float32))
        if sl.numel() and sl.shape != v.shape:
            raise ValueError(f"StimulusCoupling: pair_log_slope must have pair_log_gain's shape {tuple(v.shape)}, "
                             f"got {tuple(sl.shape)}")
        self.pair_log_gain = (v if v.numel() else torch.zeros(0, 0)).to(dev)
        self.pair_log_slope = sl.to(dev)
        self.pair_log_q_ref = torch.tensor(float(log_q_ref) if sl.numel() else 0.0, device=dev)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # files saved before ``distance_power`` or the direct pathway existed: keep the configured values
        for name in ("distance_power", *_DIRECT_NAMES):
            state_dict.setdefault(prefix + "log_" + name, getattr(self, "log_" + name).detach().clone())
        # pair gains: absent in older files (none); their shape is the file's
        pair = state_dict.setdefault(prefix + "pair_log_gain", torch.zeros(0, 0))
        self.pair_log_gain = torch.zeros(tuple(pair.shape), device=self.neuron_xy_um.device)
        slope = state_dict.setdefault(prefix + "pair_log_slope", torch.zeros(0, 0))
        self.pair_log_slope = torch.zeros(tuple(slope.shape), device=self.neuron_xy_um.device)
        state_dict.setdefault(prefix + "pair_log_q_ref", torch.zeros(()))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    # ------------------------------------------------------------------ physics
    def electrode_rows(self, electrode: np.ndarray) -> torch.Tensor:
        """Row of each electrode id in the coupling's electrode layout.

        Parameters
        ----------
        electrode : np.ndarray
            Electrode ids.

        Returns
        -------
        torch.Tensor
            int64 rows, on the coupling's device; an id outside the layout raises ValueError.
        """
        ids = self.electrode_ids.cpu().numpy()
        electrode = np.asarray(electrode)
        rows, found = index_of(ids, electrode)
        bad = ~found
        if np.any(bad):
            raise ValueError(f"stimulation events use electrodes {np.unique(electrode[bad])[:10].tolist()} "
                             f"that are not in the model's electrode layout ({len(ids)} electrodes)")
        return torch.as_tensor(rows, device=self.electrode_ids.device)

    _electrode_rows = electrode_rows  # the earlier private name, kept for one release

    def _charge_and_d2(self, events: StimEvents) -> tuple[torch.Tensor, torch.Tensor]:
        """``q`` ``[K]`` (nC) and squared distances ``[K, N]`` (um^2; inf for unknown electrode positions)."""
        dev = self.log_gain.device
        q = torch.as_tensor(charge_per_phase_nc(events, self.ua_per_mv), dtype=torch.float32, device=dev)
        rows = self.electrode_rows(np.asarray(events.electrode))
        d2 = ((self.electrode_xy_um[rows][:, None, :] - self.neuron_xy_um[None, :, :]) ** 2).sum(-1)
        # electrodes without a known position reach no neuron (NaN distance -> zero drive)
        return q, torch.nan_to_num(d2, nan=float("inf"))

    @staticmethod
    def _attenuation(d2: torch.Tensor, log_length: torch.Tensor, log_power: torch.Tensor) -> torch.Tensor:
        """``1 / (1 + (d / length)^p)`` from ``d^2`` (so that the gradient stays finite at d = 0)."""
        ratio = (d2 / torch.exp(2 * log_length)).clamp_min(1e-12) ** (0.5 * torch.exp(log_power))
        return 1.0 / (1.0 + ratio)

    def strength(self, events: StimEvents) -> torch.Tensor:
        """``[K, n_neurons]`` total depolarisation (threshold units) each event gives each neuron."""
        if len(events) == 0:
            return torch.zeros(0, self.n_neurons, device=self.log_gain.device)
        q, d2 = self._charge_and_d2(events)
        q_eff = q[:, None] * self._attenuation(d2, self.log_length_um, self.log_distance_power)
        h = torch.exp(self.log_hill)
        x = (q_eff / torch.exp(self.log_q50_nc)).clamp_min(0) ** h
        return torch.exp(self._log_gains(self.log_gain, events, q)) * x / (1.0 + x)

    def _log_gains(self, log_gain: torch.Tensor, events: StimEvents, q: torch.Tensor) -> torch.Tensor:
        """``[K, n_neurons]`` or ``[1, n_neurons]`` log of a pathway's gain times the neuron and pair gains
        (``q`` ``[K]`` nC per phase, for the pair gains' charge slopes)."""
        g = (log_gain + self.neuron_log_gain)[None, :]
        if self.pair_log_gain.numel() == 0:
            return g
        rows = self.electrode_rows(np.asarray(events.electrode))
        pair = self.pair_log_gain[rows]
        if self.pair_log_slope.numel():
            x = torch.log(q.clamp_min(1e-12)) - self.pair_log_q_ref
            pair = pair + self.pair_log_slope[rows] * x[:, None].to(pair.dtype)
        pad = torch.zeros(len(rows), self.n_neurons - pair.shape[1], device=pair.device, dtype=pair.dtype)
        return g + torch.cat([pair, pad], 1)

    def direct_strength(self, events: StimEvents) -> torch.Tensor:
        """``[K, n_neurons]`` expected number of directly evoked spikes ``m`` (zeros when ``direct`` is off)."""
        dev = self.log_gain.device
        if len(events) == 0 or not self.direct:
            return torch.zeros(len(events), self.n_neurons, device=dev)
        q, d2 = self._charge_and_d2(events)
        f = self._value("direct_local_fraction")
        prof = f * self._attenuation(d2, self.log_length_um, self.log_distance_power) + (1.0 - f) * self._attenuation(
            d2, self.log_direct_length_um, self.log_direct_power)
        x = (q[:, None] * prof / torch.exp(self.log_direct_q50_nc)).clamp_min(0) ** torch.exp(self.log_direct_hill)
        return torch.exp(self._log_gains(self.log_direct_gain, events, q)) * x / (1.0 + x)

    def direct_delay_s(self, events: StimEvents) -> torch.Tensor:
        """``[K, n_neurons]`` conduction delay (s) of direct spikes: distance / ``velocity_um_per_ms``."""
        _, d2 = self._charge_and_d2(events)
        return torch.sqrt(d2) / torch.exp(self.log_velocity_um_per_ms) * 1e-3

    @staticmethod
    def _alpha_weights(offsets_s: torch.Tensor, dt_s: float, log_tau_ms: torch.Tensor) -> torch.Tensor:
        tau = torch.exp(log_tau_ms.double()) * 1e-3   # float64: onsets are absolute seconds
        offsets_s = offsets_s.double()

        def cdf(t: torch.Tensor) -> torch.Tensor:  # integral of the alpha kernel from 0 to t
            u = t.clamp_min(0) / tau
            return 1.0 - (1.0 + u) * torch.exp(-u)

        return (cdf(offsets_s + dt_s) - cdf(offsets_s)).float()

    def kernel_weights(self, offsets_s: torch.Tensor, dt_s: float) -> torch.Tensor:
        """Fraction of an event's drive delivered in the step ``[o, o + dt_s)`` for each offset ``o`` (s)."""
        return self._alpha_weights(offsets_s, dt_s, self.log_tau_ms)

    def direct_kernel_weights(self, offsets_s: torch.Tensor, dt_s: float) -> torch.Tensor:
        """Fraction of an event's direct spikes expected in the step ``[o, o + dt_s)``, ``o`` (s) measured
        from the pulse *plus* the conduction delay (subtract :meth:`direct_delay_s` first)."""
        return self._alpha_weights(offsets_s, dt_s, self.log_direct_tau_ms)

    def _membrane_span_s(self) -> float:
        return KERNEL_SPAN_TAU * float(torch.exp(self.log_tau_ms).detach()) * 1e-3

    def span_s(self) -> float:
        """How long (s) after a pulse its input lasts (kernel cut after ``KERNEL_SPAN_TAU`` time constants,
        plus the longest conduction delay to any neuron with the direct pathway)."""
        span = self._membrane_span_s()
        if self.direct:
            d_max = 0.0
            if self.electrode_xy_um.shape[0] and self.n_neurons:
                d = torch.cdist(self.electrode_xy_um, self.neuron_xy_um)
                d = d[torch.isfinite(d)]
                d_max = float(d.max()) if d.numel() else 0.0
            span = max(span, KERNEL_SPAN_TAU * float(self._value("direct_tau_ms").detach()) * 1e-3
                       + d_max / float(self._value("velocity_um_per_ms").detach()) * 1e-3)
        return span

    def pulse_inputs(self, events: StimEvents, offsets_s: torch.Tensor, dt_s: float):
        """Per-event inputs at given step offsets: ``offsets_s`` ``[T, K]`` (s, step start minus the
        event's onset). Returns ``(membrane [T, K, N], direct [T, K, N] or None)``: threshold units
        per step and expected direct spikes per step."""
        amp = self.strength(events)                                              # [K, N]
        mem = self.kernel_weights(offsets_s, dt_s)[:, :, None] * amp[None]
        if not self.direct:
            return mem, None
        m = self.direct_strength(events)
        off = offsets_s.to(m.device)[:, :, None].double() - self.direct_delay_s(events)[None].double()
        return mem, self.direct_kernel_weights(off, dt_s) * m[None]

    def _deliver(self, events: StimEvents, n_steps: int, dt_s: float, t0: float, direct: bool,
                 rows: tuple[int, int] | None = None) -> torch.Tensor:
        """``[n_steps, n_neurons]`` input of ``events`` on steps ``t0 + j * dt_s``; ``rows=(lo, hi)``
        computes only steps ``lo..hi-1`` (``[hi - lo, n_neurons]``), with the same arithmetic as the
        whole window so the rows are bit-identical to its slice."""
        lo, hi = step_rows(n_steps, dt_s, rows, "StimulusCoupling")
        dev = self.log_gain.device
        out = torch.zeros(max(hi - lo, 0), self.n_neurons, device=dev)
        if len(events) == 0 or hi <= lo or (direct and not self.direct):
            return out
        span_s = self.span_s() if direct else self._membrane_span_s()
        events = events.reaching_steps(lo, hi, dt_s, t0, span_s)
        if len(events) == 0:
            return out
        if direct:
            amp = self.direct_strength(events)                                       # [K, N]
            delay = self.direct_delay_s(events).double()                             # [K, N]
        else:
            amp = self.strength(events)
        rel_np = events.time - t0
        # same binning rule as the spike tensors (elephant's floor with tolerance)
        first = torch.as_tensor(bin_index(rel_np / dt_s), device=dev)          # step holding the onset
        rel = torch.as_tensor(rel_np, dtype=torch.float64, device=dev)
        n_span = int(math.ceil(span_s / dt_s)) + 1
        for lag in range(n_span):
            step = first + lag
            ok = (step >= lo) & (step < hi)
            if not bool(ok.any()):
                continue
            offset = step.double() * dt_s - rel  # step start minus onset (s)
            if direct:
                w = self.direct_kernel_weights(offset[:, None] - delay, dt_s)        # [K, N]
                out = out.index_add(0, step[ok] - lo, w[ok] * amp[ok])
            else:
                w = self.kernel_weights(offset, dt_s)
                out = out.index_add(0, step[ok] - lo, w[ok, None] * amp[ok])
        return out

    def forward(self, events: StimEvents, n_steps: int, dt_s: float, t0: float = 0.0) -> torch.Tensor:
        """Membrane input ``[n_steps, n_neurons]`` (threshold units per step) for steps ``t0 + j * dt_s`` (s).

        Events before ``t0`` still deliver the part of their kernel that falls inside the window.
        """
        return self._deliver(events, n_steps, dt_s, t0, direct=False)

    def direct_input(self, events: StimEvents, n_steps: int, dt_s: float, t0: float = 0.0) -> torch.Tensor | None:
        """Expected directly evoked spikes per step ``[n_steps, n_neurons]`` for steps ``t0 + j * dt_s`` (s),
        to add to the models' expected spike count per step; None when the direct pathway is off."""
        if not self.direct:
            return None
        return self._deliver(events, n_steps, dt_s, t0, direct=True)

    def lazy_inputs(self, events: StimEvents, n_steps: int, dt_s: float, t0: float = 0.0):
        """:meth:`inputs` as :class:`StepInput` sources that compute their rows on demand (a model's
        ``run`` takes them in chunks), so long stimulated runs never hold ``[n_steps, n_neurons]``."""
        direct = StepInput(self, events, n_steps, dt_s, t0, direct=True) if self.direct else None
        return StepInput(self, events, n_steps, dt_s, t0, direct=False), direct

    def inputs(self, events: StimEvents, n_steps: int, dt_s: float, t0: float = 0.0):
        """``(membrane input, direct spikes or None)``, each ``[n_steps, n_neurons]``: :meth:`forward`
        and :meth:`direct_input` over the same steps, what a model's ``run`` takes as ``ext``/``direct``."""
        return self.forward(events, n_steps, dt_s, t0), self.direct_input(events, n_steps, dt_s, t0)


class StepInput:
    """Per-step input of a stimulation (membrane input or direct spikes, ``[n_steps, n_neurons]``)
    computed in row blocks on demand: ``rows(lo, hi)`` equals ``full[lo:hi]`` bit for bit.
    ``current`` (``[n_steps, n_neurons]``, optional) is added to the rows (e.g. ``input_current``)."""

    def __init__(self, coupling: "StimulusCoupling", events: StimEvents, n_steps: int, dt_s: float, t0: float,
                 direct: bool, current: torch.Tensor | None = None) -> None:
        self.coupling, self.events, self.n_steps = coupling, events, int(n_steps)
        self.dt_s, self.t0, self.direct, self.current = float(dt_s), float(t0), bool(direct), current

    def __len__(self) -> int:
        return self.n_steps

    def with_current(self, current: torch.Tensor) -> "StepInput":
        """The same source plus ``current`` (``[n_steps, n_neurons]``, threshold units per step)."""
        total = current if self.current is None else self.current + current
        return StepInput(self.coupling, self.events, self.n_steps, self.dt_s, self.t0, self.direct, total)

    def rows(self, lo: int, hi: int) -> torch.Tensor:
        """Steps ``lo..hi-1`` of the input, ``[hi - lo, n_neurons]``."""
        out = self.coupling._deliver(self.events, self.n_steps, self.dt_s, self.t0, self.direct, rows=(lo, hi))
        return out if self.current is None else out + self.current[lo:hi].to(out.device)
