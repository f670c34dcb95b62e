"""Axion AxIS / AxIS Navigator "spike list" CSV exports (plain or ``.gz``).

Layout (recognised from the first line, whatever the file is called)::

    Investigator,,Time (s),Electrode,Amplitude(mV)
    Experiment ID,,0.01048,D3_31,0.093034242
    Maestro Settings,,0.01648,E7_34,0.050944361
       Sampling Frequency,12500 Hz,0.01992,D3_21,0.199699533
       Plate Type,Maestro 48-Well (Transparent),0.02288,D2_13,0.077045348
    ,,0.02952,D3_43,0.0547249

Columns 3-5 hold one spike per row: time in s, electrode ``<well>_<column><row>`` (``E6_41`` is
well E6, electrode column 4, row 1) and amplitude in mV. Columns 1-2 of the leading rows hold the
recording's settings as key/value pairs; a key without a value opens a section (``Maestro
Settings``) and the indented keys below it belong to it. A row whose first cell is ``Well
Information`` (the table some AxIS versions append) ends the spike list.

One well is one culture: ``load(path, well="D3")`` returns that well's electrodes as units (unit
ids ``"D3_31"``, electrode ids the column/row digits ``31``, as the Axion HDF5 reader); a file with
several wells needs ``well=`` (the error lists them, :func:`list_wells` too) or ``well="all"``
(the whole plate as one recording, electrode ids ``well_index * 100 + column/row``, metadata
``wells`` listing them: :func:`organoid_sim.stats.describe` refuses such a recording).

Metadata: ``sampling_rate`` from ``Sampling Frequency``; ``axion_settings`` (every key/value, by
section); ``plate``; ``session_start_time`` from ``Experiment Start Time`` (else ``Original File
Time``; the instrument's local time, taken as UTC); ``amplitude_mV_median`` per unit. The
amplitudes of every spike come from :func:`read_amplitudes` (aligned with the loaded
recording's ``times``). The window is ``[0, last spike of the plate]`` (the plate shares one clock).

Electrode positions (um, within the well: ``x = (column - 1) * pitch``, ``y = (row - 1) * pitch``)
use the pitch of the plate type (:data:`PLATE_PITCH_UM`, matched by the well count in the plate
name; ``pitch_um=`` overrides it, and an unknown plate leaves positions NaN):

==========  ===========  ======  ===============================================================
plate       electrodes   pitch   source
==========  ===========  ======  ===============================================================
6-well      8 x 8        300 um  Axion CytoView MEA 6 product sheet
12-well     8 x 8        200 um  Axion classic 12-well plate M768-GL1-30Pt200 (30 um Pt, 200 um)
24-well     4 x 4        300 um  Axion CytoView MEA 24 product sheet
48-well     4 x 4        350 um  Axion CytoView/Classic MEA 48 product sheet (M768-tMEA-48)
96-well     3 x 3 (8)    350 um  Axion CytoView MEA 96 product sheet
==========  ===========  ======  ===============================================================

The electrode grids per plate type are those of Axion's ``PlateTypes.m`` (AxIS MATLAB files).
"""

from __future__ import annotations

import csv
import datetime
import gzip
import io
import os
import re
import zlib
from array import array
from pathlib import Path

import numpy as np

from ._util import build, progress_bar
from .errors import ReaderOptionError, RecordingFormatError

FORMAT = "axion_csv"
DESCRIPTION = "Axion AxIS spike-list CSV (Investigator,,Time (s),Electrode,Amplitude(mV)); .gz too"
GZIP_MAGIC = b"\x1f\x8b"
HEADER = ("time (s)", "electrode", "amplitude(mv)")
FOOTER = "well information"
ELECTRODE = re.compile(r"^([A-Za-z]+)(\d+)_(\d)(\d)$")
# well count in the plate name -> electrode pitch (um); sources in the module docstring
PLATE_PITCH_UM = {6: 300.0, 12: 200.0, 24: 300.0, 48: 350.0, 96: 350.0}
PROGRESS_BYTES = 64 * 2**20  # a bar for files larger than this (bytes on disk)


