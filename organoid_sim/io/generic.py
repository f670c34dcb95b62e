"""Our documented generic layout, stored as HDF5 (``.h5``/``.hdf5``) or NPZ (``.npz``).

The same names are used in both containers (HDF5 datasets/attributes, NPZ arrays)::

    spike_times        float64 (S,)   spike times in seconds                       required
    spike_times_index  int     (N,)   end of each unit's run in spike_times         one of these two
    spike_units        int|str (S,)   unit id of each spike (flat pairs, any order) one of these two
    unit_ids           int|str (N,)   unit ids (default 0..N-1, or the sorted unique spike_units)
    electrode_ids      int     (N,)   recording electrode of each unit (-1 unknown)
    positions          float64 (N, 2) unit x, y in um (NaN unknown)
    electrodes/id, electrodes/x, electrodes/y   electrode layout (ids, um)
    stim/time, stim/electrode, stim/amplitude, stim/phase_us, stim/n_phases   stimulation table
    t_start, t_stop    float (s)      recording window (default 0 .. last spike)
    sampling_rate      float (Hz)     absent or NaN when unknown
    amplitude_unit     str            "uA" or "mV" (stimulation amplitudes)
    metadata           str            JSON object

In HDF5 the scalars (``t_start``, ``t_stop``, ``sampling_rate``, ``amplitude_unit``,
``metadata``, ``unit_id_kind``) are attributes of the root group, which also carries
``format = "organoid_sim.spikes"`` and ``version = 1``; in NPZ they are 0-d arrays. With
``spike_times_index`` the times of unit ``i`` are ``spike_times[index[i-1]:index[i]]`` (NWB's
ragged convention) and must be sorted; with ``spike_units`` the pairs may come in any order.
A file written by hand needs only ``spike_times`` and one of the two unit arrays.
"""

from __future__ import annotations

import json
import zipfile
from typing import TYPE_CHECKING

import numpy as np

from ._util import atomic_path, build, decode_strings, h5_attr, h5_read, offsets_from_index, open_h5, parse_json
from .errors import ReaderOptionError, RecordingFormatError

if TYPE_CHECKING:
    from ..recording import SpikeRecording

FORMAT = "generic_h5"
DESCRIPTION = "organoid-sim generic HDF5/NPZ layout (spike_times + spike_times_index or spike_units)"
MARKER = "organoid_sim.spikes"
VERSION = 1
SCALARS = ("t_start", "t_stop", "sampling_rate", "amplitude_unit", "metadata", "unit_id_kind")
STIM = ("time", "electrode", "amplitude", "phase_us", "n_phases")
_KINDS = {"spike_times": "fiu", "spike_times_index": "iu", "spike_units": "iuSUO", "unit_ids": "iuSUO",
          "electrode_ids": "iu", "positions": "fiu", "electrodes/id": "iu", "electrodes/x": "fiu",
          "electrodes/y": "fiu", "stim/electrode": "iu", "stim/n_phases": "iu"}
# every other array is one value per spike, unit, electrode or pulse (a scalar one-unit id is an error)
_NDIM = {"positions": 2, **{name: 1 for name in ("spike_times_index", "spike_units", "unit_ids", "electrode_ids",
                                                  "electrodes/id", "electrodes/x", "electrodes/y")},
         **{f"stim/{c}": 1 for c in STIM}}
ZIP_SIGNATURE = b"PK\x03\x04"


# ---------------------------------------------------------------------------------------- arrays
def to_arrays(rec) -> dict:
    """The layout's arrays (and 0-d scalars) for a recording."""
    st = rec.stim
    arrays = {"spike_times": rec.times, "spike_times_index": rec.offsets[1:], "unit_ids": rec.unit_ids,
              "electrode_ids": rec.electrode_ids, "positions": rec.positions,
              "electrodes/id": rec.electrodes.ids, "electrodes/x": rec.electrodes.x,
              "electrodes/y": rec.electrodes.y,
              **{f"stim/{c}": getattr(st, c) for c in STIM},
              "t_start": np.float64(rec.t_start), "t_stop": np.float64(rec.t_stop),
              "sampling_rate": np.float64(np.nan if rec.sampling_rate is None else rec.sampling_rate),
              "amplitude_unit": np.str_(st.amplitude_unit), "metadata": np.str_(json.dumps(rec.metadata)),
              "unit_id_kind": np.str_(rec.unit_ids.dtype.kind)}
    return arrays


