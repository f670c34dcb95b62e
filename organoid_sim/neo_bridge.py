"""Lossless conversion between :class:`SpikeRecording` and ``neo.SpikeTrain`` lists.

Each unit becomes one ``neo.SpikeTrain`` in seconds with ``t_start``/``t_stop`` of the recording;
the unit id, electrode id and position (um) travel as annotations, so ``from_neo(to_neo(r))``
restores them. Recording-level fields (layout, stimulation, metadata, sampling rate) ride on the
first train's annotations under ``organoid_sim_*`` keys.

A recording with no units gives an empty list, which carries no window: ``from_neo`` of neo objects
without spike trains takes the window from a ``neo.Segment``/``neo.Block`` that holds other data
(signals, events), else from ``t_start=``/``t_stop=`` given to it, and otherwise raises an error
saying so (``SpikeRecording.from_neo(rec.to_neo(), t_start=rec.t_start, t_stop=rec.t_stop)``).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import numpy as np

from .events import StimEvents

if TYPE_CHECKING:
    from .recording import SpikeRecording


def recording_to_neo(rec: "SpikeRecording") -> list:
    """One ``neo.SpikeTrain`` per unit, times in seconds, in unit order (empty with no units)."""
    import neo
    import quantities as pq

    trains = []
    extra = {
        "organoid_sim_electrodes": json.dumps({"ids": rec.electrodes.ids.tolist(),
                                               "x": rec.electrodes.x.tolist(), "y": rec.electrodes.y.tolist()}),
        "organoid_sim_stim": json.dumps(rec.stim.to_dict()),
        "organoid_sim_metadata": json.dumps(rec.metadata),
        "organoid_sim_sampling_rate": -1.0 if rec.sampling_rate is None else rec.sampling_rate,
        "organoid_sim_unit_id_kind": rec.unit_ids.dtype.kind,
    }
    for i, st in enumerate(rec.spike_times):
        ann = {"unit_id": rec.unit_ids[i].item(), "electrode_id": int(rec.electrode_ids[i]),
               "x_um": float(rec.positions[i, 0]), "y_um": float(rec.positions[i, 1])}
        if i == 0:
            ann.update(extra)
        train = neo.SpikeTrain(np.array(st, dtype=np.float64), units=pq.s, t_start=rec.t_start * pq.s,
                               t_stop=rec.t_stop * pq.s, name=str(rec.unit_ids[i]), dtype=np.float64)
        train.annotate(**ann)
        if rec.sampling_rate is not None:
            train.sampling_rate = rec.sampling_rate * pq.Hz
        trains.append(train)
    return trains


def _trains_of(obj: Any) -> list:
    import neo

    if isinstance(obj, neo.SpikeTrain):
        return [obj]
    if isinstance(obj, neo.Block):
        return [st for seg in obj.segments for st in seg.spiketrains]
    if isinstance(obj, neo.Segment):
        return list(obj.spiketrains)
    trains = list(obj)
    if not all(isinstance(t, neo.SpikeTrain) for t in trains):
        raise TypeError("from_neo expects a neo.Block, neo.Segment or a list of neo.SpikeTrain")
    return trains


def _segment_window(obj: Any) -> dict[str, float]:
    """``t_start``/``t_stop`` (s) spanned by the data of a neo Segment or Block ({} when none)."""
    import neo
    import quantities as pq

    segments = obj.segments if isinstance(obj, neo.Block) else [obj] if isinstance(obj, neo.Segment) else []
    starts = [float(seg.t_start.rescale(pq.s).magnitude) for seg in segments if seg.t_start is not None]
    stops = [float(seg.t_stop.rescale(pq.s).magnitude) for seg in segments if seg.t_stop is not None]
    return {"t_start": min(starts), "t_stop": max(stops)} if starts and stops else {}


def neo_fields(obj: Any) -> tuple[list[np.ndarray], dict[str, Any]]:
    """Spike times and :meth:`SpikeRecording.from_spike_times` keywords of neo objects.

    Parameters
    ----------
    obj : neo.Block, neo.Segment, neo.SpikeTrain or list of neo.SpikeTrain
        The spike trains (any time unit; converted to seconds via quantities).

    Returns
    -------
    times : list of np.ndarray
        Spike times per unit (s).
    kwargs : dict
        ``t_start``, ``t_stop`` (s), ``unit_ids``, ``electrode_ids``, ``positions`` (um) and, where
        the trains carry them, ``stim``, ``metadata``, ``sampling_rate`` (Hz) and ``electrodes`` as
        an ``(ids, x_um, y_um)`` tuple of arrays (the caller builds its layout object from it).
        Without spike trains: no times, ``unit_ids`` empty and ``t_start``/``t_stop`` (s) only when
        a ``neo.Segment``/``neo.Block`` holds other data that spans a window.
    """
    import quantities as pq

    trains = _trains_of(obj)
    if not trains:
        return [], {"unit_ids": np.zeros(0, np.int64), **_segment_window(obj)}
    times = [np.asarray(t.rescale(pq.s).magnitude, dtype=np.float64) for t in trains]
    t_start = min(float(t.t_start.rescale(pq.s).magnitude) for t in trains)
    t_stop = max(float(t.t_stop.rescale(pq.s).magnitude) for t in trains)
    ann0 = trains[0].annotations
    ids = [t.annotations.get("unit_id", t.name if t.name is not None else i) for i, t in enumerate(trains)]
    kind = ann0.get("organoid_sim_unit_id_kind")
    unit_ids = np.array(ids, dtype=np.int64 if kind in ("i", "u") else None)
    if kind == "U":
        unit_ids = unit_ids.astype(str)
    kwargs: dict[str, Any] = dict(
        t_start=t_start, t_stop=t_stop, unit_ids=unit_ids,
        electrode_ids=np.array([int(t.annotations.get("electrode_id", -1)) for t in trains], dtype=np.int64),
        positions=np.array([[float(t.annotations.get("x_um", np.nan)), float(t.annotations.get("y_um", np.nan))]
                            for t in trains]),
    )
    if "organoid_sim_electrodes" in ann0:
        e = json.loads(ann0["organoid_sim_electrodes"])
        kwargs["electrodes"] = (np.asarray(e["ids"], dtype=np.int64), np.asarray(e["x"], float),
                                np.asarray(e["y"], float))
    if "organoid_sim_stim" in ann0:
        kwargs["stim"] = StimEvents.from_dict(json.loads(ann0["organoid_sim_stim"]))
    if "organoid_sim_metadata" in ann0:
        kwargs["metadata"] = json.loads(ann0["organoid_sim_metadata"])
    fs = ann0.get("organoid_sim_sampling_rate")
    if fs is not None:
        kwargs["sampling_rate"] = None if fs < 0 else fs
    elif getattr(trains[0], "sampling_rate", None) is not None:
        kwargs["sampling_rate"] = float(trains[0].sampling_rate.rescale(pq.Hz).magnitude)
    return times, kwargs
