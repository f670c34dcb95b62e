"""Phy / Kilosort output folders, read through SpikeInterface's extractors (``interop`` extra).

A folder is recognised from its content: ``params.py`` plus ``spike_times.npy`` and
``spike_clusters.npy`` or ``spike_templates.npy`` (what Kilosort 1-4 and phy write).
``load(folder)`` reads it with :func:`spikeinterface.extractors.read_phy` (or ``read_kilosort``
with ``keep_good_only=True``) and returns one :class:`SpikeRecording`:

* units: the clusters (unit ids = cluster ids), ``exclude_cluster_groups=["noise"]`` drops phy
  groups; times = spike samples / ``sample_rate`` of ``params.py`` (s); sampling rate kept;
* electrodes: ``channel_map.npy`` (the raw-data channel numbers) with ``channel_positions.npy``
  (um); a unit's electrode is its ``ch`` column of ``cluster_info.tsv`` (phy's best channel), else
  the channel where the unit's most frequent template has its largest peak-to-peak amplitude;
* window: ``[0, duration of the raw .dat file]`` when ``dat_path`` in ``params.py`` points to a
  file that exists, else ``[0, last spike]``.

``params.py`` is Python, and SpikeInterface runs it with ``exec``. Before that happens this reader
parses it with :mod:`ast` and accepts only ``name = literal`` lines (numbers, text, lists,
``True``/``False``/``None``); anything else (a call, an import, an expression) is refused with a
:class:`RecordingFormatError` naming the line, so no code from the folder is executed.
"""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np

from ._util import build
from .errors import ReaderOptionError, RecordingFormatError

FORMAT = "phy"
DESCRIPTION = "phy / Kilosort output folder (params.py, spike_times.npy, spike_clusters.npy; needs spikeinterface)"


def sniff_dir(path) -> bool:
    """True for a folder holding ``params.py`` and ``spike_times.npy`` with cluster or template labels."""
    path = Path(path)
    return (path.is_dir() and (path / "params.py").is_file() and (path / "spike_times.npy").is_file()
            and ((path / "spike_clusters.npy").is_file() or (path / "spike_templates.npy").is_file()))


def read_params(folder) -> dict:
    """The assignments of ``params.py`` as a dict (names lower-cased), parsed without executing it.

    Raises :class:`RecordingFormatError` naming the line of anything but ``name = literal``.
    """
    path = Path(folder) / "params.py"
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    except (SyntaxError, UnicodeDecodeError, ValueError) as exc:
        raise RecordingFormatError(path, None, f"is not readable Python: {exc}") from None
    out = {}
    for node in tree.body:
        ok = isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name)
        try:
            value = ast.literal_eval(node.value) if ok else None
        except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
            ok = False
        if not ok:
            raise RecordingFormatError(path, f"line {node.lineno}", "only 'name = literal' assignments are accepted "
                                       "(SpikeInterface would execute this file; refusing code)")
        out[node.targets[0].id.lower()] = value
    if not isinstance(out.get("sample_rate"), (int, float)) or not out["sample_rate"] > 0:
        raise RecordingFormatError(path, "sample_rate", f"must be a positive number of Hz, got {out.get('sample_rate')!r}")
    return out


