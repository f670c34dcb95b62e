"""Cortical Labs CL1 recordings: the HDF5 files that cl-sdk's ``neurons.record()`` writes.

Layout (PyTables, read here with h5py; nothing is unpickled):

``/spikes``        table ``(timestamp int64, channel uint8, samples float32[75])``: detected spikes,
                   timestamps in frames of ``frames_per_second`` (25 kHz), ``samples`` the waveform
                   snippet in uV (25 frames before the spike, the spike frame and 49 after).
``/stims``         table ``(timestamp int64, channel uint8)``: one row per delivered pulse.
``/samples``       optional ``int16 [frames, 64]`` raw frames (``uV_per_sample_unit`` uV each); not read.
``/data_stream/NAME/{index,data}``  optional user data streams (msgpack bytes with a
                   ``(timestamp, start_index, end_index)`` index); summarised in the metadata and
                   readable with :func:`read_data_stream`.
root attributes    ``frames_per_second``, ``start_timestamp``, ``duration_frames``, ``channel_count``,
                   ``uV_per_sample_unit``, ``created_utc``, ... ; ``file_format`` and ``application`` are
                   pickled dicts (PyTables): they are decoded by an unpickler that refuses every
                   global, so only plain dicts, strings and numbers come out and no code runs.

Times: ``file_format["stim_and_spike_timestamps_relative_to_start"]`` (true in cl-sdk files) says
timestamps count from the recording's first frame; otherwise ``start_timestamp`` is subtracted.
The recording starts at 0 s and stops at ``duration_frames / frames_per_second``.

Units: one unit per channel, ``unit_ids`` = ``electrode_ids`` = the CL channel number (0..63), at
the CL1 grid position (8 x 8, 200 um pitch, channel ``c`` at column ``c % 8``, row ``c // 8``).
By default every channel that can record is a unit (all 64 but the four grounded corner channels
0, 7, 56 and 63), so silent channels count; ``channels=`` picks others.

Stimulation: ``/stims`` holds only times and channels. When its rows carry
``phase_durations_us``/``phase_currents_uA`` fields they are used (amplitude = first phase's current,
phase = first phase's duration, number of phases); otherwise amplitude and phase are **unknown**:
they are filled with ``stim_amplitude_ua`` and ``stim_phase_us`` when given (the design the script
used), else with 0, and metadata ``stim_design_known`` is False.
"""

from __future__ import annotations

import io as _io
import pickle
from typing import Any

import numpy as np

from ..events import StimEvents
from ..recording import Electrodes, SpikeRecording
from ._util import h5_read, open_h5
from .errors import ReaderOptionError, RecordingFormatError

DESCRIPTION = "Cortical Labs CL1 / cl-sdk recording (HDF5 /spikes, /stims tables; neurons.record())"

#: channels of the CL1 array tied to ground (no signal, cannot be stimulated)
GROUNDED_CHANNELS = (0, 7, 56, 63)
N_CHANNELS = 64
PITCH_UM = 200.0
GRID_COLS = 8


def sniff_h5(f) -> bool:
    """True for a file with a ``/spikes`` table of ``timestamp`` and ``channel`` and a ``frames_per_second``
    root attribute (what cl-sdk's recordings hold)."""
    spikes = f.get("spikes")
    names = getattr(getattr(spikes, "dtype", None), "names", None) or ()
    return "timestamp" in names and "channel" in names and "frames_per_second" in f.attrs


class _Refused(pickle.UnpicklingError):
    """A pickle asked for a class or function."""


class _NoGlobals(pickle.Unpickler):
    """Unpickler that refuses every class and function: only built-in containers and scalars load."""

    def find_class(self, module, name):  # noqa: D401 - pickle hook
        raise _Refused(f"refusing to load {module}.{name}")


