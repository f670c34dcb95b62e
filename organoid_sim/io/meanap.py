"""MEA-NAP ``*_OutputData.mat`` / spike-detection ``.mat`` files (MATLAB v5 via scipy.io, v7.3 via h5py).

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
wells; pass ``pitch_um=...`` for other plates). The raw ``coords`` are kept in the metadata. A file
of one channel shows no spacing, so its position is unknown (NaN).

One-channel files load too: MATLAB's 1 x 1 cell, 1 x 1 ``channels`` and 1 x 2 ``coords`` come
squeezed to a struct, a scalar and a 2-vector from ``scipy.io``, and a one-spike train to a scalar.

Choose the detector with ``detector="thr4"``; without it a file with one detector loads that one,
and a file with several raises an error listing them.
"""

from __future__ import annotations

import zlib

import numpy as np

from .errors import ReaderOptionError, RecordingFormatError
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
    except (ValueError, TypeError, OSError, EOFError, KeyError, IndexError, AttributeError, zlib.error,
            scipy.io.matlab.MatReadError) as exc:
        raise RecordingFormatError(path, None, f"not a readable MATLAB v5 file (corrupt or truncated?): "
                                   f"{exc}") from None


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
    if _is_hdf5(path):
        import h5py

        from ._util import open_h5

        with open_h5(path) as f:
            st = f.get("spikeTimes")
            if isinstance(st, h5py.Group):
                return sorted(st.keys())
            if st is None or st.dtype != h5py.ref_dtype or not st.size:
                raise RecordingFormatError(path, "spikeTimes", "expected a cell or struct array of detector fields")
            return sorted(f[st[()].T.ravel()[0]].keys())
    return list(_structs(path, _load(path))[0]._fieldnames)


def _positions_um(path, coords, n: int, pitch_um: float) -> np.ndarray:
    coords = np.asarray(coords, dtype=np.float64)
    if coords.shape != (n, 2):
        raise RecordingFormatError(path, "coords", f"has shape {coords.shape}, expected ({n}, 2)")
    if n < 2:  # the grid's spacing is a distance between electrodes: one electrode does not show it
        return np.full((n, 2), np.nan)
    steps = np.diff(np.unique(np.round(coords, 9)))
    steps = steps[steps > 1e-9]
    if not len(steps):
        return coords * 0.0
    grid = np.round(coords / steps.min())
    return grid * float(pitch_um)


def _choose_detector(path, detector: str | None, available: list[str]) -> str:
    if detector is None:
        if len(available) != 1:
            raise RecordingFormatError(path, "spikeTimes", f"has {len(available)} spike detectors; choose one "
                                       f"with detector=...: {', '.join(available)}")
        return available[0]
    if detector not in available:
        raise RecordingFormatError(path, "spikeTimes", f"no detector {detector!r}; detectors: {', '.join(available)}")
    return detector


def _as_train(path, where: str, v) -> np.ndarray:
    a = np.atleast_1d(np.asarray([] if v is None else v))
    if a.size and a.dtype.kind not in "fiu":
        raise RecordingFormatError(path, where, f"has dtype {a.dtype}, expected numbers (s)")
    return a.astype(np.float64).ravel()


def _v5(path, detector):
    """(trains, detector, detectors, fields) from a MATLAB v5 file (scipy.io)."""
    mat = _load(path)
    structs = _structs(path, mat)
    available = list(structs[0]._fieldnames)
    detector = _choose_detector(path, detector, available)
    trains = [_as_train(path, f"spikeTimes[{i}].{detector}", getattr(s, detector, None))
              for i, s in enumerate(structs)]
    params, info = mat.get("Params"), mat.get("Info")
    fields = {"channels": mat.get("channels"), "coords": mat.get("coords"), "fs": _field(params, "fs"),
              "duration_s": _field(info, "duration_s"), "name": _field(info, "FN"), "div": _field(info, "DIV"),
              "group": _field(info, "Grp"), "layout": _field(params, "channelLayout")}
    return trains, detector, available, fields


# ------------------------------------------------------------------------------ MATLAB v7.3 (HDF5)
def _mat_value(f, obj):
    """A MATLAB v7.3 variable as numpy (MATLAB's column-major order undone), text as str."""
    import h5py

    if isinstance(obj, h5py.Group):
        return None
    attrs = obj.attrs
    if attrs.get("MATLAB_empty", 0):
        return np.zeros(0)
    data = obj[()]
    if data.dtype == h5py.ref_dtype:  # a cell: take its first element
        return _mat_value(f, f[data.ravel()[0]]) if data.size else None
    cls = attrs.get("MATLAB_class", b"")
    cls = cls.decode() if isinstance(cls, bytes) else str(cls)
    if cls == "char":
        return "".join(map(chr, data.T.ravel().astype(np.uint32)))
    data = np.asarray(data).T
    return data.item() if data.size == 1 else data