def _scalar(path, name, value, kind: str):
    if value is None:
        return None
    v = np.asarray(value)
    if v.size != 1:
        raise RecordingFormatError(path, name, f"expected a single value, got shape {v.shape}")
    v = v.reshape(()).item()
    if kind == "f":
        if isinstance(v, (bytes, str)) or not np.isscalar(v):
            raise RecordingFormatError(path, name, f"expected a number, got {v!r}")
        return float(v)
    return v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)


def _offsets(path, get, times, unit_ids):
    """(sorted times, offsets, unit ids) from either the ragged index or the flat unit array."""
    index = get("spike_times_index")
    if index is not None:
        offsets = offsets_from_index(path, "spike_times_index", index, len(times))
        if unit_ids is not None and len(unit_ids) != len(offsets) - 1:
            raise RecordingFormatError(path, "unit_ids", f"has {len(unit_ids)} entries, spike_times_index "
                                       f"has {len(offsets) - 1}")
        return times, offsets, unit_ids
    units = get("spike_units")
    if units is None:
        raise RecordingFormatError(path, "spike_times_index", "missing (and no spike_units either): cannot "
                                   "tell which unit each spike belongs to")
    if units.ndim != 1 or len(units) != len(times):
        raise RecordingFormatError(path, "spike_units", f"has shape {units.shape}, spike_times has {times.shape}")
    if units.dtype.kind in "SO":
        units = decode_strings(units)
    from ..recording import SpikeRecording

    rec = build(path, "spike_units", SpikeRecording.from_pairs, times, units, unit_ids=unit_ids)
    return rec.times, rec.offsets, rec.unit_ids


def from_arrays(path, get, fmt: str = FORMAT) -> "SpikeRecording":
    """Build a recording from the layout; ``get(name)`` returns an array/scalar or None if absent."""
    from ..events import StimEvents
    from ..recording import Electrodes, SpikeRecording

    times = get("spike_times")
    if times is None:
        raise RecordingFormatError(path, "spike_times", "required dataset is missing")
    if times.ndim != 1:
        raise RecordingFormatError(path, "spike_times", f"has shape {times.shape}, expected 1-D")
    unit_ids = get("unit_ids")
    kind = _scalar(path, "unit_id_kind", get("unit_id_kind"), "U")
    if unit_ids is not None and (unit_ids.dtype.kind in "SOU" or kind == "U"):
        unit_ids = decode_strings(unit_ids) if len(unit_ids) else np.zeros(0, "<U1")
    times, offsets, unit_ids = _offsets(path, get, times.astype(np.float64), unit_ids)
    per_unit = {name: get(name) for name in ("electrode_ids", "positions")}
    for name, value in per_unit.items():
        if value is not None and len(value) != len(offsets) - 1:
            raise RecordingFormatError(path, name, f"has {len(value)} rows for {len(offsets) - 1} units")
    fs = _scalar(path, "sampling_rate", get("sampling_rate"), "f")
    md = get("metadata")
    metadata = parse_json(path, "metadata", md) if md is not None else {"source": str(path), "format": fmt}
    eids = get("electrodes/id")
    electrodes = None
    if eids is not None:
        xs = [get(f"electrodes/{c}") for c in "xy"]
        xs = [np.full(len(eids), np.nan) if v is None else v for v in xs]
        electrodes = build(path, "electrodes", Electrodes, eids, *xs)
    stim = None
    if get("stim/time") is not None:
        cols = [get(f"stim/{c}") for c in STIM]
        if cols[1] is None:
            raise RecordingFormatError(path, "stim/electrode", "missing while stim/time is present")
        unit = _scalar(path, "amplitude_unit", get("amplitude_unit"), "U") or "uA"
        stim = build(path, "stim", StimEvents.from_columns, *cols, amplitude_unit=unit, sort=False)
    return build(path, "spike_times", SpikeRecording, times, offsets,
                 t_start=_scalar(path, "t_start", get("t_start"), "f"),
                 t_stop=_scalar(path, "t_stop", get("t_stop"), "f"), unit_ids=unit_ids,
                 electrode_ids=per_unit["electrode_ids"], positions=per_unit["positions"], electrodes=electrodes,
                 sampling_rate=None if fs is None or np.isnan(fs) else fs, stim=stim, metadata=metadata)