def _open_text(path):
    """(text handle, raw file) on the file, decompressing ``.gz`` (judged from the magic bytes); the
    raw file's position (compressed bytes read) drives the progress bar."""
    raw = open(path, "rb")
    magic = raw.read(2)
    raw.seek(0)
    stream = gzip.GzipFile(fileobj=raw, mode="rb") if magic == GZIP_MAGIC else raw
    return io.TextIOWrapper(stream, encoding="utf-8-sig", errors="strict", newline=""), raw


def _is_header(line: str) -> bool:
    cells = [c.strip().lower().replace(" ", "") for c in line.split(",")]
    return len(cells) >= 5 and tuple(cells[2:5]) == tuple(h.replace(" ", "") for h in HEADER)


def sniff(path, head: bytes) -> bool:
    """True when the first line is an Axion spike-list header (plain or gzip-compressed file)."""
    if head.startswith(GZIP_MAGIC):
        try:
            with gzip.open(path, "rb") as fh:
                head = fh.read(512)
        except (OSError, EOFError, gzip.BadGzipFile):
            return False
    try:
        first = head.decode("utf-8-sig").splitlines()[0] if head else ""
    except (UnicodeDecodeError, IndexError):
        return False
    return _is_header(first)


def _rows(path, progress=None):
    """Yield ``(line number, cells)`` of the data rows; file errors become RecordingFormatError."""
    size = os.path.getsize(path)
    show = progress if progress is not None else size > PROGRESS_BYTES
    fh, raw = _open_text(path)
    try:
        with fh, progress_bar(show, size, f"reading {Path(path).name}") as bar:
            bar.unit, bar.unit_scale = "B", True
            reader = csv.reader(fh)
            header = next(reader, None)
            if header is None or not _is_header(",".join(header)):
                raise RecordingFormatError(path, "line 1", f"not an Axion spike-list header: {header!r}")
            done = 0
            for i, cells in enumerate(reader, start=2):
                if not i & 0xFFFF:
                    bar.update(raw.tell() - done)
                    done = raw.tell()
                yield i, cells
    except (UnicodeDecodeError, OSError, EOFError, csv.Error, zlib.error) as exc:
        raise RecordingFormatError(path, None, f"cannot be read as a spike-list CSV (corrupt or truncated?): "
                                   f"{type(exc).__name__}: {exc}") from None


def _bad_row(path, line: int, cells, why: str) -> RecordingFormatError:
    return RecordingFormatError(path, f"line {line}", f"bad spike row {','.join(cells)!r}: {why}")


def _check_row(path, line: int, cells) -> None:
    """Raise the specific error for one spike row (the slow path, only once a column failed)."""
    t, name, amp = (cells + ["", "", "", "", ""])[2:5]
    try:
        value = float(t)
        float(amp) if amp.strip() else None
    except ValueError:
        raise _bad_row(path, line, cells, "the time (s) and amplitude (mV) must be numbers") from None
    if not np.isfinite(value) or value < 0:
        raise _bad_row(path, line, cells, "the time must be a finite number of seconds >= 0")
    if not ELECTRODE.match(name.strip()):
        raise _bad_row(path, line, cells, "the electrode must look like 'E6_41' (well, column digit, row digit)")


def _add_setting(settings: dict, section, key: str, value: str):
    """Store one key/value row; returns the current section (a key without a value opens one)."""
    if not value:
        return settings.setdefault(key.strip(), {})
    if key[:1].isspace() and section is not None:
        section[key.strip()] = value
        return section
    settings[key.strip()] = value
    return None


