"""NWB (Neurodata Without Borders) files: written with pynwb, read with a fast h5py path.

What is written (``save(rec, "x.nwb")``):

* ``/units``: one row per unit; ``id`` = the unit id (string ids go to a ``unit_name`` column and
  ``id`` counts 0..N-1), ragged ``spike_times`` (s), ``obs_intervals`` = ``[[t_start, t_stop]]``,
  ragged ``electrodes`` (a region of the electrodes table; empty where the electrode is unknown),
  ``pos_x_um``/``pos_y_um`` (unit position in um) and ``resolution`` (s: ``1 / sampling_rate``, else
  the documented fallback of :func:`write`);
* ``/general/subject``: a ``Subject`` (options or metadata, else documented "unknown" values), a
  real ``session_start_time`` (UTC) and a session description, so nwbinspector reports no
  CRITICAL or BEST_PRACTICE_VIOLATION message and SpikeInterface's ``read_nwb_sorting`` reads it;
* ``/general/extracellular_ephys/electrodes``: one row per electrode of the layout, ``id`` = the
  electrode id, ``rel_x``/``rel_y`` = position on the array in um (NaN unknown), one
  ``ElectrodeGroup`` "array";
* ``/intervals/stimulation`` (a ``TimeIntervals`` table) when the recording has stimulation events:
  ``start_time`` = pulse onset (s), ``stop_time`` = onset + ``n_phases * phase_us``, and columns
  ``electrode``, ``amplitude`` (unit in the column description), ``phase_us``, ``n_phases``;
* ``/scratch/organoid_sim``: a JSON text of what NWB has no field for (window, sampling rate,
  unit id type, our metadata), so ``load(save(rec)) == rec`` exactly.

The reader needs none of the scratch data: for a file written elsewhere it takes the window from
``obs_intervals`` (else 0 .. last spike; gaps are kept in the metadata and warned about), the unit's
electrode from ``main_channel_id`` (else the first of its ``electrodes``), the sampling rate from
``Units.resolution``, positions from ``rel_x``/``rel_y`` (else ``x``/``y``) and stimulation from any
``/intervals/*`` table that has ``electrode`` and amplitude columns (rules in :func:`read`):
``amplitude``, or ``amplitude_uA`` / ``amplitude_mV`` whose name gives the unit; a table with an
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
from ..si_bridge import DEFAULT_RESOLUTION_S, spike_time_resolution  # noqa: F401  (re-exported)
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
UNKNOWN_SPECIES = "http://purl.obolibrary.org/obo/NCBITaxon_1"  # NCBI taxonomy root: "some organism"
UNKNOWN_AGE = "P0D/"  # ISO 8601 open range: at least 0 days old (age unknown)
SUBJECT_FIELDS = ("subject_id", "species", "age", "sex", "subject_description")


def _utc(t: datetime.datetime) -> datetime.datetime:
    return t.astimezone(datetime.timezone.utc) if t.tzinfo else t.replace(tzinfo=datetime.timezone.utc)


def _parse_time(value) -> datetime.datetime | None:
    if isinstance(value, datetime.datetime):
        return _utc(value)
    if isinstance(value, str):
        try:
            return _utc(datetime.datetime.fromisoformat(value))
        except ValueError:
            return None
    return None


def _session_start(metadata: dict, given=None) -> tuple[datetime.datetime, str]:
    """(session start in UTC, where it came from); the rule is in :func:`write`."""
    if given is not None:
        t = _parse_time(given)
        if t is None:
            raise ReaderOptionError(f"session_start_time={given!r} is not a datetime or ISO 8601 text")
        return t, "option"
    t = _parse_time(metadata.get("session_start_time"))
    if t is not None and t.year > 1970:  # 1970-01-01 is what files without a date carried
        return t, "metadata"
    source = metadata.get("source")
    if isinstance(source, str) and Path(source).is_file():
        mtime = Path(source).stat().st_mtime
        return datetime.datetime.fromtimestamp(mtime, tz=datetime.timezone.utc), "source file modification time"
    return datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0), "time of writing"


def _resolution(rec, given=None) -> tuple[float, str]:
    """(spike-time resolution in s, where it came from): :func:`organoid_sim.si_bridge.spike_time_resolution`."""
    try:
        return spike_time_resolution(rec, given)
    except ValueError as exc:
        raise ReaderOptionError(str(exc)) from None


def _subject(md: dict, options: dict):
    """A pynwb ``Subject`` from the writer options, else the metadata, else documented defaults."""
    from pynwb.file import Subject

    nested = md.get("subject") if isinstance(md.get("subject"), dict) else {}

    def given(key: str):  # option, else metadata["subject"][key], else metadata[key]
        short = "description" if key == "subject_description" else key
        return options[key] if key in options else nested.get(short, md.get(key))

    pick = {k: given(k) for k in SUBJECT_FIELDS}
    simulated = "model" in md or md.get("format") == "synthetic"
    default_id = md.get("well") or ("simulation" if simulated else "culture")
    subject_id = str(pick["subject_id"] or default_id).replace("/", "_")
    description = pick["subject_description"] or (
        f"simulated by organoid_sim ({md.get('model') or md.get('source')}); no biological subject" if simulated
        else "cultured neurons on a multi-electrode array" + (f", well {md['well']}" if md.get("well") else ""))
    return Subject(subject_id=subject_id, species=str(pick["species"] or UNKNOWN_SPECIES),
                   age=str(pick["age"] or UNKNOWN_AGE), sex=str(pick["sex"] or "U"), description=str(description))


def _session_description(md: dict) -> str:
    if md.get("description"):
        return str(md["description"])
    if "model" in md:
        return f"spike trains simulated by organoid_sim {md['model']}"
    parts = ["MEA spike recording"]
    if md.get("well"):
        parts.append(f"well {md['well']}")
    if md.get("source"):
        parts.append(f"from {Path(str(md['source'])).name}")
    return ", ".join(parts)


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


def _add_units(nwbfile, rec, rows: dict, resolution: tuple[float, str]) -> None:
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
    nwbfile.units = Units(name="units", description=f"units recorded on the MEA (spike times in s; resolution "
                          f"{resolution[0]:g} s from the {resolution[1]})",
                          id=ElementIdentifiers(name="id", data=ids), columns=columns, resolution=resolution[0],
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


def write(rec, path, *, session_description: str | None = None, session_start_time=None,
          identifier: str | None = None, resolution: float | None = None, subject_id: str | None = None,
          species: str | None = None, age: str | None = None, sex: str | None = None,
          subject_description: str | None = None, **options) -> None:
    """Write a :class:`SpikeRecording` to an NWB file with pynwb (atomic: temp file + rename).

    Spike times and the window are in seconds, positions in um, stimulation amplitudes in
    ``rec.stim.amplitude_unit``. The file passes ``pynwb.validate`` and nwbinspector reports no
    CRITICAL or BEST_PRACTICE_VIOLATION message.

    Parameters
    ----------
    rec : SpikeRecording
        The recording.
    path : str or Path
        Output ``.nwb`` file.
    session_description, identifier : str, optional
        NWB file fields; default ``metadata["description"]`` (else built from the well, source
        file or model) and ``metadata["identifier"]`` (else a new UUID).
    session_start_time : datetime or ISO 8601 str, optional
        Start of the session (naive times are taken as UTC). Default, in this order: the
        metadata's ``session_start_time`` (readers fill it from the file), the modification time
        of ``metadata["source"]`` when that file exists, else the time of writing (UTC).
    resolution : float, optional
        ``Units.resolution``, the smallest possible difference between spike times in **s**.
        Default: ``1 / sampling_rate``, else ``metadata["time_resolution_s"]``, else the
        simulation step ``metadata["dt_ms"] / 1000``, else ``DEFAULT_RESOLUTION_S`` (1 us).
    subject_id, species, age, sex, subject_description : str, optional
        The NWB ``Subject``. Default: the same keys in ``metadata`` (or ``metadata["subject"]``),
        else ``subject_id`` = the well (or ``"culture"``/``"simulation"``), ``species`` = the NCBI
        taxonomy root ``UNKNOWN_SPECIES`` (organism unknown; give e.g. ``"Rattus norvegicus"``),
        ``age`` = ``"P0D/"`` (ISO 8601 open range: unknown), ``sex`` = ``"U"`` (unknown).

    Returns
    -------
    None
        The file is written; where the start time and resolution came from is kept in the
        ``/scratch/organoid_sim`` JSON (``session_start_time_source``, ``resolution_source``).
    """
    from pynwb import NWBHDF5IO, NWBFile

    if options:
        raise ReaderOptionError(f"unexpected options for the NWB writer: {sorted(options)}")
    md = rec.metadata
    start, start_source = _session_start(md, session_start_time)
    res = _resolution(rec, resolution)
    subject = _subject(md, {k: v for k, v in dict(subject_id=subject_id, species=species, age=age, sex=sex,
                                                  subject_description=subject_description).items() if v is not None})
    nwbfile = NWBFile(session_description=session_description or _session_description(md),
                      identifier=str(identifier or md.get("identifier") or uuid.uuid4()),
                      session_start_time=start, subject=subject)
    rows = _add_electrodes(nwbfile, rec)
    _add_units(nwbfile, rec, rows, res)
    _add_stim(nwbfile, rec.stim)
    extra = {"t_start": rec.t_start, "t_stop": rec.t_stop, "sampling_rate": rec.sampling_rate,
             "unit_id_kind": rec.unit_ids.dtype.kind, "amplitude_unit": rec.stim.amplitude_unit,
             "session_start_time_source": start_source, "resolution_source": res[1], "metadata": md}
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


def _channel_names(path, f, n_rows: int) -> np.ndarray | None:
    """The electrodes table's ``channel_name`` column (SpikeInterface/neuroconv files), or None."""
    names = h5_read(path, f, f"{ELECTRODES}/channel_name", kinds="SUOiu", ndim=1, optional=True)
    if names is None or len(names) != n_rows:
        return None
    return decode_strings(names) if names.dtype.kind in "SUO" else names.astype(str)


