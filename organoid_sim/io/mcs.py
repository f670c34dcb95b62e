"""Multi Channel Systems (MCS) HDF5 files (``McsHdf5ProtocolType = RawData``), spike time stamps.

Layout used (``Data/Recording_<r>/``)::

    TimeStampStream/Stream_<s>/TimeStampEntity_<k>   int64 (1, K) spike time stamps
    TimeStampStream/Stream_<s>/InfoTimeStamp         compound: TimeStampEntityID, Exponent (time
                                                     stamps are in 10**Exponent s, usually -6 = us),
                                                     SourceChannelIDs, SourceChannelLabels
    AnalogStream/Stream_<a>/InfoChannel              Tick (us per sample) of the source stream
    Recording_<r> attribute Duration                 recording length in us

One time-stamp entity is one unit: unit id = ``TimeStampEntityID``, electrode id = its source
channel id (positions are unknown: MCS files do not store electrode coordinates). Times are
``stamp * 10**Exponent`` seconds from the start of the recording; the window is
``[0, Duration]``. The sampling rate is that of the stream the spikes were detected on. A file
without time-stamp streams (raw traces only) raises :class:`RecordingFormatError` saying it holds
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


def read(path, recording=None, stream=None, progress=None, **options):
    """Load the spike time stamps of an MCS HDF5 file as a :class:`SpikeRecording` (times in s)."""
    from ..recording import SpikeRecording

    if options:
        raise ReaderOptionError(f"unexpected options for the MCS reader: {sorted(options)}")
    with open_h5(path) as f:
        if "Data" not in f:
            raise RecordingFormatError(path, "Data", "required group is missing")
        rec = _pick(path, f["Data"], "Recording_", recording, "recording")
        ts_group = f.get(f"Data/{rec}/TimeStampStream")
        if ts_group is None or not len(ts_group):
            raise RecordingFormatError(path, f"Data/{rec}/TimeStampStream", "missing: this MCS file holds no spike "
                                       "data (only raw or event streams); detect spikes first")
        s = _pick(path, ts_group, "Stream_", stream, "stream")
        g = f"Data/{rec}/TimeStampStream/{s}"
        info = h5_read(path, f, f"{g}/InfoTimeStamp", ndim=1)
        need = ("TimeStampEntityID", "Exponent", "SourceChannelIDs")
        if not info.dtype.names or any(c not in info.dtype.names for c in need):
            raise RecordingFormatError(path, f"{g}/InfoTimeStamp", f"compound lacks fields {need}")
        trains, ids, electrodes, labels = [], [], [], []
        for row in sorted(info, key=lambda r: int(r["TimeStampEntityID"])):
            k = int(row["TimeStampEntityID"])
            stamps = h5_read(path, f, f"{g}/TimeStampEntity_{k}", kinds="iu")
            exp = int(row["Exponent"])
            # dividing by an exact power of ten keeps e.g. 944000 us -> 0.944 s correctly rounded
            t = stamps.ravel() / 10.0 ** (-exp) if exp < 0 else stamps.ravel() * 10.0 ** exp
            trains.append(t)
            ids.append(k)
            electrodes.append(_first_int(row["SourceChannelIDs"]))
            if "SourceChannelLabels" in info.dtype.names:
                labels.append(decode_strings(np.array([row["SourceChannelLabels"]]))[0].strip())
        duration_us = h5_attr(path, f[f"Data/{rec}"], "Duration")
        fs = _source_rate(path, f, rec, f[g])
        layout = h5_attr(path, f["Data"], "MeaLayout")
    last = max((t.max() for t in trains if len(t)), default=0.0)
    t_stop = max(float(duration_us) / 1e6 if duration_us is not None else 0.0, float(last))
    metadata = {"source": str(path), "format": FORMAT, "recording": rec, "stream": s,
                "channel_labels": labels, "mea_layout": layout.strip() if isinstance(layout, str) else None}
    return build(path, f"{g}/TimeStampEntity_*", SpikeRecording.from_spike_times, trains, t_start=0.0,
                 t_stop=t_stop, unit_ids=np.array(ids, np.int64), electrode_ids=np.array(electrodes, np.int64),
                 sampling_rate=fs, metadata=metadata)
