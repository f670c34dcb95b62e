"""MEA-NAP ``*_OutputData.mat`` / spike-detection ``.mat`` files (MATLAB v5, read with scipy.io).

Fields used::

    spikeTimes   (1, C) cell/struct array, one struct per channel; each struct has one field per
                 spike detector (e.g. ``thr4``, ``thr5``, ``bior1p5``) holding spike times in s
    channels     (C,) channel numbers, e.g. 11..88 for an Axion 64-electrode well
                 (first digit = column, second digit = row)
    coords       (C, 2) channel x, y in MEA-NAP **layout units** (see below)
    Params.fs    sampling rate in Hz; Info.duration_s recording length in s (optional)

Positions: MEA-NAP stores ``coords`` in plotting-layout units in which the 8 x 8 grid spans 0..8
(spacing 8/7), not in micrometres. We convert them to um as
``round(coords / step) * pitch_um`` where ``step`` is the smallest non-zero spacing found in the file
and ``pitch_um`` the electrode pitch of the plate (default 300 um, the pitch of Axion 64-electrode
wells; pass ``pitch_um=...`` for other plates). The raw ``coords`` are kept in the metadata.

Choose the detector with ``detector="thr4"``; without it a file with one detector loads that one,
and a file with several raises an error listing them.
"""

from __future__ import annotations

import zlib

import numpy as np

from .errors import RecordingFormatError
from ._util import build

FORMAT = "meanap"
DESCRIPTION = "MEA-NAP .mat spike times (spikeTimes{channel}.<detector>, channels, coords, Params.fs)"
MAT_MAGIC = b"MATLAB 5.0 MAT-file"
DEFAULT_PITCH_UM = 300.0


def sniff(path, head: bytes) -> bool:
    """True for a MATLAB v5 file (the MEA-NAP specific fields are checked when reading)."""
    return head.startswith(MAT_MAGIC)


def sniff_h5(f) -> bool:
    """MATLAB v7.3 files are HDF5; True when one holds a ``spikeTimes`` variable."""
    return "spikeTimes" in f and getattr(f, "userblock_size", 0) >= 128


def _load(path):
    import scipy.io
    import scipy.io.matlab

    try:
        return scipy.io.loadmat(path, squeeze_me=True, struct_as_record=False)
    except NotImplementedError as exc:  # MATLAB v7.3 files are HDF5: not the MEA-NAP layout we read
        raise RecordingFormatError(path, None, f"unsupported MATLAB file version: {exc}") from None
    except (ValueError, TypeError, OSError, EOFError, KeyError, IndexError, AttributeError, zlib.error,
            scipy.io.matlab.MatReadError) as exc:
        raise RecordingFormatError(path, None, f"not a readable MATLAB v5 file (corrupt or truncated?): {exc}") from None


def _field(obj, name):
    return getattr(obj, name, None) if obj is not None and not isinstance(obj, np.ndarray) else None


def _structs(path, mat) -> list:
    if "spikeTimes" not in mat:
        raise RecordingFormatError(path, "spikeTimes", "required variable is missing (not an MEA-NAP file?)")
    st = mat["spikeTimes"]
    items = list(np.atleast_1d(st)) if isinstance(st, np.ndarray) else [st]
    if not items or not all(hasattr(s, "_fieldnames") for s in items):
        raise RecordingFormatError(path, "spikeTimes", "expected one struct of detector fields per channel")
    return items


def detectors(path) -> list[str]:
    """Spike detectors available in the file (struct fields of ``spikeTimes``)."""
    return list(_structs(path, _load(path))[0]._fieldnames)


def _positions_um(path, coords, n: int, pitch_um: float) -> np.ndarray:
    coords = np.asarray(coords, dtype=np.float64)
    if coords.shape != (n, 2):
        raise RecordingFormatError(path, "coords", f"has shape {coords.shape}, expected ({n}, 2)")
    steps = np.diff(np.unique(np.round(coords, 9)))
    steps = steps[steps > 1e-9]
    if not len(steps):
        return coords * 0.0
    grid = np.round(coords / steps.min())
    return grid * float(pitch_um)


def read(path, detector: str | None = None, pitch_um: float = DEFAULT_PITCH_UM, progress=None, **options):
    """Load an MEA-NAP ``.mat`` file (one recording of ``C`` channels) as a :class:`SpikeRecording`.

    ``detector`` picks the spike detector field (e.g. ``"thr4"``); ``pitch_um`` (um) converts
    MEA-NAP layout coordinates to micrometres (see module docstring).
    """
    from ..recording import SpikeRecording

    if options:
        raise TypeError(f"unexpected options for the MEA-NAP reader: {sorted(options)}")
    mat = _load(path)
    structs = _structs(path, mat)
    available = list(structs[0]._fieldnames)
    if detector is None:
        if len(available) != 1:
            raise RecordingFormatError(path, "spikeTimes", f"has {len(available)} spike detectors; choose one "
                                       f"with detector=...: {', '.join(available)}")
        detector = available[0]
    if detector not in available:
        raise RecordingFormatError(path, "spikeTimes", f"no detector {detector!r}; detectors: {', '.join(available)}")
    trains = []
    for i, s in enumerate(structs):
        v = getattr(s, detector, None)
        a = np.atleast_1d(np.asarray(v if v is not None else [], dtype=object if v is None else None))
        if a.size and a.dtype.kind not in "fiu":
            raise RecordingFormatError(path, f"spikeTimes[{i}].{detector}", f"has dtype {a.dtype}, expected numbers (s)")
        trains.append(a.astype(np.float64).ravel())
    n = len(trains)
    channels = np.atleast_1d(mat.get("channels", np.arange(1, n + 1)))
    if channels.shape != (n,) or channels.dtype.kind not in "iuf":
        raise RecordingFormatError(path, "channels", f"has shape {channels.shape} dtype {channels.dtype}, "
                                   f"expected {n} channel numbers")
    channels = channels.astype(np.int64)
    positions = (_positions_um(path, mat["coords"], n, pitch_um) if "coords" in mat
                 else np.full((n, 2), np.nan))
    params, info = mat.get("Params"), mat.get("Info")
    fs = _field(params, "fs")
    duration = _field(info, "duration_s")
    last = max((t.max() for t in trains if len(t)), default=0.0)
    t_stop = float(duration) if np.isscalar(duration) and float(duration) >= last else float(last)
    metadata = {"source": str(path), "format": FORMAT, "detector": detector, "detectors": available,
                "name": _field(info, "FN"), "div": _field(info, "DIV"), "group": _field(info, "Grp"),
                "layout": _field(params, "channelLayout"), "pitch_um": float(pitch_um),
                "coords_layout_units": np.asarray(mat["coords"]).tolist() if "coords" in mat else None}
    metadata = {k: (v.item() if isinstance(v, np.generic) else v) for k, v in metadata.items()
                if v is None or np.isscalar(v) or isinstance(v, (list, dict))}
    return build(path, f"spikeTimes.{detector}", SpikeRecording.from_spike_times, trains, t_start=0.0,
                 t_stop=t_stop, unit_ids=channels, electrode_ids=channels, positions=positions,
                 sampling_rate=float(fs) if np.isscalar(fs) else None, metadata=metadata)