def _main_channels(path, f, n: int, table_ids: np.ndarray) -> np.ndarray | None:
    """Electrode id of each unit from a ``main_channel_id`` column (a channel name or electrode id)."""
    col = "units/main_channel_id"
    values = h5_read(path, f, col, kinds="SUOiu", ndim=1, optional=True)
    if values is None:
        return None
    if len(values) != n:
        raise RecordingFormatError(path, col, f"has {len(values)} rows for {n} units")
    values = decode_strings(values) if values.dtype.kind in "SUO" else values.astype(str)
    lookup = {str(e): e for e in table_ids.tolist()}  # electrode ids as text
    names = _channel_names(path, f, len(table_ids))
    if names is not None:
        lookup.update({name: e for name, e in zip(names.tolist(), table_ids.tolist())})  # names win
    missing = sorted(set(values.tolist()) - set(lookup))
    if missing:
        raise RecordingFormatError(path, col, f"names channels that are not in the electrodes table: {missing[:5]}")
    return np.array([lookup[v] for v in values.tolist()], dtype=np.int64)


def _unit_electrodes(path, f, n: int, table_ids: np.ndarray) -> np.ndarray:
    """Electrode id of each unit: its ``main_channel_id`` when the file has that column, else the
    first electrode of its ``electrodes`` row (-1 when none)."""
    out = np.full(n, -1, np.int64)
    main = _main_channels(path, f, n, table_ids)
    if main is not None:
        return main
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