def _parse(path, progress=None):
    """(times s, electrode names, amplitudes mV, settings) of the whole plate.

    Rows are split by the csv module; the columns are converted by numpy in one go, and only when
    that fails is the first bad row looked for (so the error names its line).
    """
    settings: dict = {}
    section = None
    t_txt, names, a_txt, lines = [], [], [], array("q")
    for line, cells in _rows(path, progress):
        if cells and cells[0]:  # a settings row (only the leading rows have one)
            if cells[0].strip().lower() == FOOTER:
                break
            section = _add_setting(settings, section, cells[0], cells[1].strip() if len(cells) > 1 else "")
        if len(cells) < 3 or not "".join(cells[2:5]).strip():
            continue
        t_txt.append(cells[2])
        names.append(cells[3] if len(cells) > 3 else "")
        a_txt.append(cells[4] if len(cells) > 4 else "")
        lines.append(line)
    try:
        times = np.array(t_txt, dtype=np.float64) if t_txt else np.zeros(0)
        amps = np.array([a if a.strip() else "nan" for a in a_txt], dtype=np.float64) if a_txt else np.zeros(0)
        names = np.char.strip(np.array(names, dtype=str)) if names else np.zeros(0, dtype="<U1")
        bad = ~np.isfinite(times) | (times < 0)
        bad_names = [n for n in np.unique(names).tolist() if not ELECTRODE.match(n)]
        bad |= np.isin(names, bad_names)
        first = int(np.argmax(bad)) if bad.any() else None
    except ValueError:  # a column that numpy cannot convert: find the first offending row
        first = next(k for k in range(len(t_txt)) if not _row_ok(t_txt[k], names[k], a_txt[k]))
    if first is not None:
        _check_row(path, lines[first], _line_cells(path, lines[first]))
    return times, names, amps, settings


def _row_ok(t: str, name: str, amp: str) -> bool:
    try:
        value = float(t)
        float(amp) if amp.strip() else None
    except ValueError:
        return False
    return bool(np.isfinite(value) and value >= 0 and ELECTRODE.match(name.strip()))


def _line_cells(path, line: int) -> list:
    """The cells of one line of the file (to quote it in an error)."""
    for i, cells in _rows(path, False):
        if i == line:
            return cells
    return []


def _setting(settings: dict, key: str):
    """A setting by key, at the top level or in any section."""
    if key in settings and not isinstance(settings[key], dict):
        return settings[key]
    for v in settings.values():
        if isinstance(v, dict) and key in v:
            return v[key]
    return None


def _sampling_rate(path, settings: dict) -> float | None:
    text = _setting(settings, "Sampling Frequency")
    if text is None:
        return None
    m = re.fullmatch(r"\s*([0-9.eE+-]+)\s*(k?)Hz\s*", text)
    if not m:
        raise RecordingFormatError(path, "Sampling Frequency", f"cannot read a rate in Hz from {text!r}")
    return float(m.group(1)) * (1000.0 if m.group(2) else 1.0)


def _start_time(settings: dict) -> str | None:
    for key in ("Experiment Start Time", "Original File Time"):
        text = _setting(settings, key)
        for fmt in ("%m/%d/%y %H:%M", "%m/%d/%Y %H:%M", "%m/%d/%Y %H:%M:%S", "%m/%d/%y %H:%M:%S"):
            try:
                return datetime.datetime.strptime(str(text).strip(), fmt).isoformat()
            except ValueError:
                continue
    return None


def plate_pitch_um(plate: str | None) -> float | None:
    """Electrode pitch (um) of an Axion plate name such as ``"Maestro 48-Well (Transparent)"``, or None."""
    m = re.search(r"(\d+)\s*-?\s*well", plate or "", flags=re.IGNORECASE)
    return PLATE_PITCH_UM.get(int(m.group(1))) if m else None


def _wells(names: np.ndarray) -> list[str]:
    wells = [n.split("_", 1)[0] for n in names.tolist()]
    return sorted(set(wells), key=lambda w: (re.sub(r"\d", "", w), int(re.sub(r"\D", "", w) or 0)))


def list_wells(path) -> list[str]:
    """Wells with at least one spike, sorted (row letter, then column number)."""
    _, names, _, _ = _parse(path)
    return _wells(names)


