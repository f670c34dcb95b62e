"""Helpers shared by the readers and writers: atomic writes, checked HDF5 access, progress."""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np

from ..atomic import atomic_path  # noqa: F401  (re-exported as organoid_sim.io.atomic_path)
from .errors import RecordingFormatError

HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def read_head(path: str | os.PathLike, n: int = 512) -> bytes:
    """The first ``n`` bytes of a file (for format sniffing)."""
    with open(path, "rb") as fh:
        return fh.read(n)


def open_h5(path: str | os.PathLike):
    """Open an HDF5 file read-only; a corrupt or truncated file raises :class:`RecordingFormatError`."""
    import h5py

    try:
        return h5py.File(path, "r")
    except FileNotFoundError:
        raise
    except (OSError, ValueError) as exc:
        raise RecordingFormatError(path, None, f"not a readable HDF5 file (corrupt or truncated?): {exc}") from None


CHUNK_VALUES = 4_000_000  # values per read when a progress bar is shown (32 MB of float64)


def _read_chunked(obj, bar) -> np.ndarray:
    """Read a 1-D dataset slice by slice into one array, advancing ``bar`` (same result as ``obj[()]``)."""
    out = np.empty(obj.shape, dtype=obj.dtype)
    for start in range(0, obj.shape[0], CHUNK_VALUES):
        sel = np.s_[start:min(start + CHUNK_VALUES, obj.shape[0])]
        obj.read_direct(out, sel, sel)
        bar.update(sel.stop - sel.start)
    return out


def h5_read(path, f, name: str, *, kinds: str | None = None, ndim: int | None = None,
            optional: bool = False, bar=None) -> np.ndarray | None:
    """Read dataset ``name`` of open file ``f`` fully, checking presence, dtype kind and rank.

    ``kinds`` is a string of numpy dtype kinds accepted (e.g. ``"f"``, ``"iu"``, ``"SUO"``).
    With a tqdm ``bar``, a large 1-D numeric dataset is read in slices that advance it.
    Low-level HDF5 failures (corrupt chunks, truncated data) become :class:`RecordingFormatError`.
    """
    import h5py

    try:
        obj = f.get(name)
    except (OSError, RuntimeError, KeyError, ValueError) as exc:
        raise RecordingFormatError(path, name, f"cannot be opened: {exc}") from None
    if obj is None:
        if optional:
            return None
        raise RecordingFormatError(path, name, "required dataset is missing")
    if not isinstance(obj, h5py.Dataset):
        raise RecordingFormatError(path, name, f"expected a dataset, found a {type(obj).__name__}")
    _check_size(path, name, obj)
    try:
        chunked = bar is not None and obj.ndim == 1 and obj.dtype.kind in "fiu" and obj.shape[0] > CHUNK_VALUES
        data = _read_chunked(obj, bar) if chunked else obj[()]
    except (OSError, RuntimeError, ValueError, TypeError, KeyError) as exc:
        raise RecordingFormatError(path, name, f"cannot be read (corrupt or truncated?): {exc}") from None
    data = np.asarray(data)
    if kinds is not None and data.dtype.kind not in kinds:
        raise RecordingFormatError(path, name, f"has dtype {data.dtype}, expected kind {kinds!r}")
    if ndim is not None and data.ndim != ndim:
        raise RecordingFormatError(path, name, f"has shape {data.shape}, expected {ndim}-D")
    return data


def _check_size(path, name: str, obj) -> None:
    """Refuse a dataset that claims more uncompressed bytes than the file holds (a damaged header).

    Without this a flipped bit in a shape field makes numpy try to allocate terabytes.
    """
    try:
        nbytes = int(np.prod(obj.shape, dtype=np.float64)) * obj.dtype.itemsize
        filtered = obj.chunks is not None and bool(obj.id.get_create_plist().get_nfilters())
        compressed = obj.compression is not None or filtered
    except (OSError, RuntimeError, ValueError, TypeError, OverflowError) as exc:
        raise RecordingFormatError(path, name, f"header cannot be read (corrupt?): {exc}") from None
    if not compressed and nbytes > os.path.getsize(path) + 1024:
        raise RecordingFormatError(path, name, f"declares shape {obj.shape} ({nbytes:,} bytes), more than the "
                                   f"file holds (corrupt or truncated?)")


def h5_attr(path, obj, key: str, default: Any = None) -> Any:
    """An HDF5 attribute (bytes decoded), or ``default`` when absent."""
    try:
        if key not in obj.attrs:
            return default
        v = obj.attrs[key]
    except (OSError, RuntimeError, KeyError, ValueError, TypeError) as exc:
        raise RecordingFormatError(path, f"{obj.name}@{key}", f"attribute cannot be read: {exc}") from None
    if isinstance(v, bytes):
        return v.decode("utf-8", "replace")
    if isinstance(v, np.ndarray) and v.shape == () :
        v = v.item()
    return v


def decode_strings(a: np.ndarray) -> np.ndarray:
    """Bytes/object arrays of text -> numpy unicode array."""
    return np.array([x.decode("utf-8", "replace") if isinstance(x, bytes) else str(x) for x in np.ravel(a)],
                    dtype=str).reshape(np.shape(a)) if np.size(a) else np.zeros(np.shape(a), dtype="<U1")


def parse_json(path, dataset: str, text: Any) -> dict:
    """Parse a JSON object stored in a file; bad JSON raises :class:`RecordingFormatError`."""
    if isinstance(text, np.ndarray):
        text = text.item() if text.size == 1 else None
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    try:
        value = json.loads(text)
    except (TypeError, ValueError) as exc:
        raise RecordingFormatError(path, dataset, f"is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise RecordingFormatError(path, dataset, "JSON must be an object")
    return value


def build(path, dataset: str, factory, *args, **kwargs):
    """Call a ``SpikeRecording`` builder; its ``ValueError`` is re-raised naming file and dataset."""
    try:
        return factory(*args, **kwargs)
    except RecordingFormatError:
        raise
    except (ValueError, TypeError, IndexError) as exc:
        raise RecordingFormatError(path, dataset, str(exc)) from None


def offsets_from_index(path, dataset: str, index: np.ndarray, n_values: int) -> np.ndarray:
    """``N + 1`` offsets from an NWB-style ragged index (end position of each row), checked."""
    index = np.asarray(index)
    if index.ndim != 1 or (index.size and index.dtype.kind not in "iu"):
        raise RecordingFormatError(path, dataset, f"index must be a 1-D integer array, got {index.dtype} {index.shape}")
    offsets = np.concatenate([[0], index.astype(np.int64)])
    if np.any(np.diff(offsets) < 0):
        raise RecordingFormatError(path, dataset, "index is not non-decreasing")
    if offsets[-1] != n_values:
        raise RecordingFormatError(path, dataset, f"index ends at {offsets[-1]} but the data has {n_values} values")
    return offsets


def dataset_size(f, name: str) -> int:
    """Number of values of dataset ``name`` (0 when absent or unreadable), to size a progress bar."""
    try:
        obj = f.get(name)
        return int(obj.size) if obj is not None and hasattr(obj, "size") else 0
    except (OSError, RuntimeError, KeyError, ValueError, TypeError):
        return 0


def progress_bar(progress: bool | None, total: int, desc: str):
    """A tqdm bar counting spikes when ``progress`` is true (``None``: only for reads over
    ``CHUNK_VALUES`` spikes), else a disabled bar. Use as a context manager."""
    from tqdm.auto import tqdm

    show = bool(progress) if progress is not None else total > CHUNK_VALUES
    return tqdm(total=total, desc=desc, unit="spike", unit_scale=True, disable=not show, leave=False)
