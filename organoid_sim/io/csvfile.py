"""CSV of ``(time, unit)`` pairs, one spike per line.

Layout::

    # organoid_sim.spikes {"t_start": 0.0, "t_stop": 10.0, "unit_ids": [...], ...}   (optional)
    time,unit
    0.0123,3
    0.0456,7

``time`` is in seconds; ``unit`` is the unit id (integer or text). Lines may come in any order.
The optional first comment line (written by :func:`write`) carries, as JSON, everything a bare
pair list cannot hold (window, units without spikes, electrodes, positions in um, sampling rate,
stimulation, metadata), so ``load(save(rec, "x.csv")) == rec``; times are written with Python's
shortest round-trip ``repr`` so they come back bit for bit. Other ``#`` lines are ignored; the
column separator may be ``,``, ``;`` or a tab, and the columns may be named ``time``/``t``/
``spike_time`` and ``unit``/``unit_id``/``channel``/``electrode``.

Text unit ids may hold any character: the writer quotes ids with a comma, a quote or a line break
(the :mod:`csv` module's quoting), and the reader splits lines only at ``\n``, ``\r\n`` and
``\r`` outside quoted fields, so such ids come back unchanged.
"""

from __future__ import annotations

import csv as _csv
import io
import json
from pathlib import Path

import numpy as np

from ._util import CHUNK_VALUES, atomic_path, build, progress_bar
from .errors import ReaderOptionError, RecordingFormatError

FORMAT = "csv"
DESCRIPTION = "CSV of (time s, unit) pairs with a header line 'time,unit' (optional '# organoid_sim.spikes {json}')"
MARKER = "# organoid_sim.spikes "
TIME_NAMES = ("time", "t", "spike_time", "spike_times", "time_s", "times")
UNIT_NAMES = ("unit", "unit_id", "units", "channel", "electrode", "cluster", "neuron")


def _header_columns(line: str):
    """(delimiter, time column, unit column) of a header line, or None."""
    for delim in (",", ";", "\t"):
        names = [c.strip().strip('"').lower() for c in line.split(delim)]
        t = next((i for i, c in enumerate(names) if c in TIME_NAMES), None)
        u = next((i for i, c in enumerate(names) if c in UNIT_NAMES), None)
        if len(names) >= 2 and t is not None and u is not None:
            return delim, t, u
    return None


def sniff(path, head: bytes) -> bool:
    """True for a text file whose first non-comment line names a time and a unit column."""
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return False
    for line in text.splitlines():
        if line.startswith(MARKER):
            return True
        if line.strip() and not line.startswith("#"):
            return _header_columns(line) is not None
    return False


def _read_lines(path) -> list[str]:
    """The file's lines with their line ends (split at ``\n``, ``\r\n``, ``\r`` only, as CSV does)."""
    try:
        with open(path, encoding="utf-8", newline="") as fh:
            return list(io.StringIO(fh.read(), newline=""))
    except UnicodeDecodeError as exc:
        raise RecordingFormatError(path, None, f"not a UTF-8 text file: {exc}") from None


def _records(lines: list[str], first: int):
    """``(line number, record text)`` of the data lines, a quoted field's line breaks kept inside
    its record; blank and ``#`` lines outside a quoted field are skipped. ``first``: 0-based index."""
    record, start = "", 0
    for i in range(first, len(lines)):
        ln = lines[i]
        if not record:
            if not ln.strip() or ln.startswith("#"):
                continue
            start = i + 1
        record += ln
        if record.count('"') % 2 == 0:  # outside a quoted field: the record ends with this line
            yield start, record
            record = ""
    if record:
        yield start, record


def _header(path, lines) -> dict:
    if lines and lines[0].startswith(MARKER):
        try:
            value = json.loads(lines[0][len(MARKER):])
        except ValueError as exc:
            raise RecordingFormatError(path, "line 1", f"header JSON is invalid: {exc}") from None
        if not isinstance(value, dict):
            raise RecordingFormatError(path, "line 1", "header JSON must be an object")
        return value
    return {}


def _pairs(path, lines, text_ids: bool = False, progress=None):
    """(times s, unit ids) from the lines after the header; bad lines are named by number."""
    hdr = next((i for i, ln in enumerate(lines) if ln.strip() and not ln.startswith("#")), None)
    if hdr is None:
        raise RecordingFormatError(path, None, "no 'time,unit' header line")
    cols = _header_columns(lines[hdr].rstrip("\r\n"))
    if cols is None:
        raise RecordingFormatError(path, f"line {hdr + 1}",
                                   f"header {lines[hdr].rstrip(chr(13) + chr(10))!r} names no time and unit columns")
    delim, ti, ui = cols
    data = lines[hdr + 1:]  # with their line ends, which numpy's parser takes
    if not any(ln.strip() and not ln.startswith("#") for ln in data):  # stops at the first spike line
        return np.zeros(0), np.zeros(0, np.int64)  # a header and no spikes
    try:  # fast path for numeric units: numpy's C parser; the loop below handles text ids and errors
        if text_ids:
            raise ValueError("text unit ids")  # "007" must stay "007"
        kw = dict(delimiter=delim, ndmin=1, quotechar='"', comments="#")
        step = CHUNK_VALUES // 4  # lines per parse: a few seconds of work between bar updates
        parts_t, parts_u = [], []
        with progress_bar(progress, len(data), f"reading {Path(path).name}") as bar:
            for lo in range(0, len(data), step):
                chunk = [ln for ln in data[lo:lo + step] if ln.strip() and not ln.startswith("#")]
                if chunk:
                    parts_t.append(np.loadtxt(chunk, dtype=np.float64, usecols=(ti,), **kw))
                    parts_u.append(np.loadtxt(chunk, dtype=np.int64, usecols=(ui,), **kw))
                bar.update(min(step, len(data) - lo))
        return np.concatenate(parts_t), np.concatenate(parts_u)
    except (ValueError, IndexError):
        pass
    body = list(_records(lines, hdr + 1))
    rows = [next(_csv.reader([text], delimiter=delim), []) for _, text in body]
    times, units = np.empty(len(rows)), []
    for k, row in enumerate(rows):
        try:
            times[k] = float(row[ti])
            units.append(row[ui] if text_ids else row[ui].strip())  # our text ids are written exactly
        except (ValueError, IndexError):
            raise RecordingFormatError(path, f"line {body[k][0]}", f"cannot read a (time, unit) pair from "
                                       f"{body[k][1].rstrip(chr(13) + chr(10))!r}") from None
    units = np.array(units, dtype=str) if units else np.zeros(0, dtype="<U1")
    return times, units


