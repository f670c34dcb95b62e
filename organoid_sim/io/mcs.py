"""Multi Channel Systems (MCS) HDF5 files (``McsHdf5ProtocolType = RawData``), spike time stamps.

Layout used (``Data/Recording_<r>/``)::

    TimeStampStream/Stream_<s>/TimeStampEntity_<k>   int64 (1, K) spike time stamps
    SegmentStream/Stream_<s>/SegmentData_ts_<k>      int64 (1, K) spike cutout time stamps (us), used
                                                     when there is no TimeStampStream
    TimeStampStream/Stream_<s>/InfoTimeStamp         compound: TimeStampEntityID, Exponent (time
                                                     stamps are in 10**Exponent s, usually -6 = us),
                                                     SourceChannelIDs, SourceChannelLabels
    AnalogStream/Stream_<a>/InfoChannel              Tick (us per sample) of the source stream
    Recording_<r> attribute Duration                 recording length in us

One time-stamp entity is one unit: unit id = ``TimeStampEntityID``, electrode id = its source
channel id (positions are unknown: MCS files do not store electrode coordinates). Times are
``stamp * 10**Exponent`` seconds from the start of the recording; the window is
``[0, Duration]``. The sampling rate is that of the stream the spikes were detected on. A file
with neither time stamps nor spike cutouts (raw traces only) raises :class:`RecordingFormatError` saying it holds
no spike data: detect spikes first (e.g. with MC_DataTool or SpikeInterface).
Choose the recording with ``recording=0`` and the stream with ``stream=0`` when there are several.
"""

from __future__ import annotations

import numpy as np

from ._util import build, decode_strings, h5_attr, h5_read, open_h5
from .errors import ReaderOptionError, RecordingFormatError

FORMAT = "mcs"
DESCRIPTION = "Multi Channel Systems HDF5 (Data/Recording_*/TimeStampStream spike time stamps)"


def sniff_h5(f) -> bool:
    """True for an MCS HDF5 file (``McsHdf5ProtocolType`` attribute or ``/Data/Recording_0``)."""
    return "McsHdf5ProtocolType" in f.attrs or "Data/Recording_0" in f


def _pick(path, parent, prefix: str, value, what: str) -> str:
    names = sorted((k for k in parent.keys() if k.startswith(prefix)), key=lambda k: int(k[len(prefix):] or 0))
    if value is None:
        if not names:
            raise RecordingFormatError(path, parent.name, f"holds no {what}: no {prefix}* groups")
        if len(names) > 1 and what == "recording":
            raise RecordingFormatError(path, parent.name, f"holds {len(names)} recordings; choose one with "
                                       f"recording=...: {', '.join(names)}")
        return names[0]
    name = value if str(value).startswith(prefix) else f"{prefix}{int(value)}"
    if name not in names:
        raise RecordingFormatError(path, parent.name, f"no {what} {name!r}; available: {', '.join(names)}")
    return name


def _source_rate(path, f, rec: str, stream_group) -> float | None:
    """Sampling rate (Hz) of the analog stream the spikes were detected on, if found."""
    guid = h5_attr(path, stream_group, "SourceStreamGUID")
    analog = f.get(f"Data/{rec}/AnalogStream")
    for name in sorted(analog.keys()) if analog is not None else []:
        g = analog[name]
        if guid is not None and h5_attr(path, g, "StreamGUID") != guid:
            continue
        info = h5_read(path, f, f"{g.name}/InfoChannel", optional=True)
        if info is not None and info.dtype.names and "Tick" in info.dtype.names and len(info):
            tick = float(info["Tick"][0])
            return 1e6 / tick if tick > 0 else None
    return None


def _first_int(text) -> int:
    s = text.decode("utf-8", "replace") if isinstance(text, bytes) else str(text)
    head = s.replace(";", ",").split(",")[0].strip()
    return int(head) if head.lstrip("-").isdigit() else -1


def _seconds(stamps: np.ndarray, exponent: int) -> np.ndarray:
    # dividing by an exact power of ten keeps e.g. 944000 us -> 0.944 s correctly rounded
    stamps = stamps.ravel()
    return stamps / 10.0 ** (-exponent) if exponent < 0 else stamps * 10.0 ** exponent


def _info(path, f, name: str, need: tuple[str, ...]) -> np.ndarray:
    info = h5_read(path, f, name, ndim=1)
    if not info.dtype.names or any(c not in info.dtype.names for c in need):
        raise RecordingFormatError(path, name, f"compound lacks fields {need}")
    return info


