"""NWB (Neurodata Without Borders) files: written with pynwb, read with a fast h5py path.

What is written (``save(rec, "x.nwb")``):

* ``/units``: one row per unit; ``id`` = the unit id (string ids go to a ``unit_name`` column and
  ``id`` counts 0..N-1), ragged ``spike_times`` (s), ``obs_intervals`` = ``[[t_start, t_stop]]``,
  ragged ``electrodes`` (a region of the electrodes table; empty where the electrode is unknown),
  ``pos_x_um``/``pos_y_um`` (unit position in um) and ``resolution = 1 / sampling_rate``;
* ``/general/extracellular_ephys/electrodes``: one row per electrode of the layout, ``id`` = the
  electrode id, ``rel_x``/``rel_y`` = position on the array in um (NaN unknown), one
  ``ElectrodeGroup`` "array";
* ``/intervals/stimulation`` (a ``TimeIntervals`` table) when the recording has stimulation events:
  ``start_time`` = pulse onset (s), ``stop_time`` = onset + ``n_phases * phase_us``, and columns
  ``electrode``, ``amplitude`` (unit in the column description), ``phase_us``, ``n_phases``;
* ``/scratch/organoid_sim``: a JSON text of what NWB has no field for (window, sampling rate,
  unit id type, our metadata), so ``load(save(rec)) == rec`` exactly.

The reader needs none of the scratch data: for a file written elsewhere it takes the window from
``obs_intervals`` (else 0 .. last spike), positions from ``rel_x``/``rel_y`` (else ``x``/``y``)
and stimulation from any ``/intervals/*`` table that has ``electrode`` and amplitude columns
(``amplitude``, or ``amplitude_uA`` / ``amplitude_mV`` whose name gives the unit); a table with an
electrode column but no amplitude column is not stimulation, and the reader warns that it skipped it.
Phase durations derived from ``stop_time - start_time`` are rounded to 1 ns (float seconds are not
exact: 200.00000001 us would otherwise be a condition of its own).
It reads each ragged array (``spike_times`` + ``spike_times_index``) in one h5py call instead of
one call per unit, which is what makes it much faster than pynwb or neo (see ``benchmarks/``).
"""

from __future__ import annotations

import datetime
import json
import uuid
import warnings
from pathlib import Path

import numpy as np

from ._util import (atomic_path, build, dataset_size, decode_strings, h5_read, offsets_from_index, open_h5,
                    parse_json, progress_bar)
from .errors import ReaderOptionError, RecordingFormatError

FORMAT = "nwb"
DESCRIPTION = "NWB 2.x file (/units spike_times, electrodes table, /intervals stimulation)"
SCRATCH = "organoid_sim"
STIM_TABLE = "stimulation"
ELECTRODES = "general/extracellular_ephys/electrodes"


def sniff_h5(f) -> bool:
    """True if an open HDF5 file is an NWB file (root ``nwb_version`` attribute or ``/units``)."""
    return "nwb_version" in f.attrs or ("units" in f and "general" in f)


# ---------------------------------------------------------------------------------------- writer
def _session_start(metadata: dict) -> datetime.datetime:
    text = metadata.get("session_start_time")
    if isinstance(text, str):
        try:
            t = datetime.datetime.fromisoformat(text)
            return t if t.tzinfo else t.replace(tzinfo=datetime.timezone.utc)
        except ValueError:
            pass
    return datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)


def _column(name: str, description: str, data):
    from hdmf.common import VectorData

    return VectorData(name=name, description=description, data=data)


def _ragged_column(name: str, description: str, data, ends, table=None) -> list:
    """A ragged column (values + ``_index``) built from whole arrays, not row by row.

    Row-by-row ``add_unit`` makes hdmf convert every spike time separately (about 10 s for a
    million spikes); whole numpy arrays are written in one go.
    """
    from hdmf.common import DynamicTableRegion, VectorIndex

    values = (DynamicTableRegion(name=name, description=description, data=data, table=table) if table is not None
              else _column(name, description, data))
    return [values, VectorIndex(name=f"{name}_index", data=np.asarray(ends, dtype=np.int64), target=values)]