def _select(path, names: np.ndarray, well: str | None):
    """Boolean mask of the spikes to keep and the wells they come from."""
    available = _wells(names)
    if well is None:
        if len(available) > 1:
            raise RecordingFormatError(path, "Electrode", f"holds {len(available)} wells; choose one with well=... "
                                       f"(or well='all' for the whole plate): {', '.join(available)}")
        return np.ones(len(names), bool), available
    if well == "all":
        return np.ones(len(names), bool), available
    if well not in available:
        raise RecordingFormatError(path, "Electrode", f"well {well!r} has no spikes; wells: {', '.join(available)}")
    return np.char.startswith(names, well + "_"), [well]


def _load(path, well, progress, pitch_um):
    from ..recording import SpikeRecording

    times, names, amps, settings = _parse(path, progress)
    keep, wells = _select(path, names, well)
    t_stop = float(times.max()) if len(times) else 0.0
    times, names, amps = times[keep], names[keep], amps[keep]
    unit_ids, inverse = np.unique(names, return_inverse=True)
    order = np.lexsort((times, inverse))
    plate = _setting(settings, "Plate Type")
    pitch = float(pitch_um) if pitch_um is not None else plate_pitch_um(plate)
    parts = [ELECTRODE.match(u).groups() for u in unit_ids.tolist()]
    col = np.array([int(p[2]) for p in parts], dtype=np.int64)
    row = np.array([int(p[3]) for p in parts], dtype=np.int64)
    well_index = np.array([wells.index(f"{p[0]}{p[1]}") for p in parts], dtype=np.int64)
    electrode_ids = col * 10 + row + (well_index * 100 if well == "all" else 0)
    positions = np.full((len(unit_ids), 2), np.nan)
    if pitch is not None:
        positions = np.stack([(col - 1) * pitch, (row - 1) * pitch], axis=1).astype(np.float64)
        if well == "all":  # wells side by side with a one-pitch gap (plotting layout, not plate geometry)
            positions[:, 0] += well_index * (col.max(initial=0) + 1) * pitch
    counts = np.bincount(inverse, minlength=len(unit_ids))
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    median = [float(np.nanmedian(a)) if len(a) and np.isfinite(a).any() else None
              for a in np.split(amps[order], offsets[1:-1])]
    md = {"source": str(path), "format": FORMAT, "well": None if well == "all" else wells[0] if wells else None,
          "plate": plate, "pitch_um": pitch, "axion_settings": settings, "amplitude_mV_median": median}
    if well == "all":
        md["wells"] = wells
    start = _start_time(settings)
    if start:
        md["session_start_time"] = start
    rec = build(path, "Time (s)", SpikeRecording, times[order], offsets, t_start=0.0, t_stop=t_stop,
                unit_ids=unit_ids, electrode_ids=electrode_ids, positions=positions,
                sampling_rate=_sampling_rate(path, settings), metadata=md)
    return rec, amps[order]


def read(path, well: str | None = None, progress=None, pitch_um: float | None = None, **options):
    """Load one well (or ``well="all"``) of an Axion spike-list CSV as a :class:`SpikeRecording`.

    Parameters
    ----------
    path : str or Path
        The CSV (plain or gzip-compressed).
    well : str, optional
        Well to load (``"D3"``); required when the file holds several wells; ``"all"`` loads the
        whole plate as one recording (metadata ``wells``).
    progress : bool, optional
        Show a tqdm bar (None: only for large files).
    pitch_um : float, optional
        Electrode pitch in um; default from the plate type (module docstring).

    Returns
    -------
    SpikeRecording
        Times in s, positions in um, sampling rate in Hz and settings in metadata.
    """
    if options:
        raise ReaderOptionError(f"unexpected options for the axion_csv reader: {sorted(options)}")
    return _load(path, well, progress, pitch_um)[0]


def read_amplitudes(path, well: str | None = None, pitch_um: float | None = None):
    """The recording :func:`read` returns and the amplitude (mV) of each of its spikes.

    Returns
    -------
    (SpikeRecording, numpy.ndarray)
        The recording and a float64 array aligned with ``recording.times`` (NaN where the file
        gives no amplitude).
    """
    return _load(path, well, None, pitch_um)