def _attr(value: Any) -> Any:
    """A root attribute as a plain Python value (bytes decoded, PyTables pickles safely decoded)."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, bytes):
        if value.endswith(b".") or value[:1] == b"\x80":  # maybe a pickle written by PyTables
            try:
                return _NoGlobals(_io.BytesIO(value)).load()
            except _Refused:
                return None  # a pickle that needs a class or function: dropped, never run
            except Exception:  # noqa: BLE001 - not a pickle: plain text
                pass
        return value.decode("utf-8", "replace")
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (int, float, str, bool)) or value is None:
        return value
    return None  # h5py Empty and other opaque values


def _plain(value: Any) -> bool:
    try:
        import json

        json.dumps(value)
        return True
    except (TypeError, ValueError):
        return False


def _attributes(f) -> dict[str, Any]:
    skip = {"CLASS", "PYTABLES_FORMAT_VERSION", "TITLE", "VERSION"}
    out = {}
    for k in f.attrs:
        if k in skip:
            continue
        try:
            v = _attr(f.attrs[k])
        except (OSError, TypeError, ValueError):
            continue
        if v is not None and _plain(v):
            out[k] = v
    return out


def channel_electrodes(channels=None) -> Electrodes:
    """The CL1 grid (8 x 8, 200 um pitch) for ``channels`` (default all 64): id = channel number.

    Parameters
    ----------
    channels : channel numbers (0..63) or None for all.

    Returns
    -------
    Electrodes with positions in um (x = column * 200, y = row * 200).
    """
    ids = np.arange(N_CHANNELS) if channels is None else np.asarray(channels, np.int64)
    return Electrodes(ids, (ids % GRID_COLS) * PITCH_UM, (ids // GRID_COLS) * PITCH_UM)


def _table(path, f, name: str, need: tuple[str, ...], optional: bool = False):
    data = h5_read(path, f, name, optional=optional)
    if data is None:
        return None
    names = data.dtype.names or ()
    missing = [c for c in need if c not in names]
    if missing:
        raise RecordingFormatError(path, name, f"table has no {missing} column(s) (columns: {list(names)})")
    if data.ndim != 1:
        raise RecordingFormatError(path, name, f"table has shape {data.shape}, expected 1-D")
    return data


def _relative(ts: np.ndarray, attrs: dict, path, name: str) -> np.ndarray:
    ts = np.asarray(ts, np.int64)
    fmt = attrs.get("file_format") if isinstance(attrs.get("file_format"), dict) else {}
    if not fmt.get("stim_and_spike_timestamps_relative_to_start", False):
        ts = ts - int(attrs.get("start_timestamp", 0))
    if len(ts) and ts.min() < 0:
        raise RecordingFormatError(path, name, f"timestamp {int(ts.min())} frames lies before the recording "
                                   f"start (start_timestamp {attrs.get('start_timestamp')})")
    return ts


def _stim_events(path, rows, attrs, fps, amplitude_ua, phase_us) -> tuple[StimEvents, bool]:
    if rows is None or len(rows) == 0:
        return StimEvents.empty(), True
    t = _relative(rows["timestamp"], attrs, path, "stims") / fps
    ch = rows["channel"].astype(np.int64)
    names = rows.dtype.names
    if "phase_durations_us" in names and "phase_currents_uA" in names:
        dur = np.atleast_2d(np.asarray(rows["phase_durations_us"], float).reshape(len(rows), -1))
        cur = np.atleast_2d(np.asarray(rows["phase_currents_uA"], float).reshape(len(rows), -1))
        n_ph = np.maximum((dur > 0).sum(1), 1)
        return StimEvents.from_columns(t, ch, cur[:, 0], dur[:, 0], n_ph), True
    known = amplitude_ua is not None and phase_us is not None
    amp = 0.0 if amplitude_ua is None else float(amplitude_ua)
    ph = 0.0 if phase_us is None else float(phase_us)
    return StimEvents.from_columns(t, ch, amp, ph, 2), known


def _stream_summary(path, f) -> dict[str, Any]:
    grp = f.get("data_stream")
    if grp is None:
        return {}
    out = {}
    for name in grp:
        idx = h5_read(path, f, f"data_stream/{name}/index", optional=True)
        if idx is None or "timestamp" not in (idx.dtype.names or ()):
            continue
        app = _attr(grp[name].attrs.get("application", b""))
        out[name] = {"n_events": int(len(idx)),
                     "attributes": app if isinstance(app, dict) and _plain(app) else {}}
    return out


def _numpy_hook(obj: dict) -> Any:
    """msgpack object hook: the numpy arrays and scalars cl-sdk packs with msgpack_numpy's layout
    (``{b"nd": True, b"type", b"kind", b"shape", b"data"}``, ``{b"nd": False, b"type", b"data"}``) as
    numpy values, as cl-sdk's RecordingView decodes them; object arrays (msgpack_numpy would unpickle
    them; cl-sdk writes them as lists) and anything malformed stay as they are."""
    nd = obj.get(b"nd")
    if nd not in (True, False) or b"type" not in obj or not isinstance(obj.get(b"data"), bytes):
        return obj
    try:
        if nd is False:
            return np.frombuffer(obj[b"data"], dtype=np.dtype(obj[b"type"]))[0]
        if obj.get(b"kind", b"") not in (b"", b"V"):
            return obj
        descr = obj[b"type"]
        if obj.get(b"kind") == b"V":   # structured: [(name, type, *shape), ...]
            descr = [(f[0], f[1], *f[2:]) for f in descr]
        return np.frombuffer(obj[b"data"], dtype=np.dtype(descr)).reshape(obj[b"shape"])
    except (TypeError, ValueError, IndexError):
        return obj


def read_data_stream(path, name: str) -> tuple[np.ndarray, list]:
    """The events of data stream ``name`` of a CL1 recording: times (s) and their values.

    Values are decoded with ``msgpack`` when it is installed (cl-sdk installs it), numpy arrays and
    scalars as numpy values (as cl-sdk's ``RecordingView`` gives them), else raw bytes.

    Parameters
    ----------
    path : the recording file.
    name : the data stream's name (``neurons.create_data_stream(name)``).

    Returns
    -------
    ``(times_s float64 [K], values list of K)``
    """
    with open_h5(path) as f:
        attrs = _attributes(f)
        idx = _table(path, f, f"data_stream/{name}/index", ("timestamp", "start_index", "end_index"))
        data = h5_read(path, f, f"data_stream/{name}/data", kinds="u", ndim=1)
    fps = float(attrs.get("frames_per_second", 25_000))
    chunks = [bytes(data[int(a):int(b)]) for a, b in zip(idx["start_index"], idx["end_index"])]
    try:
        import msgpack

        values = [msgpack.unpackb(c, raw=False, strict_map_key=False, object_hook=_numpy_hook) for c in chunks]
    except ImportError:
        values = chunks
    return _relative(idx["timestamp"], attrs, path, f"data_stream/{name}/index") / fps, values


def read(path, channels=None, stim_amplitude_ua: float | None = None, stim_phase_us: float | None = None,
         progress=None, **options) -> SpikeRecording:
    """Read a CL1 / cl-sdk recording (see the module docstring for the layout and what is unknown).

    Parameters
    ----------
    path : the ``.h5`` file ``neurons.record()`` wrote.
    channels : channel numbers to load as units (default: the 60 non-grounded channels).
    stim_amplitude_ua : current (uA, signed first phase) of every pulse when the file does not say.
    stim_phase_us : phase duration (us) of every pulse when the file does not say.
    progress : unused (the tables are read at once).

    Returns
    -------
    SpikeRecording with times in s, one unit per channel, the pulses in ``stim``.
    """
    if options:
        raise ReaderOptionError(f"unknown option(s) for CL1 recordings: {sorted(options)}")
    with open_h5(path) as f:
        attrs = _attributes(f)
        fps = attrs.get("frames_per_second")
        if not isinstance(fps, (int, float)) or not fps > 0:
            raise RecordingFormatError(path, None, f"root attribute 'frames_per_second' must be a positive "
                                       f"number of Hz, got {fps!r}")
        spikes = _table(path, f, "spikes", ("timestamp", "channel"))
        stims = _table(path, f, "stims", ("timestamp", "channel"), optional=True)
        streams = _stream_summary(path, f)
    n_ch = int(attrs.get("channel_count", N_CHANNELS))
    chan = (np.array([c for c in range(n_ch) if c not in GROUNDED_CHANNELS]) if channels is None
            else np.asarray(channels, np.int64).reshape(-1))
    if len(np.unique(chan)) != len(chan) or (len(chan) and (chan.min() < 0 or chan.max() >= n_ch)):
        raise ReaderOptionError(f"channels must be distinct channel numbers in 0..{n_ch - 1}, got {chan.tolist()}")
    ts = _relative(spikes["timestamp"], attrs, path, "spikes")
    ch = spikes["channel"].astype(np.int64)
    dur = attrs.get("duration_frames")
    last = int(ts.max()) + 1 if len(ts) else 0
    t_stop = (float(dur) if isinstance(dur, (int, float)) and dur > 0 else last) / fps
    if last / fps > t_stop:
        raise RecordingFormatError(path, "spikes", f"spike at frame {last - 1} lies after the recording's end "
                                   f"(duration_frames {dur})")
    keep = np.isin(ch, chan)
    row = np.searchsorted(np.sort(chan), ch[keep])
    order = np.argsort(chan)
    unit = order[row]
    times = ts[keep] / fps
    srt = np.lexsort((times, unit))
    offsets = np.concatenate([[0], np.cumsum(np.bincount(unit, minlength=len(chan)))]).astype(np.int64)
    stim, known = _stim_events(path, stims, attrs, fps, stim_amplitude_ua, stim_phase_us)
    grid = channel_electrodes(np.arange(n_ch))
    md = {"source": str(path), "format": "cl1", "frames_per_second": fps,
          "start_timestamp": attrs.get("start_timestamp"), "stim_design_known": bool(known),
          "data_streams": streams,
          "attributes": {k: v for k, v in attrs.items() if k not in ("frames_per_second",)}}
    if not known:
        md["stim_design_note"] = ("the file's /stims table holds times and channels only: amplitude and phase "
                                  "are unknown (filled with stim_amplitude_ua/stim_phase_us or 0)")
    return SpikeRecording(times[srt], offsets, t_start=0.0, t_stop=t_stop, unit_ids=chan, electrode_ids=chan,
                          electrodes=grid, sampling_rate=float(fps), stim=stim, metadata=md)