def _add_electrodes(nwbfile, rec) -> dict:
    """Electrodes table rows for the layout (plus unit electrodes missing from it); id -> row."""
    from hdmf.common import ElementIdentifiers
    from pynwb.ecephys import ElectrodesTable

    layout = rec.electrodes
    extra = np.setdiff1d(rec.electrode_ids[rec.electrode_ids >= 0], layout.ids)
    ids = np.concatenate([layout.ids, extra])
    if not len(ids):
        return {}
    device = nwbfile.create_device(name="MEA", description="multi-electrode array")
    group = nwbfile.create_electrode_group(name="array", description="all electrodes of the array",
                                           location="in vitro", device=device)
    n = len(ids)
    x = np.concatenate([layout.x, np.full(len(extra), np.nan)])
    y = np.concatenate([layout.y, np.full(len(extra), np.nan)])
    columns = [_column("location", "location of the electrode", ["in vitro"] * n),
               _column("group", "electrode group", [group] * n),
               _column("group_name", "electrode group name", ["array"] * n),
               _column("rel_x", "x position on the array (um)", x),
               _column("rel_y", "y position on the array (um)", y),
               _column("in_layout", "electrode belongs to the array layout (False: only referenced by a unit)",
                       np.arange(n) < len(layout))]
    nwbfile.electrodes = ElectrodesTable(id=ElementIdentifiers(name="id", data=ids), columns=columns)
    return {e: i for i, e in enumerate(ids.tolist())}


def _add_units(nwbfile, rec, rows: dict) -> None:
    from hdmf.common import ElementIdentifiers
    from pynwb.misc import Units

    if rec.n_units == 0:
        return
    n = rec.n_units
    str_ids = rec.unit_ids.dtype.kind == "U"
    columns = _ragged_column("spike_times", "the spike times for each unit in seconds", rec.times, rec.offsets[1:])
    columns += _ragged_column("obs_intervals", "the observation interval of each unit (s)",
                              np.tile([[rec.t_start, rec.t_stop]], (n, 1)), np.arange(1, n + 1))
    known = rec.electrode_ids >= 0
    # hdmf cannot type an electrodes column that is empty for every unit: leave it out then
    if rows and known.any():
        table_rows = np.array([rows[e] for e in rec.electrode_ids[known].tolist()], dtype=np.int64)
        columns += _ragged_column("electrodes", "the electrode of each unit (none when unknown)", table_rows,
                                  np.cumsum(known), table=nwbfile.electrodes)
    columns += [_column("pos_x_um", "unit x position on the array (um)", rec.positions[:, 0]),
                _column("pos_y_um", "unit y position on the array (um)", rec.positions[:, 1])]
    if str_ids:
        columns.append(_column("unit_name", "unit id as text", rec.unit_ids.tolist()))
    ids = np.arange(n) if str_ids else rec.unit_ids
    nwbfile.units = Units(name="units", description="units recorded on the MEA (spike times in s)",
                          id=ElementIdentifiers(name="id", data=ids), columns=columns,
                          resolution=1.0 / rec.sampling_rate if rec.sampling_rate else -1.0,
                          electrode_table=nwbfile.electrodes if rows and known.any() else None)


def _add_stim(nwbfile, stim) -> None:
    from hdmf.common import ElementIdentifiers
    from pynwb.epoch import TimeIntervals

    if not len(stim):
        return
    columns = [_column("start_time", "pulse onset (s)", stim.time),
               _column("stop_time", "pulse end: onset + n_phases * phase_us (s)", stim.time + stim.duration),
               _column("electrode", "stimulating electrode id", stim.electrode),
               _column("amplitude", f"first-phase amplitude in {stim.amplitude_unit} (sign = polarity)",
                       stim.amplitude),
               _column("phase_us", "duration of one phase (us)", stim.phase_us),
               _column("n_phases", "number of phases (1 mono, 2 biphasic, ...)", stim.n_phases)]
    nwbfile.add_time_intervals(TimeIntervals(name=STIM_TABLE, description="electrical stimulation pulses "
                                             "(one row per pulse)", columns=columns,
                                             id=ElementIdentifiers(name="id", data=np.arange(len(stim)))))


