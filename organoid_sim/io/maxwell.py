"""MaxWell Biosystems MaxOne / MaxTwo ``.raw.h5`` files (spike times detected on the chip).

Two layouts exist:

* **legacy** (MaxOne, versions up to 2019): ``/proc0/spikeTimes`` compound (``frameno``,
  ``channel``, ``amplitude``), ``/mapping`` compound (``channel``, ``electrode``, ``x``, ``y`` in
  um), ``/sig`` raw traces, ``/version``, ``/time`` (start/stop text). The sampling rate is 20 kHz
  (``sampling_rate=`` overrides it). The window ends at the last spike, the end of ``/sig`` or
  the ``/time`` stop stamp, whichever is latest.
* **new** (MaxOne and MaxTwo): ``/recordings/<rec>/<well>/`` (or ``/wells/<well>/<rec>/``) with
  ``spikes`` (same compound), ``settings/mapping``, ``settings/sampling`` (Hz),
  ``start_time``/``stop_time`` (ms since the epoch) and ``groups/routed/frame_nos``. Choose ``recording="rec0000"`` and ``well="well000"``
  (or ``well=0``); a file holding one of each needs neither. :func:`list_wells` lists them.

Units are the routed channels: unit id = channel number, electrode id and position (um) from the
mapping (rows repeated for stimulation sites are merged). Channels that only appear in the spike
table get electrode ``-1``. Spike times are ``(frameno - first_frame) / sampling_rate`` seconds,
where ``first_frame`` is the frame number of the first recorded sample (``frame_nos[0]``) when the
file stores it, else the first spike frame; pass ``first_frame=`` to set it.
"""

from __future__ import annotations

import re

import numpy as np

from ._util import build, decode_strings, h5_read, open_h5
from .errors import ReaderOptionError, RecordingFormatError

FORMAT = "maxwell"
DESCRIPTION = "MaxWell MaxOne/MaxTwo .raw.h5 (legacy /proc0/spikeTimes + /mapping, or /recordings/rec*/well*)"
LEGACY_FS = 20_000.0
SPIKE_FIELDS = ("frameno", "channel")
MAPPING_FIELDS = ("channel", "electrode", "x", "y")


def sniff_h5(f) -> bool:
    """True for a MaxWell file (legacy ``/mapping`` + ``/proc0`` or ``/sig``, or ``/recordings``)."""
    legacy = ("mapping" in f and ("proc0" in f or "sig" in f)) or ("proc0" in f and "sig" in f)
    new = any(top in f and any(re.fullmatch(pattern, k) for k in _keys(f[top]))
              for top, pattern in (("recordings", r"rec\d+"), ("wells", r"well\d+")))
    return legacy or new


def _keys(group) -> list[str]:
    try:
        return sorted(group.keys())
    except (AttributeError, OSError, RuntimeError):
        return []


def _compound(path, f, name: str, fields: tuple[str, ...]) -> np.ndarray:
    data = h5_read(path, f, name, ndim=1)
    names = data.dtype.names or ()
    missing = [c for c in fields if c not in names]
    if missing:
        raise RecordingFormatError(path, name, f"compound dataset lacks field(s) {missing}; has {list(names)}")
    for c in fields:
        if data.dtype[c].kind not in "iuf":
            raise RecordingFormatError(path, name, f"field {c!r} has dtype {data.dtype[c]}, expected numbers")
    return data


def _text(path, f, name: str) -> str | None:
    v = h5_read(path, f, name, optional=True)
    if v is None:
        return None
    return " ".join(decode_strings(np.atleast_1d(v)).tolist()) if v.dtype.kind in "SUO" else str(v.ravel().tolist())


# ---------------------------------------------------------------------------------------- wells
def _is_new(f) -> bool:
    return "recordings" in f or "wells" in f


def _groups(path, f) -> dict[str, dict[str, str]]:
    """recording -> {well -> group path} for the new layout.

    Files hold ``/recordings/<rec>/<well>`` and/or (as neo's MaxwellRawIO reads them)
    ``/wells/<well>/<rec>``; the first is preferred when both exist.
    """
    out: dict[str, dict[str, str]] = {}
    for top, outer, inner in (("wells", r"well\d+", r"rec\d+"), ("recordings", r"rec\d+", r"well\d+")):
        for a in (k for k in _keys(f[top]) if re.fullmatch(outer, k)) if top in f else ():
            for b in (k for k in _keys(f[top][a]) if re.fullmatch(inner, k)):
                rec, well = (b, a) if top == "wells" else (a, b)
                out.setdefault(rec, {})[well] = f"{top}/{a}/{b}"
    if not out:
        raise RecordingFormatError(path, "recordings", "holds no rec*/well* groups")
    return out