def _v73(path, detector):
    """(trains, detector, detectors, fields) from a MATLAB v7.3 file (HDF5, read with h5py).

    ``spikeTimes`` is either a cell array of structs (a dataset of references to groups) or a
    struct array (a group whose fields are datasets of references, one per channel).
    """
    import h5py

    from ._util import open_h5

    with open_h5(path) as f:
        st = f.get("spikeTimes")
        if st is None:
            raise RecordingFormatError(path, "spikeTimes", "required variable is missing (not an MEA-NAP file?)")
        if isinstance(st, h5py.Group):  # struct array
            available = sorted(st.keys())
            detector = _choose_detector(path, detector, available)
            refs = st[detector][()].T.ravel()
            trains = [_as_train(path, f"spikeTimes({i + 1}).{detector}", _mat_value(f, f[r]))
                      for i, r in enumerate(refs)]
        else:  # cell array of structs
            if st.dtype != h5py.ref_dtype:
                raise RecordingFormatError(path, "spikeTimes", f"expected a cell or struct array, got {st.dtype}")
            groups = [f[r] for r in st[()].T.ravel()]
            if not groups or not all(isinstance(g, h5py.Group) for g in groups):
                raise RecordingFormatError(path, "spikeTimes", "expected one struct of detector fields per channel")
            available = sorted(groups[0].keys())
            detector = _choose_detector(path, detector, available)
            trains = [_as_train(path, f"spikeTimes{{{i + 1}}}.{detector}",
                                _mat_value(f, g[detector]) if detector in g else None) for i, g in enumerate(groups)]

        def var(name):
            return _mat_value(f, f[name]) if name in f else None

        coords = var("coords")
        fields = {"channels": None if var("channels") is None else np.ravel(var("channels")),
                  "coords": coords, "fs": var("Params/fs"), "duration_s": var("Info/duration_s"),
                  "name": var("Info/FN"), "div": var("Info/DIV"), "group": var("Info/Grp"),
                  "layout": var("Params/channelLayout")}
    return trains, detector, available, fields


def read(path, detector: str | None = None, pitch_um: float = DEFAULT_PITCH_UM, progress=None, **options):
    """Load an MEA-NAP ``.mat`` file (one recording of ``C`` channels) as a :class:`SpikeRecording`.

    ``detector`` picks the spike detector field (e.g. ``"thr4"``); ``pitch_um`` (um) converts
    MEA-NAP layout coordinates to micrometres (see module docstring). MATLAB v5 files are read
    with ``scipy.io.loadmat``, v7.3 files (HDF5) with h5py.
    """
    from ..recording import SpikeRecording
    from ._util import read_head

    if options:
        raise ReaderOptionError(f"unexpected options for the MEA-NAP reader: {sorted(options)}")
    v5 = read_head(path, len(MAT_MAGIC)).startswith(MAT_MAGIC) and not _is_hdf5(path)
    trains, detector, available, fields = (_v5 if v5 else _v73)(path, detector)
    n = len(trains)
    channels = np.atleast_1d(fields["channels"] if fields["channels"] is not None else np.arange(1, n + 1))
    if channels.shape != (n,) or channels.dtype.kind not in "iuf":
        raise RecordingFormatError(path, "channels", f"has shape {channels.shape} dtype {channels.dtype}, "
                                   f"expected {n} channel numbers")
    channels = channels.astype(np.int64)
    coords = fields["coords"]
    if coords is not None and n == 1 and np.shape(coords) == (2,):  # a 1 x 2 coords squeezed by scipy.io
        coords = np.reshape(coords, (1, 2))
    positions = _positions_um(path, coords, n, pitch_um) if coords is not None else np.full((n, 2), np.nan)
    fs, duration = fields["fs"], fields["duration_s"]
    last = max((t.max() for t in trains if len(t)), default=0.0)
    t_stop = float(duration) if np.isscalar(duration) and float(duration) >= last else float(last)
    metadata = {"source": str(path), "format": FORMAT, "detector": detector, "detectors": available,
                "name": fields["name"], "div": fields["div"], "group": fields["group"], "layout": fields["layout"],
                "pitch_um": float(pitch_um), "mat_version": "5" if v5 else "7.3",
                "coords_layout_units": np.asarray(coords).tolist() if coords is not None else None}
    metadata = {k: (v.item() if isinstance(v, np.generic) else v) for k, v in metadata.items()
                if v is None or np.isscalar(v) or isinstance(v, (list, dict))}
    return build(path, f"spikeTimes.{detector}", SpikeRecording.from_spike_times, trains, t_start=0.0,
                 t_stop=t_stop, unit_ids=channels, electrode_ids=channels, positions=positions,
                 sampling_rate=float(fs) if np.isscalar(fs) else None, metadata=metadata)


def _is_hdf5(path) -> bool:
    from ._util import HDF5_SIGNATURE, read_head

    return read_head(path, 520)[512:520] == HDF5_SIGNATURE