def _npy(folder: Path, name: str):
    p = folder / name
    if not p.is_file():
        return None
    try:
        return np.load(p, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise RecordingFormatError(p, None, f"is not a readable .npy array: {exc}") from None


def _layout(folder: Path):
    """(electrode ids of the channel rows, (C, 2) positions in um) or (None, None)."""
    pos = _npy(folder, "channel_positions.npy")
    cmap = _npy(folder, "channel_map.npy")
    if pos is None:
        return (None, None) if cmap is None else (cmap.reshape(-1).astype(np.int64), None)
    pos = np.asarray(pos, dtype=np.float64).reshape(len(pos), -1)
    ids = np.arange(len(pos), dtype=np.int64) if cmap is None else cmap.reshape(-1).astype(np.int64)
    if len(ids) != len(pos) or pos.shape[1] < 2:
        raise RecordingFormatError(folder / "channel_positions.npy", None, f"has shape {pos.shape} for "
                                   f"{len(ids)} channels in channel_map.npy")
    return ids, pos[:, :2]


def _template_channels(folder: Path, unit_ids: np.ndarray, n_channels: int) -> np.ndarray | None:
    """Channel row of each unit's most frequent template's largest peak-to-peak, or None."""
    templates = _npy(folder, "templates.npy")
    st = _npy(folder, "spike_templates.npy")
    sc = _npy(folder, "spike_clusters.npy")
    if templates is None or st is None or templates.ndim != 3 or templates.shape[2] != n_channels:
        return None
    st = st.reshape(-1).astype(np.int64)
    sc = st if sc is None else sc.reshape(-1).astype(np.int64)
    best = np.ptp(templates, axis=1).argmax(axis=1)  # per template
    out = np.full(len(unit_ids), -1, np.int64)
    for i, u in enumerate(unit_ids.tolist()):
        mine = st[sc == u]
        mine = mine[(mine >= 0) & (mine < len(best))]
        if len(mine):
            out[i] = best[np.bincount(mine).argmax()]
    return out


def _dat_duration(folder: Path, params: dict) -> float | None:
    """Duration (s) of the raw ``.dat`` file named in ``params.py``, when it exists."""
    dat = params.get("dat_path")
    dat = dat[0] if isinstance(dat, (list, tuple)) and dat else dat
    n_ch, dtype = params.get("n_channels_dat"), params.get("dtype")
    if not isinstance(dat, str) or not isinstance(n_ch, int) or n_ch <= 0 or not isinstance(dtype, str):
        return None
    p = Path(dat) if Path(dat).is_absolute() else folder / dat
    try:
        n_bytes = p.stat().st_size - int(params.get("offset") or 0)
        return n_bytes / (n_ch * np.dtype(dtype).itemsize) / float(params["sample_rate"])
    except (OSError, TypeError, ValueError):
        return None


def read(path, progress=None, exclude_cluster_groups=None, keep_good_only: bool = False, **options):
    """Load a phy/Kilosort output folder (module docstring) as a :class:`SpikeRecording`.

    Parameters
    ----------
    path : str or Path
        The output folder.
    progress : bool, optional
        Unused (the folder is read in one go); accepted like every reader.
    exclude_cluster_groups : list of str, optional
        Phy groups to drop (e.g. ``["noise", "mua"]``).
    keep_good_only : bool
        Read with ``read_kilosort`` and keep Kilosort's ``good`` units only.

    Returns
    -------
    SpikeRecording
        Times in s, positions in um, ``metadata["phy_params"]`` the parsed ``params.py``.
    """
    from ..recording import Electrodes, SpikeRecording

    if options:
        raise ReaderOptionError(f"unexpected options for the phy reader: {sorted(options)}")
    folder = Path(path)
    params = read_params(folder)
    try:
        import spikeinterface.extractors as se
    except ImportError:
        raise RecordingFormatError(folder, None, "reading phy/Kilosort folders needs SpikeInterface: "
                                   "pip install 'organoid-sim[interop]'") from None
    try:
        sorting = (se.read_kilosort(folder, keep_good_only=True) if keep_good_only
                   else se.read_phy(folder, exclude_cluster_groups=exclude_cluster_groups))
    except (AssertionError, KeyError, ValueError, IndexError, OSError, TypeError) as exc:
        raise RecordingFormatError(folder, None, f"SpikeInterface cannot read this phy/Kilosort folder: "
                                   f"{type(exc).__name__}: {exc}") from None
    rec = build(folder, "spike_times.npy", SpikeRecording.from_spikeinterface, sorting,
                metadata={"source": str(folder), "format": FORMAT, "phy_params": params})
    ids, pos = _layout(folder)
    if ids is None:
        return rec
    rows = None
    if "ch" in sorting.get_property_keys():
        rows = np.asarray(sorting.get_property("ch"), dtype=np.float64)
        rows = np.where(np.isfinite(rows) & (rows >= 0) & (rows < len(ids)), rows, -1).astype(np.int64)
    elif pos is not None:
        rows = _template_channels(folder, rec.unit_ids, len(ids))
    layout = Electrodes(ids, *(pos.T if pos is not None else (np.full(len(ids), np.nan),) * 2))
    electrode_ids = np.full(rec.n_units, -1, np.int64) if rows is None else np.where(rows >= 0, ids[rows], -1)
    t_stop = _dat_duration(folder, params)
    t_stop = rec.t_stop if t_stop is None or t_stop < rec.t_stop else t_stop
    return build(folder, "channel_map.npy", rec.replace, electrode_ids=electrode_ids,
                 positions=layout.position_of(electrode_ids), electrodes=layout, t_stop=t_stop)
