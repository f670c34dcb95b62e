"""Axion-style per-channel HDF5 files (as produced by the ``meaRtools``/``sjemea`` tools).

Layout (all at the root of the file)::

    /spikes    float64 (S,)  spike times in seconds, channel after channel
    /sCount    int    (C,)   number of spikes of each channel (cumulative sum gives offsets)
    /names     bytes  (C,)   channel names like b"D1_34": well "D1", electrode column 3, row 4
    /channels  bytes  (C,)   same names (older files may have only one of names/channels)
    /epos      float64 (2, C) electrode x, y in um (plate coordinates; optional: NaN without it)
    /well      bytes  (W,)   all wells of the plate (optional), plus /treatment, /dose, /units, /size
    /array     bytes  (1,)   plate name, e.g. b"Axion 48 well" (optional)

One well is one culture, hence one :class:`SpikeRecording`: choose it with ``well="D1"``.
Units are the channels of that well: unit ids are the channel names (``"D1_34"``), electrode ids the
integer formed by the column and row digits (``34``), positions the ``/epos`` coordinates in um.
The recording window is ``[0, last spike of the plate]`` (files store no start/stop).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .errors import ReaderOptionError, RecordingFormatError
from ._util import build, dataset_size, decode_strings, h5_read, open_h5, progress_bar

FORMAT = "axion"
DESCRIPTION = "Axion-style per-channel HDF5 (/spikes, /sCount, /names, /epos; one well per recording)"
def sniff_h5(f) -> bool:
    """True if an open HDF5 file has the Axion per-channel layout (``/sCount`` or ``/spikes`` with
    channel names; the reader then names whatever else is missing)."""
    named = "names" in f or "channels" in f
    return ("sCount" in f and (named or "spikes" in f)) or ("spikes" in f and named and "epos" in f)


def _channel_names(path, f) -> np.ndarray:
    key = "names" if "names" in f else "channels"
    names = h5_read(path, f, key, kinds="SUO", ndim=1)
    return decode_strings(names)


def _wells_of(names: np.ndarray) -> np.ndarray:
    return np.array([n.split("_", 1)[0] for n in names.tolist()], dtype=str)


def list_wells(path) -> list[str]:
    """Wells that have at least one channel in the file, in file order (e.g. ``["A1", "A2", ...]``)."""
    with open_h5(path) as f:
        if not sniff_h5(f):
            raise RecordingFormatError(path, None, "not an Axion-style per-channel HDF5 file")
        wells = _wells_of(_channel_names(path, f))
    _, first = np.unique(wells, return_index=True)
    return wells[np.sort(first)].tolist()


def _electrode_ids(path, names: np.ndarray) -> np.ndarray:
    ids = []
    for n in names.tolist():
        digits = n.split("_", 1)[1] if "_" in n else ""
        if not digits.isdigit():
            raise RecordingFormatError(path, "names", f"channel name {n!r} does not end in electrode digits")
        ids.append(int(digits))
    return np.array(ids, dtype=np.int64)


def read(path, well: str | None = None, progress=None, **options):
    """Load one well of an Axion-style file as a :class:`SpikeRecording` (times in s, positions in um).

    ``well`` (e.g. ``"D1"``) is required when the file holds more than one well; the error lists them.
    """
    from ..recording import SpikeRecording

    if options:
        raise ReaderOptionError(f"unexpected options for the axion reader: {sorted(options)}")
    with open_h5(path) as f:
        names = _channel_names(path, f)
        counts = h5_read(path, f, "sCount", kinds="iuf", ndim=1)
        epos = h5_read(path, f, "epos", kinds="fiu", ndim=2, optional=True)
        with progress_bar(progress, dataset_size(f, "spikes"), f"reading {Path(path).name}") as bar:
            spikes = h5_read(path, f, "spikes", kinds="fiu", ndim=1, bar=bar)
        plate = decode_strings(f["array"][()]).ravel().tolist() if "array" in f else []
    n = len(names)
    if len(counts) != n:
        raise RecordingFormatError(path, "sCount", f"has {len(counts)} entries but there are {n} channel names")
    if counts.dtype.kind == "f" and np.any(counts != np.round(counts)):
        raise RecordingFormatError(path, "sCount", "spike counts are not whole numbers")
    counts = counts.astype(np.int64)
    if np.any(counts < 0):
        raise RecordingFormatError(path, "sCount", "negative spike counts")
    if counts.sum() != len(spikes):
        raise RecordingFormatError(path, "sCount", f"counts sum to {counts.sum()} but /spikes has {len(spikes)} values")
    if epos is None:  # positions are optional: unknown (NaN) without /epos
        epos = np.full((2, n), np.nan)
    if epos.shape == (n, 2) and n != 2:
        epos = epos.T
    if epos.shape != (2, n):
        raise RecordingFormatError(path, "epos", f"has shape {epos.shape}, expected (2, {n})")
    offsets = np.concatenate([[0], np.cumsum(counts)])
    wells = _wells_of(names)
    available = list(dict.fromkeys(wells.tolist()))
    if well is None:
        if len(available) > 1:
            raise RecordingFormatError(path, "names", f"holds {len(available)} wells; choose one with "
                                       f"well=...: {', '.join(available)}")
        well = available[0] if available else None
    sel = np.flatnonzero(wells == well) if well is not None else np.zeros(0, np.int64)
    if well is not None and not len(sel):
        raise RecordingFormatError(path, "names", f"well {well!r} not found; wells: {', '.join(available)}")
    lengths = counts[sel]
    new_offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    gather = np.repeat(offsets[sel] - new_offsets[:-1], lengths) + np.arange(new_offsets[-1])
    times = np.asarray(spikes, dtype=np.float64)[gather]
    # The plate shares one clock: the window ends at the plate's last spike, not this well's.
    t_stop = float(np.max(spikes)) if len(spikes) else 0.0
    metadata = {"source": str(path), "format": FORMAT, "well": well, "plate": plate[0] if plate else None}
    return build(path, "spikes", SpikeRecording, times, new_offsets, t_start=0.0, t_stop=t_stop,
                 unit_ids=names[sel], electrode_ids=_electrode_ids(path, names[sel]),
                 positions=epos[:, sel].T.astype(np.float64), metadata=metadata)
