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
acting on somata; smaller when long axons passing near the electrode spread the activation). ``neuron_log_gain`` (zero in the prior) lets calibration make
some neurons more or less excitable than the prior says.

Time course: the depolarisation is delivered through a normalised alpha kernel
``k(t) = t / tau^2 * exp(-t / tau)`` (``tau = tau_ms`` ms, peak at ``tau``, integral 1), which
stands for the short delay of axonal/synaptic activation after the pulse. ``forward`` integrates
the kernel exactly over each time step, so the sum of the returned input over time is ``A``
whatever the step size: the value in a step is the membrane increment in that step, in units of
the threshold (the models add it to the membrane potential).

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

from ..events import StimEvents
from ..recording import Electrodes
from ..tensor import bin_index

#: default conversion of voltage-mode amplitudes: uA per mV (1 MOhm electrode impedance)
UA_PER_MV = 1e-3
#: the alpha kernel is cut after this many time constants (it holds < 0.1 % of the charge beyond)
KERNEL_SPAN_TAU = 10.0

_PRIOR = dict(gain=3.0, q50_nc=0.3, hill=2.0, length_um=50.0, tau_ms=2.0, distance_power=2.0)
_NAMES = tuple(_PRIOR)


def charge_per_phase_nc(events: StimEvents, ua_per_mv: float = UA_PER_MV) -> np.ndarray:
    """Charge per phase in nC of each event: ``|I uA| * phase_us * 1e-3`` (mV converted by ``ua_per_mv``)."""
    amp = np.abs(events.amplitude)
    if events.amplitude_unit == "mV":
        amp = amp * ua_per_mv
    return amp * events.phase_us * 1e-3