def _merge_intervals(iv: np.ndarray) -> np.ndarray:
    """Union of ``(K, 2)`` intervals as sorted, disjoint ``(M, 2)`` intervals."""
    iv = iv[np.argsort(iv[:, 0], kind="stable")]
    out = [list(iv[0])]
    for a, b in iv[1:].tolist():
        if a <= out[-1][1]:
            out[-1][1] = max(out[-1][1], b)
        else:
            out.append([a, b])
    return np.array(out, dtype=np.float64)


def _obs_intervals(path, f) -> np.ndarray | None:
    """The union of every unit's ``obs_intervals`` (s), or None when the file has none."""
    if "units/obs_intervals" not in f:
        return None
    iv = h5_read(path, f, "units/obs_intervals", kinds="fiu")
    if iv.ndim != 2 or iv.shape[1:] != (2,):
        raise RecordingFormatError(path, "units/obs_intervals", f"has shape {iv.shape}, expected (K, 2)")
    if not len(iv):
        return None
    if not np.all(np.isfinite(iv)) or np.any(iv[:, 1] < iv[:, 0]):
        raise RecordingFormatError(path, "units/obs_intervals", "has intervals that are not finite or end "
                                   "before they start")
    return _merge_intervals(iv.astype(np.float64))


def _window(path, times: np.ndarray, scratch: dict, observed: np.ndarray | None) -> tuple[float, float]:
    if "t_start" in scratch and "t_stop" in scratch:
        return float(scratch["t_start"]), float(scratch["t_stop"])
    if observed is not None:
        return float(min(observed[0, 0], times.min(initial=np.inf))), float(
            max(observed[-1, 1], times.max(initial=-np.inf)))
    return min(0.0, times.min(initial=0.0)), float(times.max()) if len(times) else 0.0


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