def list_wells(path) -> list[str]:
    """Wells of a new-layout file (``["well000", ...]``, over all recordings); ``[]`` for legacy files."""
    with open_h5(path) as f:
        if not _is_new(f):
            return []
        return sorted({w for wells in _groups(path, f).values() for w in wells})


def list_recordings(path) -> list[str]:
    """Recording groups of a new-layout file (``["rec0000", ...]``)."""
    with open_h5(path) as f:
        return sorted(_groups(path, f)) if _is_new(f) else []


def _choose(path, what: str, value, available: list[str], prefix: str, width: int) -> str:
    if value is None:
        if len(available) != 1:
            raise RecordingFormatError(path, "recordings", f"holds {len(available)} {what}s; choose one with "
                                       f"{what}=...: {', '.join(available)}")
        return available[0]
    if isinstance(value, (int, np.integer)) or str(value).isdigit():
        value = f"{prefix}{int(value):0{width}d}"
    if value not in available:
        raise RecordingFormatError(path, "recordings", f"no {what} {value!r}; available: {', '.join(available)}")
    return str(value)


# ---------------------------------------------------------------------------------------- read
def _units(mapping: np.ndarray, channels_with_spikes: np.ndarray):
    """Unit ids (channels), electrode ids and positions (um), plus the electrode layout arrays."""
    ch, first = np.unique(mapping["channel"].astype(np.int64), return_index=True)
    el = mapping["electrode"].astype(np.int64)[first]
    xy = np.stack([mapping["x"][first], mapping["y"][first]], axis=1).astype(np.float64)
    extra = np.setdiff1d(channels_with_spikes, ch)
    unit_ids = np.concatenate([ch, extra])
    electrode_ids = np.concatenate([el, np.full(len(extra), -1, np.int64)])
    positions = np.concatenate([xy, np.full((len(extra), 2), np.nan)])
    e_ids, e_first = np.unique(mapping["electrode"].astype(np.int64), return_index=True)
    keep = e_ids >= 0
    layout = (e_ids[keep], mapping["x"][e_first][keep].astype(np.float64),
              mapping["y"][e_first][keep].astype(np.float64))
    return unit_ids, electrode_ids, positions, layout


def _recording(path, spikes_name, spikes, mapping_name, mapping, fs, first_frame, n_frames, metadata):
    from ..recording import Electrodes, SpikeRecording

    if not (np.isfinite(fs) and fs > 0):
        raise RecordingFormatError(path, "settings/sampling", f"sampling rate {fs} is not a positive number of Hz")
    frames = spikes["frameno"].astype(np.int64) if spikes is not None else np.zeros(0, np.int64)
    channels = spikes["channel"].astype(np.int64) if spikes is not None else np.zeros(0, np.int64)
    if first_frame is None:
        first_frame = int(frames.min()) if len(frames) else 0
    if len(frames) and frames.min() < first_frame:
        raise RecordingFormatError(path, spikes_name, f"spike frame {frames.min()} precedes the first recorded "
                                   f"frame {first_frame}")
    times = (frames - first_frame) / fs
    unit_ids, electrode_ids, positions, layout = _units(mapping, np.unique(channels))
    t_stop = max(float(times.max()) if len(times) else 0.0, n_frames / fs)
    metadata = {**metadata, "source": str(path), "format": FORMAT, "first_frame": int(first_frame)}
    electrodes = build(path, mapping_name, Electrodes, *layout)
    return build(path, spikes_name, SpikeRecording.from_pairs, times, channels, unit_ids=unit_ids,
                 electrode_ids=electrode_ids, positions=positions, electrodes=electrodes, t_start=0.0,
                 t_stop=t_stop, sampling_rate=fs, metadata=metadata)