def write(rec, path, *, session_description: str | None = None, **options) -> None:
    """Write a :class:`SpikeRecording` to an NWB file with pynwb (atomic: temp file + rename).

    Spike times and the window are in seconds, positions in um, stimulation amplitudes in
    ``rec.stim.amplitude_unit``. The file passes ``pynwb.validate``.
    """
    from pynwb import NWBHDF5IO, NWBFile

    if options:
        raise ReaderOptionError(f"unexpected options for the NWB writer: {sorted(options)}")
    md = rec.metadata
    nwbfile = NWBFile(session_description=session_description or str(md.get("description", "MEA recording")),
                      identifier=str(md.get("identifier", uuid.uuid4())),
                      session_start_time=_session_start(md))
    rows = _add_electrodes(nwbfile, rec)
    _add_units(nwbfile, rec, rows)
    _add_stim(nwbfile, rec.stim)
    extra = {"t_start": rec.t_start, "t_stop": rec.t_stop, "sampling_rate": rec.sampling_rate,
             "unit_id_kind": rec.unit_ids.dtype.kind, "amplitude_unit": rec.stim.amplitude_unit,
             "metadata": md}
    nwbfile.add_scratch(json.dumps(extra), name=SCRATCH, description="organoid_sim fields NWB has no place for")
    with atomic_path(path) as tmp:
        with NWBHDF5IO(str(tmp), "w") as io:
            io.write(nwbfile)


# ---------------------------------------------------------------------------------------- reader
def _ragged(path, f, name: str, *, kinds: str, bar=None) -> tuple[np.ndarray, np.ndarray]:
    """A ragged NWB column ``name`` + ``name_index`` as (flat values, N+1 offsets), one read each."""
    values = h5_read(path, f, name, kinds=kinds, bar=bar)
    index = h5_read(path, f, name + "_index", kinds="iu", ndim=1)
    return values, offsets_from_index(path, name + "_index", index, len(values))


def _electrodes(path, f) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Electrode table: ids, x, y (um) and the in-layout mask; empty when the file has none."""
    if ELECTRODES not in f:
        z = np.zeros(0)
        return z.astype(np.int64), z, z, z.astype(bool)
    ids = h5_read(path, f, ELECTRODES + "/id", kinds="iu", ndim=1).astype(np.int64)
    cols = []
    for a, b in (("rel_x", "x"), ("rel_y", "y")):
        v = h5_read(path, f, f"{ELECTRODES}/{a}", kinds="fiu", ndim=1, optional=True)
        v = h5_read(path, f, f"{ELECTRODES}/{b}", kinds="fiu", ndim=1, optional=True) if v is None else v
        v = np.full(len(ids), np.nan) if v is None else v.astype(np.float64)
        if len(v) != len(ids):
            raise RecordingFormatError(path, f"{ELECTRODES}/{a}", f"has {len(v)} rows, the table has {len(ids)}")
        cols.append(v)
    layout = h5_read(path, f, ELECTRODES + "/in_layout", kinds="biu", ndim=1, optional=True)
    layout = np.ones(len(ids), bool) if layout is None or len(layout) != len(ids) else layout.astype(bool)
    return ids, cols[0], cols[1], layout


def _unit_electrodes(path, f, n: int, table_ids: np.ndarray) -> np.ndarray:
    """Electrode id of each unit (first electrode of its row; -1 when none)."""
    out = np.full(n, -1, np.int64)
    if "units/electrodes" not in f:
        return out
    if "units/electrodes_index" in f:
        rows, offsets = _ragged(path, f, "units/electrodes", kinds="iu")
    else:  # a non-ragged column: one electrode per unit
        rows = h5_read(path, f, "units/electrodes", kinds="iu", ndim=1)
        offsets = np.arange(len(rows) + 1)
    if len(offsets) - 1 != n:
        raise RecordingFormatError(path, "units/electrodes_index", f"has {len(offsets) - 1} rows for {n} units")
    if len(rows) and (rows.min() < 0 or rows.max() >= len(table_ids)):
        raise RecordingFormatError(path, "units/electrodes", f"refers to rows outside the electrodes table "
                                   f"({len(table_ids)} rows)")
    has = np.diff(offsets) > 0
    out[has] = table_ids[rows[offsets[:-1][has]]]
    return out


def _window(path, f, times: np.ndarray, scratch: dict) -> tuple[float, float]:
    if "t_start" in scratch and "t_stop" in scratch:
        return float(scratch["t_start"]), float(scratch["t_stop"])
    if "units/obs_intervals" in f:
        iv = h5_read(path, f, "units/obs_intervals", kinds="fiu")
        if iv.ndim != 2 or iv.shape[1:] != (2,):
            raise RecordingFormatError(path, "units/obs_intervals", f"has shape {iv.shape}, expected (K, 2)")
        if len(iv):
            return float(min(iv[:, 0].min(), times.min(initial=np.inf))), float(
                max(iv[:, 1].max(), times.max(initial=-np.inf)))
    return 0.0, float(times.max()) if len(times) else 0.0


def _amplitude_unit(path, f, column: str, default: str) -> str:
    """``"mV"`` when a foreign amplitude column's description says so, else ``default``."""
    from ._util import h5_attr

    text = h5_attr(path, f[column], "description", "") or ""
    return "mV" if "mV" in str(text) else default