def _stim_table(path, f, g: str, e_ids: np.ndarray, unit: str, amplitude: str = "amplitude") -> dict:
    """One ``/intervals`` table's columns (electrode regions mapped to electrode ids; times in s as stored,
    possibly before 0 s, which ``StimEvents`` cannot hold: :func:`_stim_tables` shifts them)."""
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
    return {**cols, "table": g, "unit": unit}


def _stim_tables(path, f, e_ids: np.ndarray, scratch: dict, t_start: float = 0.0):
    """Stimulation events from every ``/intervals/*`` table with electrode and amplitude columns, and the
    offset (s, <= 0) subtracted from their times: the earliest of 0, ``t_start`` and the first onset, so
    a file with times before 0 s is shifted as a whole (see :func:`_shift_to_zero`)."""
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
    offset = float(min([0.0, t_start] + [c["start_time"].min(initial=0.0) for c in tables]))
    if not tables:
        return StimEvents.empty(unit), offset
    events = [build(path, c["table"], StimEvents.from_columns, c["start_time"] - offset, c["electrode"],
                    c["amplitude"], c["phase_us"], c["n_phases"], amplitude_unit=c["unit"]) for c in tables]
    merged = build(path, "intervals", StimEvents.concat, events)
    return merged.take(np.argsort(merged.time, kind="stable")), offset


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


def _no_rows(path, f) -> bool:
    """True for a Units table without rows and without a spike_times column (pynwb then writes only
    an empty ``id``): a valid file in which sorting found no units."""
    if "units/spike_times" in f:
        return False
    ids = h5_read(path, f, "units/id", ndim=1, optional=True)
    return ids is not None and len(ids) == 0


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


class ObservationGapWarning(UserWarning):
    """An NWB file's ``obs_intervals`` leave gaps: rates over the whole window count them as silence."""


def _sampling_rate(path, f, scratch: dict) -> float | None:
    """Sampling rate (Hz): ours from the scratch data, else ``1 / Units.resolution`` when positive."""
    from ._util import h5_attr

    if scratch:
        return scratch.get("sampling_rate")
    if "units/spike_times" not in f:
        return None
    res = h5_attr(path, f["units/spike_times"], "resolution", -1.0)
    try:
        res = float(res)
    except (TypeError, ValueError):
        raise RecordingFormatError(path, "units/spike_times@resolution", f"is not a number: {res!r}") from None
    return float(f"{1.0 / res:.9g}") if np.isfinite(res) and res > 0 else None


def _warn_gaps(path, observed: np.ndarray | None, t_start: float, t_stop: float) -> None:
    if observed is None:
        return
    covered = float(np.sum(observed[:, 1] - observed[:, 0]))
    gap = (t_stop - t_start) - covered
    if len(observed) > 1 and gap > 0:
        import warnings

        spans = ", ".join(f"[{a:g}, {b:g}]" for a, b in observed[:5].tolist())
        warnings.warn(f"{path}: units/obs_intervals cover {covered:g} s of the {t_stop - t_start:g} s window "
                      f"({spans}{', ...' if len(observed) > 5 else ''}); the {gap:g} s of gaps count as silence in "
                      f"rates over the whole window. The intervals are in metadata['obs_intervals']; use "
                      f"rec.time_slice(a, b) for one observed part.", ObservationGapWarning, stacklevel=3)


