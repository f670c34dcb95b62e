"""Builders for common stimulation experiments; each returns a :class:`Protocol`.

Times in seconds, amplitudes in uA (or mV with ``unit="mV"``), phase durations in us, rates in Hz.
Every builder that randomises (trial order, jitter, Poisson times) takes a ``seed``. Each one counts
its pulses first and refuses a protocol past the request-size limit (:mod:`organoid_sim.limits`).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ..limits import BYTES_PER_PULSE, check_request
from .protocol import Protocol, PulseTrain
from .pulses import PulseDesign


def _check_count(name: str, n_pulses: float) -> None:
    """Refuse a protocol whose pulse count passes the request-size limit before building it."""
    check_request(f"protocol {name!r}", float(n_pulses) * BYTES_PER_PULSE, f"{n_pulses:,.0f} pulses")


def _design(amplitude: float, phase_us: float, n_phases: int, unit: str) -> PulseDesign:
    if n_phases == 2:
        return PulseDesign.biphasic(amplitude, phase_us, unit=unit)
    if n_phases == 3:
        return PulseDesign.triphasic(amplitude, phase_us, unit=unit)
    raise ValueError(f"n_phases must be 2 (biphasic) or 3 (triphasic), got {n_phases}")


def _schedule(conditions: list, n_repeats: int, interval_s: float, start_s: float, jitter_s: float,
              seed: int) -> list[tuple[float, object]]:
    """Shuffle ``n_repeats`` copies of ``conditions`` and give each a start time ``interval_s`` apart."""
    if interval_s <= 0 or n_repeats < 1:
        raise ValueError(f"need interval_s > 0 and n_repeats >= 1, got {interval_s}, {n_repeats}")
    rng = np.random.default_rng(seed)
    trials = [c for _ in range(n_repeats) for c in conditions]
    order = rng.permutation(len(trials))
    jitter = rng.uniform(0.0, jitter_s, len(trials)) if jitter_s > 0 else np.zeros(len(trials))
    return [(start_s + k * interval_s + jitter[k], trials[i]) for k, i in enumerate(order)]


def probe_electrodes(electrodes: Sequence[int], amplitude: float = 2.0, phase_us: float = 200.0, *,
                     n_repeats: int = 10, interval_s: float = 0.5, start_s: float = 0.2,
                     jitter_s: float = 0.0, n_phases: int = 2, unit: str = "uA", seed: int = 0,
                     name: str = "probe") -> Protocol:
    """Single pulses on one electrode at a time, each electrode ``n_repeats`` times in random order,
    one pulse every ``interval_s`` s (plus uniform jitter up to ``jitter_s``)."""
    d = _design(amplitude, phase_us, n_phases, unit)
    _check_count(name, len(electrodes) * n_repeats)
    sched = _schedule([int(e) for e in electrodes], n_repeats, interval_s, start_s, jitter_s, seed)
    return Protocol(tuple(PulseTrain(d, (e,), round(t, 9)) for t, e in sched), name=name)


def amplitude_sweep(electrodes: Sequence[int], amplitudes: Sequence[float], phase_us: float = 200.0, *,
                    n_repeats: int = 10, interval_s: float = 0.5, start_s: float = 0.2, jitter_s: float = 0.0,
                    n_phases: int = 2, unit: str = "uA", seed: int = 0, name: str = "amplitude sweep") -> Protocol:
    """Every (electrode, amplitude) pair ``n_repeats`` times in random order, one pulse per trial."""
    _check_count(name, len(electrodes) * len(amplitudes) * n_repeats)
    conds = [(int(e), float(a)) for e in electrodes for a in amplitudes]
    sched = _schedule(conds, n_repeats, interval_s, start_s, jitter_s, seed)
    return Protocol(tuple(PulseTrain(_design(a, phase_us, n_phases, unit), (e,), round(t, 9))
                          for t, (e, a) in sched), name=name)


def frequency_sweep(electrodes: Sequence[int], frequencies_hz: Sequence[float], amplitude: float = 2.0,
                    phase_us: float = 200.0, *, n_pulses: int = 10, n_repeats: int = 3, rest_s: float = 1.0,
                    start_s: float = 0.2, n_phases: int = 2, unit: str = "uA", seed: int = 0,
                    name: str = "frequency sweep") -> Protocol:
    """Trains of ``n_pulses`` at each frequency on the electrode set, ``rest_s`` s between trains."""
    d = _design(amplitude, phase_us, n_phases, unit)
    el = tuple(int(e) for e in electrodes)
    _check_count(name, len(el) * len(frequencies_hz) * n_repeats * n_pulses)
    rng = np.random.default_rng(seed)
    freqs = [float(f) for _ in range(n_repeats) for f in frequencies_hz]
    t, trains = start_s, []
    for i in rng.permutation(len(freqs)):
        trains.append(PulseTrain(d, el, round(t, 9), n_pulses, freqs[i]))
        t = trains[-1].end_s + rest_s
    return Protocol(tuple(trains), name=name)


def paired_pulse(electrodes: Sequence[int], intervals_s: Sequence[float], amplitude: float = 2.0,
                 phase_us: float = 200.0, *, n_repeats: int = 10, trial_interval_s: float = 1.0,
                 start_s: float = 0.2, n_phases: int = 2, unit: str = "uA", seed: int = 0,
                 name: str = "paired pulse") -> Protocol:
    """Two pulses ``interval`` s apart on the electrode set, for each interval, in random order."""
    d = _design(amplitude, phase_us, n_phases, unit)
    el = tuple(int(e) for e in electrodes)
    _check_count(name, 2 * len(el) * len(intervals_s) * n_repeats)
    sched = _schedule([float(i) for i in intervals_s], n_repeats, trial_interval_s, start_s, 0.0, seed)
    return Protocol(tuple(PulseTrain(d, el, round(t, 9), 2, 1.0 / isi) for t, isi in sched), name=name)


def poisson_stimulation(electrodes: Sequence[int], rate_hz: float, duration_s: float, amplitude: float = 2.0,
                        phase_us: float = 200.0, *, refractory_s: float = 0.01, n_phases: int = 2,
                        unit: str = "uA", seed: int = 0, name: str = "poisson") -> Protocol:
    """Independent Poisson pulse trains of ``rate_hz`` on every electrode for ``duration_s`` seconds,
    with a dead time of ``refractory_s`` between pulses on one electrode."""
    if rate_hz <= 0 or duration_s <= 0:
        raise ValueError(f"need rate_hz > 0 and duration_s > 0, got {rate_hz}, {duration_s}")
    d = _design(amplitude, phase_us, n_phases, unit)
    _check_count(name, len(electrodes) * (rate_hz * duration_s * 2 + 10))
    rng = np.random.default_rng(seed)
    trains = []
    mean_gap = 1.0 / rate_hz
    for e in electrodes:
        n = int(rate_hz * duration_s * 2 + 10)
        gaps = refractory_s + rng.exponential(max(mean_gap - refractory_s, 1e-6), n)
        times = np.cumsum(gaps)
        times = times[times < duration_s - d.duration_s]
        trains += [PulseTrain(d, (int(e),), round(float(t), 9)) for t in times]
    trains.sort(key=lambda tr: tr.start_s)
    return Protocol(tuple(trains), duration_s=float(duration_s), name=name)