def _wall_clock_span_s(text: str | None) -> float | None:
    """Seconds between the ``start:`` and ``stop:`` stamps of a legacy ``/time`` text (1 s resolution)."""
    import datetime

    found = re.findall(r"(start|stop):\s*(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)", text or "")
    stamps = {k: datetime.datetime.fromisoformat(v) for k, v in found}
    if {"start", "stop"} <= set(stamps):
        return max((stamps["stop"] - stamps["start"]).total_seconds(), 0.0)
    return None


def _read_legacy(path, f, sampling_rate, first_frame):
    mapping = _compound(path, f, "mapping", MAPPING_FIELDS)
    spikes = _compound(path, f, "proc0/spikeTimes", SPIKE_FIELDS) if "proc0/spikeTimes" in f else None
    sig = f.get("sig")
    n_frames = int(sig.shape[1]) if sig is not None and len(sig.shape) == 2 else 0
    fs = float(sampling_rate or LEGACY_FS)
    time_text = _text(path, f, "time")
    span = _wall_clock_span_s(time_text)
    if span is not None:  # the /time stamps bound the recording when /sig holds fewer samples
        n_frames = max(n_frames, int(round(span * fs)))
    metadata = {"layout": "legacy", "version": _text(path, f, "version"), "time": time_text,
                "spikes_stored": spikes is not None}
    return _recording(path, "proc0/spikeTimes", spikes, "mapping", mapping, fs, first_frame, n_frames, metadata)


def _read_new(path, f, well, recording, sampling_rate, first_frame):
    groups = _groups(path, f)
    rec = _choose(path, "recording", recording, sorted(groups), "rec", 4)
    w = _choose(path, "well", well, sorted(groups[rec]), "well", 3)
    g = groups[rec][w]
    mapping = _compound(path, f, f"{g}/settings/mapping", MAPPING_FIELDS)
    spikes = _compound(path, f, f"{g}/spikes", SPIKE_FIELDS) if f"{g}/spikes" in f else None
    if sampling_rate is None:
        fs = h5_read(path, f, f"{g}/settings/sampling", kinds="iuf")
        if fs.size < 1:
            raise RecordingFormatError(path, f"{g}/settings/sampling", "is empty")
        sampling_rate = float(np.ravel(fs)[0])
    frame_nos = h5_read(path, f, f"{g}/groups/routed/frame_nos", kinds="iu", ndim=1, optional=True)
    if first_frame is None and frame_nos is not None and len(frame_nos):
        first_frame = int(frame_nos[0])
    n_frames = int(frame_nos[-1] - frame_nos[0] + 1) if frame_nos is not None and len(frame_nos) else 0
    start = h5_read(path, f, f"{g}/start_time", kinds="iuf", optional=True)
    stop = h5_read(path, f, f"{g}/stop_time", kinds="iuf", optional=True)
    metadata = {"layout": "new", "well": w, "recording": rec, "spikes_stored": spikes is not None,
                "start_time_ms": None if start is None or not start.size else float(np.ravel(start)[0]),
                "stop_time_ms": None if stop is None or not stop.size else float(np.ravel(stop)[0])}
    if not n_frames and None not in (metadata["start_time_ms"], metadata["stop_time_ms"]):
        # no sample frame numbers: the wall-clock span (ms) gives the recording length
        n_frames = int(round((metadata["stop_time_ms"] - metadata["start_time_ms"]) / 1000.0 * sampling_rate))
    return _recording(path, f"{g}/spikes", spikes, f"{g}/settings/mapping", mapping, sampling_rate,
                      first_frame, n_frames, metadata)


def read(path, well=None, recording: str | None = None, sampling_rate: float | None = None,
         first_frame: int | None = None, progress=None, **options):
    """Load a MaxWell ``.raw.h5`` file's spike table as a :class:`SpikeRecording` (s, um).

    ``well``/``recording`` choose the group in the new layout; ``sampling_rate`` (Hz) overrides the
    file's (20 kHz for legacy files); ``first_frame`` sets the frame that becomes t = 0 s.
    """
    if options:
        raise ReaderOptionError(f"unexpected options for the MaxWell reader: {sorted(options)}")
    with open_h5(path) as f:
        if _is_new(f):
            return _read_new(path, f, well, recording, sampling_rate, first_frame)
        if well is not None and str(well) not in ("0", "well000"):
            raise RecordingFormatError(path, "mapping", f"a legacy MaxOne file holds one well; got well={well!r}")
        return _read_legacy(path, f, sampling_rate, first_frame)