def _shift_to_zero(path, offset, times, t_start, t_stop, observed):
    """Move a foreign file that starts before 0 s (NWB allows times before session start) by ``offset``
    (s, from :func:`_stim_tables`, which has already moved the pulses) so that its window starts at 0 s."""
    import warnings

    if offset >= 0:
        return times, t_start, t_stop, observed
    warnings.warn(f"{path}: times start at {offset:g} s (before session_start_time); every time is shifted by "
                  f"{-offset:g} s so the window starts at 0 s (metadata['time_offset_s'] = {offset:g}: add it "
                  f"to get the file's times back)", UserWarning, stacklevel=3)
    observed = None if observed is None else observed - offset
    # the window starts at 0 s even when the earliest time is a pulse before the first spike/observation
    return times - offset, 0.0, t_stop - offset, observed


def read(path, progress=None, sort: bool = False, **options):
    """Load the ``/units`` table of an NWB file as a :class:`SpikeRecording` (times in s, um).

    Parameters
    ----------
    path : str or Path
        The NWB file.
    progress : bool, optional
        Show a tqdm bar (None: only for large files).
    sort : bool
        Sort spike times within each unit (NWB does not require sorted times; by default
        unsorted times raise :class:`RecordingFormatError`).

    Returns
    -------
    SpikeRecording
        For a file written elsewhere: a unit's electrode is its ``main_channel_id`` (matched to
        the electrodes table's ``channel_name``, else its id) when that column exists, else the
        first electrode of its ``electrodes`` row; the sampling rate is ``1 / Units.resolution``;
        several ``obs_intervals`` are kept merged in ``metadata["obs_intervals"]`` and gaps raise
        an :class:`ObservationGapWarning`; times before 0 s are shifted (with a warning) so the
        window starts at 0, the shift kept in ``metadata["time_offset_s"]``. A file without a
        ``/units`` table raises :class:`RecordingFormatError`.
    """
    from ..recording import Electrodes, SpikeRecording

    if options:
        raise ReaderOptionError(f"unexpected options for the NWB reader: {sorted(options)}")
    with open_h5(path) as f:
        scratch = _scratch(path, f)
        if "units" not in f and not scratch:  # ours always has scratch data, even with no units
            raise RecordingFormatError(path, "units", "the file has no Units table (no spike times to load; "
                                       "raw voltage NWB files need spike sorting first)")
        with progress_bar(progress, dataset_size(f, "units/spike_times"), f"reading {Path(path).name}") as bar:
            if "units" in f and not _no_rows(path, f):
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
        observed = None if scratch else _obs_intervals(path, f)
        t_start, t_stop = _window(path, times, scratch, observed)
        # our own files never hold times before 0 s: only a foreign file's offset can be non-zero
        stim, offset = _stim_tables(path, f, e_ids, scratch, t_start)
        session = _session_fields(path, f)
        fs = _sampling_rate(path, f, scratch)
    if sort and len(times):
        unit_of = np.repeat(np.arange(n), np.diff(offsets))
        times = times[np.lexsort((times, unit_of))]
    # Our own files carry the recording's metadata verbatim (so load(save(r)) == r); others get
    # the provenance fields every reader writes.
    if "metadata" not in scratch:
        metadata = {"source": str(path), "format": FORMAT, **session}
        times, t_start, t_stop, observed = _shift_to_zero(path, offset, times, t_start, t_stop, observed)
        if offset:
            metadata["time_offset_s"] = offset
        if observed is not None:
            metadata["obs_intervals"] = observed.tolist()
        _warn_gaps(path, observed, t_start, t_stop)
    else:
        metadata = scratch["metadata"]
    layout = build(path, ELECTRODES, Electrodes, e_ids[in_layout], ex[in_layout], ey[in_layout])
    if positions is None:
        positions = build(path, ELECTRODES, Electrodes, e_ids, ex, ey).position_of(electrode_ids)
    return build(path, "units/spike_times", SpikeRecording, times, offsets, t_start=t_start, t_stop=t_stop,
                 unit_ids=unit_ids, electrode_ids=electrode_ids, positions=positions, electrodes=layout,
                 sampling_rate=fs, stim=stim, metadata=metadata)