def _checked(path, name, value):
    if value is None:
        return None
    value = np.asarray(value)
    if name in _KINDS and value.size and value.dtype.kind not in _KINDS[name]:
        raise RecordingFormatError(path, name, f"has dtype {value.dtype}, expected kind {_KINDS[name]!r}")
    if name in _NDIM and value.ndim != _NDIM[name]:
        raise RecordingFormatError(path, name, f"has shape {value.shape}, expected {_NDIM[name]}-D")
    return value


# ---------------------------------------------------------------------------------------- HDF5
def sniff_h5(f) -> bool:
    """True for our generic layout (marker attribute, or a root-level ``spike_times``)."""
    try:
        marked = f.attrs.get("format") in (MARKER, MARKER.encode())
    except (OSError, TypeError, ValueError):
        marked = False
    # a root-level spike_times is our layout's signature (NWB keeps it under /units)
    return marked or "spike_times" in f


def read(path, progress=None, **options):
    """Load our generic HDF5 layout (module docstring) as a :class:`SpikeRecording` (s, um)."""
    if options:
        raise ReaderOptionError(f"unexpected options for the generic HDF5 reader: {sorted(options)}")
    with open_h5(path) as f:
        def get(name):
            if name in SCALARS:
                return h5_attr(path, f, name)
            return _checked(path, name, h5_read(path, f, name, optional=True))

        return from_arrays(path, get)


def write(rec, path, **options) -> None:
    """Write our generic HDF5 layout atomically (spike times s, positions um)."""
    import h5py

    if options:
        raise ReaderOptionError(f"unexpected options for the generic HDF5 writer: {sorted(options)}")
    arrays = to_arrays(rec)
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        f.attrs["format"] = MARKER
        f.attrs["version"] = VERSION
        for name, value in arrays.items():
            if name in SCALARS:
                if name == "sampling_rate" and np.isnan(value):
                    continue
                f.attrs[name] = value.item() if isinstance(value, np.generic) else value
            elif value.dtype.kind == "U":
                f.create_dataset(name, data=value.astype(object), dtype=h5py.string_dtype())
            else:
                f.create_dataset(name, data=value)


# ---------------------------------------------------------------------------------------- NPZ
def sniff(path, head: bytes) -> bool:
    """True for an NPZ archive holding ``spike_times`` (or a zip too damaged to list)."""
    if not head.startswith(ZIP_SIGNATURE):
        return False
    try:
        with zipfile.ZipFile(path) as z:
            return "spike_times.npy" in z.namelist()
    except (zipfile.BadZipFile, OSError, RuntimeError, ValueError, EOFError):
        return True  # a damaged zip: let the NPZ reader report what is wrong with it



def read_npz(path, progress=None, **options):
    """Load an NPZ archive in the generic layout (module docstring; times s, positions um)."""
    if options:
        raise ReaderOptionError(f"unexpected options for the NPZ reader: {sorted(options)}")
    try:
        with np.load(path, allow_pickle=False) as z:
            names = set(z.files)

            def get(name):
                if name not in names:
                    return None
                try:
                    return _checked(path, name, z[name])
                except (ValueError, OSError, zipfile.BadZipFile, EOFError) as exc:
                    raise RecordingFormatError(path, name, f"cannot be read (corrupt or truncated?): {exc}") from None

            return from_arrays(path, get, "npz")
    except RecordingFormatError:
        raise
    except (zipfile.BadZipFile, OSError, EOFError, RuntimeError, ValueError) as exc:
        raise RecordingFormatError(path, None, f"not a readable NPZ archive (corrupt or truncated?): {exc}") from None


def write_npz(rec, path, **options) -> None:
    """Write the generic layout as an NPZ archive atomically (no pickled objects)."""
    if options:
        raise ReaderOptionError(f"unexpected options for the NPZ writer: {sorted(options)}")
    arrays = to_arrays(rec)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)
