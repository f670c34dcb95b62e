"""Readers and writers: one module per file format, one entry point.

``load(path, well=None, detector=None, recording=None, progress=None, **options)`` looks at the
file's **content** (HDF5 signature and layout, MATLAB header, zip/NPZ keys, CSV header), not only
its extension, and hands it to the right reader; every reader returns one
:class:`~organoid_sim.recording.SpikeRecording` (times in s, positions in um).
``save(recording, path, format=None)`` writes NWB (``.nwb``), our generic HDF5 layout
(``.h5``/``.hdf5``), NPZ (``.npz``) or CSV (``.csv``); writes are atomic.

Formats (name: module):

* ``nwb``: :mod:`.nwb` (pynwb writer, h5py reader)
* ``generic_h5``: :mod:`.generic` (our documented HDF5 layout; NPZ uses the same arrays)
* ``npz``, ``csv``: :mod:`.generic`, :mod:`.csvfile`
* ``maxwell``: :mod:`.maxwell` (MaxOne/MaxTwo ``.raw.h5``, legacy and new layouts)
* ``axion``: :mod:`.axion` (Axion-style per-channel HDF5, one well per recording)
* ``mcs``: :mod:`.mcs` (Multi Channel Systems HDF5 spike time stamps)
* ``meanap``: :mod:`.meanap` (MEA-NAP ``.mat``, MATLAB v5 or v7.3)
* ``cl1``: :mod:`.cl1` (Cortical Labs CL1 / cl-sdk ``neurons.record()`` HDF5)
* ``axion_csv``: :mod:`.axion_csv` (Axion AxIS/Navigator spike-list CSV, ``.gz`` too)
* ``phy``: :mod:`.phy` (phy/Kilosort output folders, through SpikeInterface)

``atomic_path(path)`` (a context manager yielding a temporary path that replaces ``path`` only
on success) is public for other parts that write files.

Errors: :class:`~organoid_sim.io.errors.RecordingFormatError` (a ``ValueError``) naming file,
dataset and problem; :class:`~organoid_sim.io.errors.UnknownFormatError` when no reader fits.
"""

from __future__ import annotations

import importlib
import inspect
import zipfile
import zlib
from pathlib import Path

from ._util import HDF5_SIGNATURE, atomic_path, open_h5, read_head
from .errors import ReaderOptionError, RecordingFormatError, UnknownFormatError

__all__ = ["load", "save", "list_wells", "detect_format", "FORMATS", "RecordingFormatError",
           "UnknownFormatError", "ReaderOptionError", "atomic_path"]

# format name -> module; HDF5 layouts are tried in this order (most specific first).
FORMATS = {"nwb": "nwb", "generic_h5": "generic", "maxwell": "maxwell", "axion": "axion", "mcs": "mcs",
           "meanap": "meanap", "npz": "generic", "csv": "csvfile", "axion_csv": "axion_csv", "phy": "phy",
           "cl1": "cl1"}
HDF5_FORMATS = ("nwb", "generic_h5", "cl1", "maxwell", "axion", "mcs", "meanap")
WRITERS = {".nwb": "nwb", ".h5": "generic_h5", ".hdf5": "generic_h5", ".npz": "npz", ".csv": "csv"}
LOW_LEVEL_ERRORS = (OSError, RuntimeError, KeyError, IndexError, ValueError, EOFError, AttributeError,
                    zlib.error, zipfile.BadZipFile, UnicodeError, OverflowError)


def _module(fmt: str):
    return importlib.import_module(f"{__name__}.{FORMATS[fmt]}")


def known_formats() -> str:
    """One line per format this package reads (for error messages and ``--help``)."""
    return "\n".join(f"  {name}: {getattr(_module(name), 'DESCRIPTION', '')}" for name in FORMATS)


def _check_file(path) -> Path:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    if path.is_dir() and not _module("phy").sniff_dir(path):
        raise RecordingFormatError(path, None, "is a directory, expected a recording file or a phy/Kilosort "
                                   "folder (params.py, spike_times.npy, spike_clusters.npy)")
    return path


def _unknown(path, why: str) -> UnknownFormatError:
    return UnknownFormatError(path, None, f"{why}; formats this package reads:\n{known_formats()}")