#: amplitude column names of foreign stimulation tables -> the unit the name implies (None: from the description)
AMPLITUDE_COLUMNS = {"amplitude": None, "amplitude_uA": "uA", "amplitude_ua": "uA", "amplitude_mV": "mV",
                     "amplitude_mv": "mV"}
#: phase durations from stop - start are rounded to this many decimals of a microsecond (1 ns)
PHASE_DECIMALS = 3


def _amplitude_column(f, g: str) -> str | None:
    """The name of table ``g``'s amplitude column (see :data:`AMPLITUDE_COLUMNS`), None when it has none."""
    return next((c for c in AMPLITUDE_COLUMNS if f"{g}/{c}" in f), None)


def _stim_table(path, f, g: str, e_ids: np.ndarray, unit: str, amplitude: str = "amplitude"):
    """One ``/intervals`` table as StimEvents (electrode regions mapped to electrode ids)."""
    from ..events import StimEvents
    from ._util import h5_attr

    required = ("start_time", "electrode", amplitude)
    cols = {c: h5_read(path, f, f"{g}/{c}", kinds="fiu", ndim=1, optional=c not in required)
            for c in ("start_time", "stop_time", "electrode", amplitude, "phase_us", "n_phases")}
    cols["amplitude"] = cols.pop(amplitude)
    n = len(cols["start_time"])
    for c, v in cols.items():
        if v is not None and len(v) != n:
            raise RecordingFormatError(path, f"{g}/{c}", f"has {len(v)} rows, start_time has {n}")
    if h5_attr(path, f[f"{g}/electrode"], "neurodata_type") == "DynamicTableRegion":  # rows of the electrodes table
        rows = cols["electrode"].astype(np.int64)
        if len(rows) and (rows.min() < 0 or rows.max() >= len(e_ids)):
            raise RecordingFormatError(path, f"{g}/electrode", "refers to rows outside the electrodes table")
        cols["electrode"] = e_ids[rows]
    if cols["phase_us"] is None and cols["stop_time"] is not None:
        # a foreign table: the pulse lasts stop - start, split evenly over its phases
        n_phases = cols["n_phases"] if cols["n_phases"] is not None else np.full(n, 2)
        # float seconds: 0.0004 s / 2 is 200.00000001 us; rounding to 1 ns keeps one condition one value
        cols["phase_us"] = np.round((cols["stop_time"] - cols["start_time"]) * 1e6 / n_phases, PHASE_DECIMALS)
    return build(path, g, StimEvents.from_columns, cols["start_time"], cols["electrode"], cols["amplitude"],
                 cols["phase_us"], cols["n_phases"], amplitude_unit=unit)


def _stim_tables(path, f, e_ids: np.ndarray, scratch: dict):
    """Stimulation events from every ``/intervals/*`` table with electrode and amplitude columns."""
    from ..events import StimEvents

    unit = scratch.get("amplitude_unit", "uA")
    tables = []
    intervals = f.get("intervals")
    for name in sorted(intervals) if intervals is not None else []:
        g = f"intervals/{name}"
        if not all(f"{g}/{c}" in f for c in ("start_time", "electrode")):
            continue
        amp = _amplitude_column(f, g)
        if amp is None:
            cols = sorted(k for k in f[g].keys() if not k.endswith("_index"))
            warnings.warn(f"{path}: /{g} has an electrode column but no amplitude column (one of "
                          f"{', '.join(AMPLITUDE_COLUMNS)}; it has {', '.join(cols)}): not read as stimulation",
                          stacklevel=4)
            continue
        if scratch:
            table_unit = unit
        else:
            table_unit = AMPLITUDE_COLUMNS[amp] or _amplitude_unit(path, f, f"{g}/{amp}", unit)
        tables.append(_stim_table(path, f, g, e_ids, table_unit, amp))
    if not tables:
        return StimEvents.empty(unit)
    merged = build(path, "intervals", StimEvents.concat, tables)
    return merged.take(np.argsort(merged.time, kind="stable"))


def _session_fields(path, f) -> dict:
    """NWB file-level text fields worth keeping as metadata (identifier, start time, description)."""
    out = {}
    for key in ("identifier", "session_start_time", "session_description"):
        v = h5_read(path, f, key, optional=True) if key in f else None
        if v is not None and v.size == 1:
            item = v.reshape(()).item()
            out[key] = item.decode("utf-8", "replace") if isinstance(item, bytes) else str(item)
    return out


