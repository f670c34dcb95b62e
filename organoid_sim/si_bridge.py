"""Conversion between :class:`SpikeRecording` and SpikeInterface sortings (optional ``interop`` extra).

``SpikeRecording.from_spikeinterface(sorting, recording=None)`` takes any SpikeInterface
``BaseSorting`` (``NumpySorting``, ``read_phy``, ``read_kilosort``, a sorter's output, ...):

* times: spike frames / sampling frequency, plus the recording's start time when a recording is
  given (else 0 s); window ``[start, start + num_samples / fs]`` when the duration is known (a
  recording given or registered with the sorting), else ``[0, last spike]``;
* unit ids as SpikeInterface gives them (integers or text), the sampling frequency as
  ``sampling_rate``;
* electrode and position of a unit from its main channel: the sorting property
  ``main_channel_id`` (a channel id; phy/Kilosort folders and SpikeInterface's NWB reader set
  it), else ``ch`` (a channel index, phy's ``cluster_info.tsv``); positions (um) are the
  recording's channel locations (its probe), electrode ids the channel ids when they are
  integers, else the channel indices (the ids are then kept in ``metadata["channel_ids"]``).
* without a recording, what :func:`recording_to_spikeinterface` wrote is read back: the start
  time (the sorting's own ``get_start_time()`` when not 0, else the annotation ``t_start_s``), the
  end ``t_stop_s`` (s), the unit properties ``electrode_id``, ``x_um`` and ``y_um`` (um), and the
  annotation ``organoid_sim`` (JSON: electrode layout, stimulation, metadata, sampling rate), so
  ``from_spikeinterface(rec.to_spikeinterface())`` equals ``rec`` up to the rounding of spike times
  to frames (annotations and properties survive SpikeInterface's ``save`` and ``select_units``).

``rec.to_spikeinterface(sampling_frequency=None)`` returns a ``NumpySorting`` at
``sampling_frequency`` (default: the recording's sampling rate, else ``1 / spike_time_resolution``;
times are rounded to the nearest frame counted from ``t_start``, and the sorting starts at
``t_start``: ``get_start_time()``) with the unit ids, per unit the properties ``electrode_id``,
``x_um``, ``y_um`` and ``main_channel_id``, and the annotations ``t_start_s``, ``t_stop_s`` and
``organoid_sim`` above.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from .recording import SpikeRecording
# No import of the recording module at run time: recording.py imports this module and builds the
# object from the fields returned here (the same split as neo_bridge).

DEFAULT_RESOLUTION_S = 1e-6  # spike-time resolution used when nothing better is known (s)
MAIN_CHANNEL_PROPERTIES = ("main_channel_id", "ch")
ANNOTATION = "organoid_sim"  # JSON of what a sorting cannot hold natively (layout, stim, metadata, rate)


def spike_time_resolution(rec: "SpikeRecording", given: float | None = None) -> tuple[float, str]:
    """Smallest meaningful difference between two spike times of ``rec`` and where it comes from.

    Parameters
    ----------
    rec : SpikeRecording
        The recording.
    given : float, optional
        An explicit resolution in seconds (wins when given).

    Returns
    -------
    (float, str)
        The resolution in **s** and its origin: ``given``, else ``1 / sampling_rate``, else
        ``metadata["time_resolution_s"]``, else the simulation step ``metadata["dt_ms"] / 1000``,
        else ``DEFAULT_RESOLUTION_S`` (1 us; the recording's times are float64 seconds).
    """
    md = rec.metadata
    dt_ms = md.get("dt_ms")
    candidates = ((given, "option"), (1.0 / rec.sampling_rate if rec.sampling_rate else None, "sampling rate"),
                  (md.get("time_resolution_s"), "metadata time_resolution_s"),
                  (dt_ms / 1000.0 if isinstance(dt_ms, (int, float)) else None, "simulation time step dt_ms"))
    for value, origin in candidates:
        if value is not None:
            value = float(value)
            if not (np.isfinite(value) and value > 0):
                raise ValueError(f"spike-time resolution from {origin} must be a positive number of seconds, "
                                 f"got {value}")
            return value, origin
    return DEFAULT_RESOLUTION_S, "default (sampling rate unknown)"


def _probe_layout(recording) -> tuple[np.ndarray, np.ndarray, np.ndarray, Any]:
    """(channel ids, electrode ids int64, (C, 2) positions um, id kind) of a SpikeInterface recording."""
    channel_ids = np.asarray(recording.get_channel_ids())
    try:
        locations = np.asarray(recording.get_channel_locations(), dtype=np.float64)[:, :2]
    except (ValueError, AttributeError, KeyError):  # no probe attached
        locations = np.full((len(channel_ids), 2), np.nan)
    if channel_ids.dtype.kind in "iu":
        electrode_ids = channel_ids.astype(np.int64)
    else:
        try:
            electrode_ids = np.array([int(c) for c in channel_ids.tolist()], dtype=np.int64)
        except ValueError:
            electrode_ids = np.arange(len(channel_ids), dtype=np.int64)
    return channel_ids, electrode_ids, locations, channel_ids.dtype.kind


def _main_channel_index(sorting, channel_ids: np.ndarray | None, n_channels: int | None) -> np.ndarray | None:
    """Index (into the channels) of each unit's main channel, -1 unknown; None without a property."""
    keys = set(sorting.get_property_keys())
    if "main_channel_id" in keys and channel_ids is not None:
        values = np.asarray(sorting.get_property("main_channel_id"))
        lookup = {str(c): i for i, c in enumerate(channel_ids.tolist())}
        return np.array([lookup.get(str(v), -1) for v in values.tolist()], dtype=np.int64)
    if "ch" in keys:
        values = np.asarray(sorting.get_property("ch"), dtype=np.float64)
        limit = np.inf if n_channels is None else n_channels
        ok = np.isfinite(values) & (values >= 0) & (values < limit)
        return np.where(ok, values, -1).astype(np.int64)
    return None


def spikeinterface_fields(sorting, recording=None, *, segment_index: int = 0,
                         metadata: dict | None = None) -> tuple[list[np.ndarray], dict[str, Any]]:
    """Spike times and :meth:`SpikeRecording.from_spike_times` keywords of a SpikeInterface sorting.

    Parameters
    ----------
    sorting : spikeinterface BaseSorting
        The sorting.
    recording : spikeinterface BaseRecording, optional
        Window and probe (module docstring); default the recording registered with the sorting.
    segment_index : int
        Which segment.
    metadata : dict, optional
        Added to the metadata.

    Returns
    -------
    times : list of np.ndarray
        Spike times per unit (s).
    kwargs : dict
        ``t_start``, ``t_stop`` (s), ``unit_ids``, ``sampling_rate`` (Hz), ``metadata`` and, where
        known, ``electrode_ids``, ``positions`` (um), ``stim`` and ``electrodes`` as an
        ``(ids, x_um, y_um)`` tuple of arrays (the caller builds its layout object from it).
    """
    n_seg = sorting.get_num_segments()
    if not 0 <= segment_index < n_seg:
        raise ValueError(f"segment_index={segment_index} but the sorting has {n_seg} segment(s)")
    fs = float(sorting.get_sampling_frequency())
    if recording is None and sorting.has_recording():
        recording = sorting._recording  # registered by the sorter; SpikeInterface has no public getter
    if recording is not None and float(recording.get_sampling_frequency()) != fs:
        raise ValueError(f"sorting at {fs:g} Hz but recording at {recording.get_sampling_frequency():g} Hz")
    ours = _our_annotations(sorting) if recording is None else {}
    if recording is not None:
        t0 = float(recording.get_start_time(segment_index))
    else:
        own = float(sorting.get_start_time(segment_index)) if hasattr(sorting, "get_start_time") else 0.0
        t0 = own if own != 0.0 else _annotated_seconds(sorting, "t_start_s", 0.0)
    unit_ids = np.asarray(sorting.get_unit_ids())
    trains = [t0 + np.sort(np.asarray(sorting.get_unit_spike_train(u, segment_index=segment_index),
                                      dtype=np.float64)) / fs for u in unit_ids.tolist()]
    if recording is not None:
        t_stop = t0 + recording.get_num_samples(segment_index) / fs
    else:
        t_stop = _annotated_seconds(sorting, "t_stop_s", None)
    if "metadata" in ours:
        md = {**ours["metadata"], **(metadata or {})}
    else:
        md = {"source": "spikeinterface", "format": "spikeinterface", "sorting": type(sorting).__name__,
              "segment_index": segment_index, **(metadata or {})}
    kw: dict[str, Any] = {"t_start": t0, "t_stop": t_stop, "sampling_rate": ours.get("sampling_rate", fs),
                          "metadata": md,
                          "unit_ids": unit_ids if unit_ids.dtype.kind in "iu" else unit_ids.astype(str)}
    if recording is None:
        kw.update(_unit_layout(sorting, ours))
    if recording is not None:
        channel_ids, electrode_ids, locations, kind = _probe_layout(recording)
        main = _main_channel_index(sorting, channel_ids, len(channel_ids))
        if main is not None:
            kw["electrode_ids"] = np.where(main >= 0, electrode_ids[np.clip(main, 0, None)], -1)
        kw["electrodes"] = (electrode_ids, locations[:, 0], locations[:, 1])
        if kind not in "iu":
            md["channel_ids"] = [str(c) for c in channel_ids.tolist()]
    elif "electrode_ids" not in kw:
        main = _main_channel_index(sorting, None, None)
        if main is not None and "main_channel_id" not in sorting.get_property_keys():
            kw["electrode_ids"] = main  # phy's channel index is the only electrode number known
    return trains, kw


def _annotated_seconds(sorting, key: str, default):
    """A time annotation (s) of the sorting, ``default`` when absent; a clear error when not a time."""
    if key not in sorting.get_annotation_keys():
        return default
    value = sorting.get_annotation(key)
    try:
        value = float(value)
    except (TypeError, ValueError):
        value = float("nan")
    if not (np.isfinite(value) and value >= 0):
        raise ValueError(f"sorting annotation {key!r} must be a time >= 0 s, got {sorting.get_annotation(key)!r}")
    return value


def _our_annotations(sorting) -> dict[str, Any]:
    """The ``organoid_sim`` annotation written by :func:`recording_to_spikeinterface` ({} when absent)."""
    if ANNOTATION not in sorting.get_annotation_keys():
        return {}
    text = sorting.get_annotation(ANNOTATION)
    try:
        value = json.loads(text)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"sorting annotation {ANNOTATION!r} is not the JSON organoid-sim writes: {exc}") from None
    if not isinstance(value, dict):
        raise ValueError(f"sorting annotation {ANNOTATION!r} must be a JSON object, got {type(value).__name__}")
    return value