def detect_format(path) -> str:
    """Name of the format of ``path`` judged from its content (see :data:`FORMATS`).

    Raises :class:`UnknownFormatError` listing the known formats when no reader fits.
    """
    path = _check_file(path)
    if path.is_dir():
        return "phy"
    head = read_head(path, 1024)
    if head.startswith(HDF5_SIGNATURE) or head[512:520] == HDF5_SIGNATURE:
        with open_h5(path) as f:
            for fmt in HDF5_FORMATS:
                try:
                    found = _module(fmt).sniff_h5(f)
                except LOW_LEVEL_ERRORS as exc:  # a damaged group or attribute while looking
                    raise RecordingFormatError(path, None, f"HDF5 structure cannot be read (corrupt?): "
                                               f"{type(exc).__name__}: {exc}") from None
                if found:
                    return fmt
        raise _unknown(path, "an HDF5 file whose layout matches no known format")
    for fmt in ("meanap", "npz", "axion_csv", "csv"):
        if _module(fmt).sniff(path, head):
            return fmt
    if not head:
        raise RecordingFormatError(path, None, "file is empty")
    raise _unknown(path, "cannot tell the file format from its content")


def load(path, well: str | None = None, detector: str | None = None, recording: str | None = None,
         progress: bool | None = None, format: str | None = None, **options):
    """Load a spike recording file as one :class:`~organoid_sim.recording.SpikeRecording`.

    Parameters
    ----------
    path : the file (format detected from its content unless ``format`` names one of
        :data:`FORMATS`).
    well : well to load from a multi-well file (Axion ``"D1"``, MaxTwo ``"well001"``); see
        :func:`list_wells`.
    detector : spike detector field of an MEA-NAP file (``"thr4"``).
    recording : recording group of a MaxWell new-layout file (``"rec0000"``).
    progress : show a tqdm bar (None: only for large files).
    options : format specific (e.g. ``sort=True`` for NWB, ``pitch_um`` for MEA-NAP,
        ``sampling_rate`` (Hz) and ``first_frame`` for MaxWell, ``stream`` for MCS).

    Times come back in seconds, positions in um. Errors in the file raise
    :class:`RecordingFormatError` naming the file, the dataset and the problem.
    """
    path = _check_file(path)
    fmt = format or detect_format(path)
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; known: {', '.join(FORMATS)}")
    kwargs = {"progress": progress, **options}
    for name, value in (("well", well), ("detector", detector), ("recording", recording)):
        if value is not None:
            kwargs[name] = value
    module = _module(fmt)
    reader = getattr(module, f"read_{fmt}", None) or module.read
    try:
        return reader(path, **kwargs)
    except (RecordingFormatError, FileNotFoundError, KeyboardInterrupt):
        raise
    except ReaderOptionError as exc:
        raise ReaderOptionError(f"{path} ({fmt}): {exc}") from None
    except TypeError as exc:
        if "keyword argument" in str(exc):  # an option the reader's signature does not have
            raise ReaderOptionError(f"{path} ({fmt}): {exc}") from None
        raise RecordingFormatError(path, None, f"cannot be read as {fmt} (corrupt?): {exc}") from None
    except LOW_LEVEL_ERRORS as exc:
        # Safety net: a damaged file can fail deep inside h5py/zlib/scipy in ways the readers'
        # checks do not foresee; the user still gets the file and format, not a library traceback.
        raise RecordingFormatError(path, None, f"cannot be read as {fmt} (corrupt or truncated?): "
                                   f"{type(exc).__name__}: {exc}") from None


def save(recording, path, format: str | None = None, progress: bool | None = None, **options) -> Path:
    """Write ``recording`` to ``path`` atomically; the format comes from the extension or ``format``.

    ``.nwb`` NWB (pynwb), ``.h5``/``.hdf5`` our generic HDF5 layout, ``.npz``, ``.csv``.
    ``load(save(rec, p)) == rec`` for every format. Returns the path written. ``progress``: a tqdm
    bar for writers slow enough to need one (CSV; None: only for large recordings).
    """
    from ..recording import SpikeRecording

    if not isinstance(recording, SpikeRecording):
        raise TypeError(f"save() needs a SpikeRecording, got {type(recording).__name__}")
    path = Path(path)
    if format is None:
        suffix = path.suffix.lower()
        if suffix not in WRITERS:
            raise ValueError(f"{path}: cannot tell the output format from the extension {suffix!r}; use one "
                             f"of {', '.join(WRITERS)} or format=...")
        format = WRITERS[suffix]
    if format not in set(WRITERS.values()):
        raise ValueError(f"no writer for format {format!r}; writers: {', '.join(sorted(set(WRITERS.values())))}")
    module = _module(format)
    writer = getattr(module, f"write_{format}", None) or module.write
    if "progress" in inspect.signature(writer).parameters:
        options = {**options, "progress": progress}
    writer(recording, path, **options)
    return path


def list_wells(path) -> list[str]:
    """Wells of a multi-well file (Axion ``["A1", ...]``, MaxWell ``["well000", ...]``); ``[]`` otherwise."""
    fmt = detect_format(path)
    fn = getattr(_module(fmt), "list_wells", None)
    return list(fn(path)) if fn is not None else []