def _scratch(path, f) -> dict:
    name = f"scratch/{SCRATCH}"
    if name not in f:
        return {}
    return parse_json(path, name, h5_read(path, f, name))


def _unit_ids(path, f, n: int, scratch: dict) -> np.ndarray:
    """Unit ids: the ``unit_name`` column for text ids, else ``units/id``."""
    if scratch.get("unit_id_kind") == "U" or ("units/unit_name" in f and not scratch):
        if n == 0:
            return np.zeros(0, dtype="<U1")
        names = decode_strings(h5_read(path, f, "units/unit_name", kinds="SUO", ndim=1))
        if len(names) != n:
            raise RecordingFormatError(path, "units/unit_name", f"has {len(names)} rows for {n} units")
        return names
    if n == 0:
        return np.zeros(0, np.int64)
    ids = h5_read(path, f, "units/id", kinds="iu", ndim=1)
    if len(ids) != n:
        raise RecordingFormatError(path, "units/id", f"has {len(ids)} rows but spike_times_index has {n}")
    return ids.astype(np.int64)


def _unit_positions(path, f, n: int):
    """Per-unit positions (um) from ``pos_x_um``/``pos_y_um``, or None to use the electrodes table."""
    cols = [h5_read(path, f, f"units/{c}", kinds="fiu", ndim=1, optional=True) for c in ("pos_x_um", "pos_y_um")]
    if any(c is None for c in cols):
        return None  # derive from the electrode table
    for c, name in zip(cols, ("pos_x_um", "pos_y_um")):
        if len(c) != n:
            raise RecordingFormatError(path, f"units/{name}", f"has {len(c)} rows for {n} units")
    return np.stack([c.astype(np.float64) for c in cols], axis=1)


def read(path, progress=None, sort: bool = False, **options):
    """Load the ``/units`` table of an NWB file as a :class:`SpikeRecording` (times in s, um).

    ``sort=True`` sorts spike times within each unit (NWB does not require sorted times; by
    default unsorted times raise :class:`RecordingFormatError`).
    """
    from ..recording import Electrodes, SpikeRecording

    if options:
        raise ReaderOptionError(f"unexpected options for the NWB reader: {sorted(options)}")
    with open_h5(path) as f:
        scratch = _scratch(path, f)
        with progress_bar(progress, dataset_size(f, "units/spike_times"), f"reading {Path(path).name}") as bar:
            if "units" in f:
                times, offsets = _ragged(path, f, "units/spike_times", kinds="f", bar=bar)
                if times.ndim != 1:
                    raise RecordingFormatError(path, "units/spike_times", f"has shape {times.shape}, expected 1-D")
            else:
                times, offsets = np.zeros(0), np.zeros(1, np.int64)
        n = len(offsets) - 1
        e_ids, ex, ey, in_layout = _electrodes(path, f)
        unit_ids = _unit_ids(path, f, n, scratch)
        electrode_ids = _unit_electrodes(path, f, n, e_ids)
        positions = _unit_positions(path, f, n)
        t_start, t_stop = _window(path, f, times, scratch)
        stim = _stim_tables(path, f, e_ids, scratch)
        session = _session_fields(path, f)
        fs = scratch.get("sampling_rate")
        if fs is None and not scratch and "units" in f:
            res = f["units"].attrs.get("resolution", -1.0)
            fs = 1.0 / float(res) if np.isscalar(res) and float(res) > 0 else None
    if sort and len(times):
        unit_of = np.repeat(np.arange(n), np.diff(offsets))
        times = times[np.lexsort((times, unit_of))]
    # Our own files carry the recording's metadata verbatim (so load(save(r)) == r); others get
    # the provenance fields every reader writes.
    if "metadata" not in scratch:
        metadata = {"source": str(path), "format": FORMAT, **session}
    else:
        metadata = scratch["metadata"]
    layout = build(path, ELECTRODES, Electrodes, e_ids[in_layout], ex[in_layout], ey[in_layout])
    if positions is None:
        positions = build(path, ELECTRODES, Electrodes, e_ids, ex, ey).position_of(electrode_ids)
    return build(path, "units/spike_times", SpikeRecording, times, offsets, t_start=t_start, t_stop=t_stop,
                 unit_ids=unit_ids, electrode_ids=electrode_ids, positions=positions, electrodes=layout,
                 sampling_rate=fs, stim=stim, metadata=metadata)