def _as_ids(path, units: np.ndarray, kind: str | None) -> np.ndarray:
    """Unit ids as int64 when they are integers (unless the header says text), else text."""
    if kind == "U":
        return units.astype(str)
    if units.dtype.kind in "iu":
        return units.astype(np.int64)
    try:
        return units.astype(np.int64) if len(units) else np.zeros(0, np.int64)
    except ValueError:
        if kind in ("i", "u"):
            raise RecordingFormatError(path, "unit", "unit ids are not integers") from None
        return units


def read(path, progress=None, **options):
    """Load a CSV of (time s, unit) pairs (module docstring) as a :class:`SpikeRecording`."""
    from ..events import StimEvents
    from ..recording import Electrodes, SpikeRecording

    if options:
        raise ReaderOptionError(f"unexpected options for the CSV reader: {sorted(options)}")
    lines = _read_lines(path)
    head = _header(path, lines)
    kind = head.get("unit_id_kind")
    times, units = _pairs(path, lines, text_ids=kind == "U", progress=progress)
    units = _as_ids(path, units, kind)
    kw = {"metadata": head.get("metadata", {"source": str(path), "format": FORMAT})}
    if "unit_ids" in head:
        ids = np.array(head["unit_ids"], dtype=str if kind == "U" else np.int64)
        kw["unit_ids"] = ids if len(ids) else ids.astype(units.dtype)
    for key in ("t_start", "t_stop", "sampling_rate"):
        if head.get(key) is not None:
            kw[key] = float(head[key])
    if "electrode_ids" in head:
        kw["electrode_ids"] = np.array(head["electrode_ids"], dtype=np.int64)
        kw["positions"] = np.array(head["positions"], dtype=np.float64).reshape(-1, 2)
    if "electrodes" in head:
        e = head["electrodes"]
        kw["electrodes"] = build(path, "line 1", Electrodes, np.array(e["ids"], np.int64), e["x"], e["y"])
    if "stim" in head:
        kw["stim"] = build(path, "line 1", StimEvents.from_dict, head["stim"])
    return build(path, "time,unit", SpikeRecording.from_pairs, times, units, **kw)


def _unit_field(uid) -> str:
    """A unit id as one CSV field: quoted by the csv module when it holds a comma, a quote, ``\r`` or
    ``\n`` (a writer whose line end is ``\r\n`` quotes both; ``\n`` alone would leave ``\r`` bare)."""
    out = io.StringIO()
    _csv.writer(out, lineterminator="\r\n").writerow([uid])
    return out.getvalue()[:-2]


def write(rec, path, progress=None, **options) -> None:
    """Write ``(time s, unit)`` pairs, unit after unit, with the JSON header line (atomic).

    ``progress``: a tqdm bar of the spikes written (None: only above ``CHUNK_VALUES`` spikes)."""
    if options:
        raise ReaderOptionError(f"unexpected options for the CSV writer: {sorted(options)}")
    head = {"t_start": rec.t_start, "t_stop": rec.t_stop, "sampling_rate": rec.sampling_rate,
            "unit_id_kind": rec.unit_ids.dtype.kind, "unit_ids": rec.unit_ids.tolist(),
            "electrode_ids": rec.electrode_ids.tolist(), "positions": rec.positions.tolist(),
            "electrodes": {"ids": rec.electrodes.ids.tolist(), "x": rec.electrodes.x.tolist(),
                           "y": rec.electrodes.y.tolist()},
            "stim": rec.stim.to_dict(), "metadata": rec.metadata}
    buf = io.StringIO()
    buf.write(MARKER + json.dumps(head) + "\ntime,unit\n")
    fields = [_unit_field(u) for u in rec.unit_ids.tolist()]  # each id quoted once, as CSV needs it
    step = CHUNK_VALUES // 4
    with progress_bar(progress, rec.n_spikes, f"writing {Path(path).name}") as bar:
        for lo in range(0, rec.n_spikes, step):
            hi = min(lo + step, rec.n_spikes)
            ids = [fields[i] for i in rec.unit_index[lo:hi].tolist()]
            buf.writelines(f"{t},{u}\n" for t, u in zip(map(repr, rec.times[lo:hi].tolist()), ids))
            bar.update(hi - lo)
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8", newline="") as fh:
            fh.write(buf.getvalue())