def _unit_layout(sorting, ours: dict[str, Any]) -> dict[str, Any]:
    """Electrode ids, positions (um), layout and stimulation a sorting carries without a recording."""
    from .events import StimEvents

    kw: dict[str, Any] = {}
    keys = set(sorting.get_property_keys())
    if "electrode_id" in keys:
        ids = np.asarray(sorting.get_property("electrode_id"))
        if ids.dtype.kind in "iu":
            kw["electrode_ids"] = ids.astype(np.int64)
    if {"x_um", "y_um"} <= keys:
        kw["positions"] = np.stack([np.asarray(sorting.get_property("x_um"), dtype=np.float64),
                                    np.asarray(sorting.get_property("y_um"), dtype=np.float64)], axis=1)
    if "electrodes" in ours:
        e = ours["electrodes"]
        kw["electrodes"] = (np.asarray(e["ids"], dtype=np.int64), np.asarray(e["x"], dtype=np.float64),
                            np.asarray(e["y"], dtype=np.float64))
    if "stim" in ours:
        kw["stim"] = StimEvents.from_dict(ours["stim"])
    return kw


def recording_to_spikeinterface(rec: "SpikeRecording", sampling_frequency: float | None = None):
    """A SpikeInterface ``NumpySorting`` of ``rec`` (module docstring); one segment from ``t_start``."""
    from spikeinterface.core import NumpySorting

    if sampling_frequency is None:
        # The rate itself, not 1 / (1 / rate): that is off by an ulp at 12.5 and 25 kHz, and a
        # recording at the true rate is then refused as "sorting at 12500 Hz but recording at 12500 Hz".
        sampling_frequency = rec.sampling_rate or 1.0 / spike_time_resolution(rec)[0]
    fs = float(sampling_frequency)
    if not (np.isfinite(fs) and fs > 0):
        raise ValueError(f"sampling_frequency must be a positive number of Hz, got {sampling_frequency}")
    frames = np.round((rec.times - rec.t_start) * fs).astype(np.int64)
    unit_ids = rec.unit_ids
    labels = np.repeat(unit_ids, rec.spike_counts) if len(unit_ids) else unit_ids
    order = np.argsort(frames, kind="stable")
    sorting = NumpySorting.from_samples_and_labels([frames[order]], [labels[order]], fs, unit_ids=unit_ids)
    sorting.set_property("electrode_id", rec.electrode_ids)
    sorting.set_property("x_um", rec.positions[:, 0])
    sorting.set_property("y_um", rec.positions[:, 1])
    sorting.set_property("main_channel_id", rec.electrode_ids)
    if hasattr(sorting, "shift_times"):  # SpikeInterface >= 0.102: the sorting's own start time
        sorting.shift_times(rec.t_start)
    extra = {"electrodes": {"ids": rec.electrodes.ids.tolist(), "x": rec.electrodes.x.tolist(),
                            "y": rec.electrodes.y.tolist()},
             "stim": rec.stim.to_dict(), "metadata": rec.metadata, "sampling_rate": rec.sampling_rate}
    sorting.annotate(t_start_s=rec.t_start, t_stop_s=rec.t_stop, **{ANNOTATION: json.dumps(extra)})
    return sorting
