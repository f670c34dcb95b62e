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

``rec.to_spikeinterface(sampling_frequency=None)`` returns a ``NumpySorting`` at
``sampling_frequency`` (default: the recording's sampling rate, else ``1 / spike_time_resolution``;
times are rounded to the nearest frame) with the unit ids and, per unit, the properties
``electrode_id``, ``x_um``, ``y_um`` and ``main_channel_id``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from .recording import SpikeRecording
# No import of the recording module at run time: recording.py imports this module and builds the
# object from the fields returned here (the same split as neo_bridge).

DEFAULT_RESOLUTION_S = 1e-6  # spike-time resolution used when nothing better is known (s)
MAIN_CHANNEL_PROPERTIES = ("main_channel_id", "ch")


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
        known, ``electrode_ids`` and ``electrodes`` as an ``(ids, x_um, y_um)`` tuple of arrays (the
        caller builds its layout object from it).
    """
    n_seg = sorting.get_num_segments()
    if not 0 <= segment_index < n_seg:
        raise ValueError(f"segment_index={segment_index} but the sorting has {n_seg} segment(s)")
    fs = float(sorting.get_sampling_frequency())
    if recording is None and sorting.has_recording():
        recording = sorting._recording  # registered by the sorter; SpikeInterface has no public getter
    if recording is not None and float(recording.get_sampling_frequency()) != fs:
        raise ValueError(f"sorting at {fs:g} Hz but recording at {recording.get_sampling_frequency():g} Hz")
    t0 = float(recording.get_start_time(segment_index)) if recording is not None else 0.0
    unit_ids = np.asarray(sorting.get_unit_ids())
    trains = [t0 + np.sort(np.asarray(sorting.get_unit_spike_train(u, segment_index=segment_index),
                                      dtype=np.float64)) / fs for u in unit_ids.tolist()]
    t_stop = t0 + recording.get_num_samples(segment_index) / fs if recording is not None else None
    md = {"source": "spikeinterface", "format": "spikeinterface", "sorting": type(sorting).__name__,
          "segment_index": segment_index, **(metadata or {})}
    kw: dict[str, Any] = {"t_start": t0, "t_stop": t_stop, "sampling_rate": fs, "metadata": md,
                          "unit_ids": unit_ids if unit_ids.dtype.kind in "iu" else unit_ids.astype(str)}
    if recording is not None:
        channel_ids, electrode_ids, locations, kind = _probe_layout(recording)
        main = _main_channel_index(sorting, channel_ids, len(channel_ids))
        if main is not None:
            kw["electrode_ids"] = np.where(main >= 0, electrode_ids[np.clip(main, 0, None)], -1)
        kw["electrodes"] = (electrode_ids, locations[:, 0], locations[:, 1])
        if kind not in "iu":
            md["channel_ids"] = [str(c) for c in channel_ids.tolist()]
    else:
        main = _main_channel_index(sorting, None, None)
        if main is not None and "main_channel_id" not in sorting.get_property_keys():
            kw["electrode_ids"] = main  # phy's channel index is the only electrode number known
    return trains, kw


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
    sorting.annotate(t_start_s=rec.t_start, t_stop_s=rec.t_stop)
    return sorting