def _from_timestamps(path, f, g: str):
    """Units from a ``TimeStampStream``: (ids, trains s, electrodes, labels, data name)."""
    info = _info(path, f, f"{g}/InfoTimeStamp", ("TimeStampEntityID", "Exponent", "SourceChannelIDs"))
    units = []
    for row in sorted(info, key=lambda r: int(r["TimeStampEntityID"])):
        k = int(row["TimeStampEntityID"])
        stamps = h5_read(path, f, f"{g}/TimeStampEntity_{k}", kinds="iu")
        label = row["SourceChannelLabels"] if "SourceChannelLabels" in info.dtype.names else b""
        units.append((k, _seconds(stamps, int(row["Exponent"])), _first_int(row["SourceChannelIDs"]), label))
    return units, f"{g}/TimeStampEntity_*"


def _from_segments(path, f, g: str):
    """Units from a spike ``SegmentStream`` (cutouts): their time stamps are in us."""
    info = _info(path, f, f"{g}/InfoSegment", ("SegmentID", "SourceChannelIDs"))
    labels = {}
    source = h5_read(path, f, f"{g}/SourceInfoChannel", ndim=1, optional=True)
    if source is not None and source.dtype.names and {"ChannelID", "Label"} <= set(source.dtype.names):
        labels = {int(r["ChannelID"]): r["Label"] for r in source}
    units = []
    for row in sorted(info, key=lambda r: int(r["SegmentID"])):
        k = int(row["SegmentID"])
        stamps = h5_read(path, f, f"{g}/SegmentData_ts_{k}", kinds="iu")
        channel = _first_int(row["SourceChannelIDs"])
        units.append((k, _seconds(stamps, -6), channel, labels.get(channel, b"")))
    return units, f"{g}/SegmentData_ts_*"


def _spike_stream(path, f, rec: str, stream):
    """(group path, kind) of the spike stream: time stamps first, else spike cutouts."""
    for kind in ("TimeStampStream", "SegmentStream"):
        parent = f.get(f"Data/{rec}/{kind}")
        if parent is not None and len(parent):
            return f"Data/{rec}/{kind}/{_pick(path, parent, 'Stream_', stream, 'stream')}", kind
    raise RecordingFormatError(path, f"Data/{rec}/TimeStampStream", "missing, and no spike SegmentStream either: "
                               "this MCS file holds no spike data (only raw or event streams); detect spikes first")


def read(path, recording=None, stream=None, progress=None, **options):
    """Load the spike time stamps of an MCS HDF5 file as a :class:`SpikeRecording` (times in s).

    Spikes come from the ``TimeStampStream`` or, when a file has none, from the time stamps of
    the spike cutouts in its ``SegmentStream``.
    """
    from ..recording import SpikeRecording

    if options:
        raise ReaderOptionError(f"unexpected options for the MCS reader: {sorted(options)}")
    with open_h5(path) as f:
        if "Data" not in f:
            raise RecordingFormatError(path, "Data", "required group is missing")
        rec = _pick(path, f["Data"], "Recording_", recording, "recording")
        g, kind = _spike_stream(path, f, rec, stream)
        units, data_name = (_from_timestamps if kind == "TimeStampStream" else _from_segments)(path, f, g)
        duration_us = h5_attr(path, f[f"Data/{rec}"], "Duration")
        fs = _source_rate(path, f, rec, f[g])
        layout = h5_attr(path, f["Data"], "MeaLayout")
    ids, trains, electrodes, labels = zip(*units) if units else ((), (), (), ())
    last = max((t.max() for t in trains if len(t)), default=0.0)
    t_stop = max(float(duration_us) / 1e6 if duration_us is not None else 0.0, float(last))
    metadata = {"source": str(path), "format": FORMAT, "recording": rec, "stream": "/".join(g.rsplit("/", 2)[-2:]),
                "channel_labels": [s.strip() for s in decode_strings(np.array(labels, dtype=object)).tolist()],
                "mea_layout": layout.strip() if isinstance(layout, str) else None}
    return build(path, data_name, SpikeRecording.from_spike_times, list(trains), t_start=0.0,
                 t_stop=t_stop, unit_ids=np.array(ids, np.int64), electrode_ids=np.array(electrodes, np.int64),
                 sampling_rate=fs, metadata=metadata)