class StimulusCoupling(nn.Module):
    """Input current that stimulation events inject into each model neuron (see the module docstring).

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
    """

    def __init__(self, neuron_xy_um, electrode_ids, electrode_xy_um, *, gain: float = _PRIOR["gain"],
                 q50_nc: float = _PRIOR["q50_nc"], hill: float = _PRIOR["hill"],
                 length_um: float = _PRIOR["length_um"], tau_ms: float = _PRIOR["tau_ms"],
                 distance_power: float = _PRIOR["distance_power"], ua_per_mv: float = UA_PER_MV) -> None:
        super().__init__()
        xy = torch.as_tensor(np.array(neuron_xy_um, dtype=np.float32))
        eids = np.asarray(electrode_ids, dtype=np.int64)
        exy = torch.as_tensor(np.array(electrode_xy_um, dtype=np.float32)).reshape(-1, 2)
        if xy.ndim != 2 or xy.shape[1] != 2:
            raise ValueError(f"StimulusCoupling: neuron_xy_um must have shape (n_neurons, 2) um, got {tuple(xy.shape)}")
        if eids.ndim != 1 or len(eids) != exy.shape[0]:
            raise ValueError(f"StimulusCoupling: {len(eids)} electrode ids but {exy.shape[0]} electrode positions")
        for name, v in (("gain", gain), ("q50_nc", q50_nc), ("hill", hill), ("length_um", length_um),
                        ("tau_ms", tau_ms), ("distance_power", distance_power), ("ua_per_mv", ua_per_mv)):
            if not (np.isfinite(v) and v > 0):
                raise ValueError(f"StimulusCoupling: {name} must be a positive finite number, got {v}")
        self.ua_per_mv = float(ua_per_mv)
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

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_prior(cls, neuron_xy_um, electrodes: Electrodes, **overrides) -> "StimulusCoupling":
        """The physical prior for neurons at ``neuron_xy_um`` (um) under the ``electrodes`` layout.

        ``overrides`` replace prior values (``gain``, ``q50_nc``, ``hill``, ``length_um``,
        ``tau_ms``, ``distance_power``, ``ua_per_mv``). Electrodes with unknown (NaN) positions cannot stimulate anyone.
        """
        xy = electrodes.positions if len(electrodes) else np.zeros((0, 2))
        return cls(neuron_xy_um, electrodes.ids, xy, **overrides)

    @property
    def n_neurons(self) -> int:
        """Number of model neurons driven by the coupling."""
        return int(self.neuron_xy_um.shape[0])

    def values(self) -> dict[str, float]:
        """The global parameters in natural units (``gain``, ``q50_nc``, ``hill``, ``length_um``, ``tau_ms``,
        ``distance_power``)."""
        return {name: float(torch.exp(getattr(self, "log_" + name)).detach()) for name in _NAMES}

    def config(self) -> dict[str, Any]:
        """JSON-serialisable configuration; tensors (positions, parameters) live in the state dict."""
        return {"n_neurons": self.n_neurons, "n_electrodes": int(self.electrode_ids.shape[0]),
                "ua_per_mv": self.ua_per_mv, **self.values()}

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> "StimulusCoupling":
        """An instance shaped by :meth:`config`; load the saved state dict into it for positions and gains."""
        n, e = int(config["n_neurons"]), int(config["n_electrodes"])
        kw = {k: float(config[k]) for k in (*_NAMES, "ua_per_mv") if k in config}
        return cls(np.zeros((n, 2)), np.arange(e), np.zeros((e, 2)), **kw)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # files saved before ``distance_power`` existed: keep the configured value (the prior's 2)
        state_dict.setdefault(prefix + "log_distance_power", self.log_distance_power.detach().clone())
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    # ------------------------------------------------------------------ physics
    def _electrode_rows(self, electrode: np.ndarray) -> torch.Tensor:
        ids = self.electrode_ids.cpu().numpy()
        order = np.argsort(ids)
        pos = np.clip(np.searchsorted(ids, electrode, sorter=order), 0, max(len(ids) - 1, 0))
        rows = order[pos] if len(ids) else pos
        bad = (ids[rows] != electrode) if len(ids) else np.ones(len(electrode), bool)
        if np.any(bad):
            raise ValueError(f"stimulation events use electrodes {np.unique(electrode[bad])[:10].tolist()} "
                             f"that are not in the model's electrode layout ({len(ids)} electrodes)")
        return torch.as_tensor(rows, device=self.electrode_ids.device)

    def strength(self, events: StimEvents) -> torch.Tensor:
        """``[K, n_neurons]`` total depolarisation (threshold units) each event gives each neuron."""
        dev = self.log_gain.device
        if len(events) == 0:
            return torch.zeros(0, self.n_neurons, device=dev)
        q = torch.as_tensor(charge_per_phase_nc(events, self.ua_per_mv), dtype=torch.float32, device=dev)
        rows = self._electrode_rows(np.asarray(events.electrode))
        d2 = ((self.electrode_xy_um[rows][:, None, :] - self.neuron_xy_um[None, :, :]) ** 2).sum(-1)
        # electrodes without a known position reach no neuron (NaN distance -> zero drive)
        d2 = torch.nan_to_num(d2, nan=float("inf"))
        # (d / length)^p computed from d^2 so that the gradient stays finite at d = 0
        ratio = (d2 / torch.exp(2 * self.log_length_um)).clamp_min(1e-12) ** (0.5 * torch.exp(self.log_distance_power))
        q_eff = q[:, None] / (1.0 + ratio)
        h = torch.exp(self.log_hill)
        x = (q_eff / torch.exp(self.log_q50_nc)).clamp_min(0) ** h
        return torch.exp(self.log_gain + self.neuron_log_gain)[None, :] * x / (1.0 + x)

    def kernel_weights(self, offsets_s: torch.Tensor, dt_s: float) -> torch.Tensor:
        """Fraction of an event's drive delivered in the step ``[o, o + dt_s)`` for each offset ``o`` (s)."""
        tau = torch.exp(self.log_tau_ms.double()) * 1e-3   # float64: onsets are absolute seconds
        offsets_s = offsets_s.double()

        def cdf(t: torch.Tensor) -> torch.Tensor:  # integral of the alpha kernel from 0 to t
            u = t.clamp_min(0) / tau
            return 1.0 - (1.0 + u) * torch.exp(-u)

        return (cdf(offsets_s + dt_s) - cdf(offsets_s)).float()

    def forward(self, events: StimEvents, n_steps: int, dt_s: float, t0: float = 0.0) -> torch.Tensor:
        """Input ``[n_steps, n_neurons]`` (threshold units per step) for steps ``t0 + j * dt_s`` (seconds).

        Events before ``t0`` still deliver the part of their kernel that falls inside the window.
        """
        n_steps = int(n_steps)
        if n_steps < 0 or not dt_s > 0:
            raise ValueError(f"StimulusCoupling: need n_steps >= 0 and dt_s > 0 s, got {n_steps}, {dt_s}")
        dev = self.log_gain.device
        out = torch.zeros(n_steps, self.n_neurons, device=dev)
        if len(events) == 0 or n_steps == 0:
            return out
        span_s = KERNEL_SPAN_TAU * float(torch.exp(self.log_tau_ms).detach()) * 1e-3
        keep = (events.time >= t0 - span_s) & (events.time < t0 + n_steps * dt_s)
        events = events.take(keep)
        if len(events) == 0:
            return out
        amp = self.strength(events)                                          # [K, N]
        rel_np = events.time - t0
        # same binning rule as the spike tensors (elephant's floor with tolerance)
        first = torch.as_tensor(bin_index(rel_np / dt_s), device=dev)          # step holding the onset
        rel = torch.as_tensor(rel_np, dtype=torch.float64, device=dev)
        n_span = int(math.ceil(span_s / dt_s)) + 1
        for lag in range(n_span):
            step = first + lag
            ok = (step >= 0) & (step < n_steps)
            if not bool(ok.any()):
                continue
            offset = step.double() * dt_s - rel  # step start minus onset (s)
            w = self.kernel_weights(offset, dt_s)
            out = out.index_add(0, step[ok], w[ok, None] * amp[ok])
        return out
