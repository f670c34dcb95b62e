"""Stimulation protocols: pulse trains on electrode sets at scheduled times.

A :class:`Protocol` is a list of :class:`PulseTrain` s; each train delivers ``n_pulses`` copies of one
:class:`~organoid_sim.stimulation.pulses.PulseDesign` at ``frequency_hz`` on every electrode of its set,
starting at ``start_s`` seconds. ``Protocol.to_events()`` flattens it into the
:class:`~organoid_sim.events.StimEvents` table that models and recordings carry. Protocols are saved
to and loaded from YAML or JSON (by extension), atomically.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np
import yaml

from ..atomic import atomic_write_text
from ..events import StimEvents
from .pulses import PulseDesign

DEFAULT_TAIL_S = 0.3  # quiet time after the last pulse so late responses are recorded


@dataclass(frozen=True)
class PulseTrain:
    """``n_pulses`` pulses of ``design`` at ``frequency_hz`` on each of ``electrodes``, from ``start_s`` s."""

    design: PulseDesign
    electrodes: tuple[int, ...]
    start_s: float = 0.0
    n_pulses: int = 1
    frequency_hz: float | None = None

    def __post_init__(self) -> None:
        el = tuple(int(e) for e in np.atleast_1d(self.electrodes))
        if not el:
            raise ValueError("pulse train: electrode set is empty")
        if len(set(el)) != len(el):
            raise ValueError(f"pulse train: electrode set has duplicates: {el}")
        object.__setattr__(self, "electrodes", el)
        if not np.isfinite(self.start_s) or self.start_s < 0:
            raise ValueError(f"pulse train: start_s must be finite and >= 0 s, got {self.start_s}")
        if int(self.n_pulses) != self.n_pulses or self.n_pulses < 1:
            raise ValueError(f"pulse train: n_pulses must be a positive integer, got {self.n_pulses!r}")
        object.__setattr__(self, "n_pulses", int(self.n_pulses))
        if self.n_pulses > 1 and (self.frequency_hz is None or not self.frequency_hz > 0):
            raise ValueError(f"pulse train: {self.n_pulses} pulses need frequency_hz > 0, "
                             f"got {self.frequency_hz}")

    @property
    def pulse_times(self) -> np.ndarray:
        """Onset of each pulse in seconds."""
        if self.n_pulses == 1:
            return np.array([float(self.start_s)])
        return self.start_s + np.arange(self.n_pulses) / float(self.frequency_hz)

    @property
    def end_s(self) -> float:
        """End of the last pulse in seconds (computed, not from :attr:`pulse_times`: a huge train is
        refused by :meth:`Protocol.check_size` before any array of it exists)."""
        last = 0.0 if self.n_pulses == 1 else (self.n_pulses - 1) / float(self.frequency_hz)
        return float(self.start_s + last + self.design.duration_s)

    def to_dict(self) -> dict:
        """Plain dict (YAML/JSON)."""
        return {"design": self.design.to_dict(), "electrodes": list(self.electrodes),
                "start_s": float(self.start_s), "n_pulses": self.n_pulses,
                "frequency_hz": None if self.frequency_hz is None else float(self.frequency_hz)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "PulseTrain":
        """Inverse of :meth:`to_dict`."""
        for key in ("design", "electrodes"):
            if key not in d:
                raise ValueError(f"pulse train: missing key {key!r} (have {sorted(d)})")
        return cls(PulseDesign.from_dict(d["design"]), tuple(d["electrodes"]), float(d.get("start_s", 0.0)),
                   d.get("n_pulses", 1), d.get("frequency_hz"))   # __post_init__ refuses a fractional count


@dataclass(frozen=True)
class Protocol:
    """A timed schedule of pulse trains.

    ``duration_s`` (seconds) defaults to the end of the last pulse plus ``DEFAULT_TAIL_S``.
    ``device`` optionally names the :class:`DeviceProfile` it was written for.
    """

    trains: tuple[PulseTrain, ...]
    duration_s: float | None = None
    name: str = "protocol"
    device: str | None = None
    metadata: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        trains = tuple(self.trains)
        if not all(isinstance(t, PulseTrain) for t in trains):
            raise ValueError("protocol: every entry of trains must be a PulseTrain")
        units = {t.design.unit for t in trains}
        if len(units) > 1:
            raise ValueError(f"protocol: trains mix amplitude units {sorted(units)}")
        object.__setattr__(self, "trains", trains)
        end = max((t.end_s for t in trains), default=0.0)
        if self.duration_s is None:
            object.__setattr__(self, "duration_s", end + DEFAULT_TAIL_S)
        elif not self.duration_s >= end:
            raise ValueError(f"protocol: duration_s={self.duration_s} s ends before the last pulse ({end:.6f} s)")
        object.__setattr__(self, "duration_s", float(self.duration_s))

    @property
    def unit(self) -> str:
        """Amplitude unit of the protocol's pulses (``"uA"`` when empty)."""
        return self.trains[0].design.unit if self.trains else "uA"

    @property
    def n_pulses(self) -> int:
        """Delivered pulses: each train's ``n_pulses`` times its number of electrodes, summed."""
        return sum(t.n_pulses * len(t.electrodes) for t in self.trains)

    def check_size(self) -> None:
        """Refuse a protocol too large to flatten and check (:mod:`organoid_sim.limits`: about
        ``BYTES_PER_PULSE`` bytes per delivered pulse against the request-size limit)."""
        from ..limits import BYTES_PER_PULSE, check_request

        check_request(f"protocol {self.name!r}", self.n_pulses * BYTES_PER_PULSE, f"{self.n_pulses:,} pulses")

    def iter_pulses(self) -> Iterator[tuple[int, int, float, int, PulseDesign]]:
        """Yield ``(train index, pulse index, time s, electrode, design)`` for every delivered pulse.

        Raises :class:`~organoid_sim.limits.RequestTooLargeError` first when the protocol passes the
        request-size limit (:meth:`check_size`)."""
        self.check_size()
        for ti, train in enumerate(self.trains):
            for pi, t in enumerate(train.pulse_times):
                for e in train.electrodes:
                    yield ti, pi, float(t), e, train.design

    def to_events(self) -> StimEvents:
        """Flatten into a time-sorted :class:`StimEvents` table (one row per pulse and electrode)."""
        rows = [(t, e, *d.event_fields()) for _, _, t, e, d in self.iter_pulses()]
        if not rows:
            return StimEvents.empty(self.unit)
        t, e, a, p, n = (np.array(c) for c in zip(*rows))
        return StimEvents.from_columns(t, e, a, p, n, amplitude_unit=self.unit)

    def shifted(self, dt: float) -> "Protocol":
        """The same protocol ``dt`` seconds later (duration extended by ``dt``)."""
        trains = tuple(PulseTrain(t.design, t.electrodes, t.start_s + dt, t.n_pulses, t.frequency_hz)
                       for t in self.trains)
        return Protocol(trains, self.duration_s + dt, self.name, self.device, dict(self.metadata))

    # persistence ------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        """Plain dict (YAML/JSON)."""
        return {"name": self.name, "device": self.device, "duration_s": self.duration_s,
                "metadata": dict(self.metadata), "trains": [t.to_dict() for t in self.trains]}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Protocol":
        """Inverse of :meth:`to_dict`."""
        if not isinstance(d, Mapping) or "trains" not in d:
            raise ValueError("protocol: expected a mapping with a 'trains' list")
        trains = []
        for i, t in enumerate(d["trains"]):
            try:
                trains.append(PulseTrain.from_dict(t))
            except (ValueError, TypeError, AttributeError) as exc:
                raise ValueError(f"protocol: train {i}: {exc}") from exc
        return cls(tuple(trains), d.get("duration_s"), d.get("name", "protocol"), d.get("device"),
                   dict(d.get("metadata") or {}))

    def save(self, path: str | os.PathLike) -> Path:
        """Write to ``.yaml``/``.yml`` or ``.json`` atomically (temp file + rename); returns the path."""
        path = Path(path)
        d = self.to_dict()
        if path.suffix.lower() in (".yaml", ".yml"):
            text = yaml.safe_dump(d, sort_keys=False)
        elif path.suffix.lower() == ".json":
            text = json.dumps(d, indent=1)
        else:
            raise ValueError(f"{path}: protocol files must end in .yaml, .yml or .json")
        atomic_write_text(path, text)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Protocol":
        """Read a protocol from YAML or JSON; errors name the file and the problem."""
        path = Path(path)
        try:
            text = path.read_text()
        except OSError as exc:
            raise FileNotFoundError(f"{path}: cannot read protocol: {exc}") from exc
        try:
            d = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
        except (json.JSONDecodeError, yaml.YAMLError) as exc:
            raise ValueError(f"{path}: not valid {'JSON' if path.suffix == '.json' else 'YAML'}: {exc}") from exc
        try:
            return cls.from_dict(d)
        except (ValueError, TypeError) as exc:
            raise ValueError(f"{path}: {exc}") from exc

    def __repr__(self) -> str:
        return (f"Protocol({self.name!r}: {len(self.trains)} trains, {self.n_pulses} pulses, "
                f"{self.duration_s:.3f} s, unit {self.unit})")

    def __str__(self) -> str:
        """One line for reports: name, trains, pulses, duration and the device it was written for."""
        trains = f"{len(self.trains)} train{'s' if len(self.trains) != 1 else ''}"
        device = f", device {self.device}" if self.device else ""
        return f"protocol '{self.name}': {trains}, {self.n_pulses:,} pulses, {self.duration_s:.3f} s{device}"


def as_events(protocol_or_events) -> tuple[StimEvents, float]:
    """``(events, duration_s)`` from a :class:`Protocol`, any object with ``to_events()`` and
    ``duration_s``, or a bare :class:`StimEvents` (duration: last pulse + ``DEFAULT_TAIL_S``)."""
    if isinstance(protocol_or_events, StimEvents):
        ev = protocol_or_events
        end = float(ev.time[-1] + ev.duration[-1]) if len(ev) else 0.0
        return ev, end + DEFAULT_TAIL_S
    return protocol_or_events.to_events(), float(protocol_or_events.duration_s)


def merge(protocols: Sequence[Protocol], name: str = "merged") -> Protocol:
    """One protocol holding all trains of ``protocols`` (times unchanged)."""
    trains = tuple(t for p in protocols for t in p.trains)
    return Protocol(trains, max((p.duration_s for p in protocols), default=None), name)
