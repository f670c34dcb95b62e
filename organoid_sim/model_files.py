"""The model-file format, readable without torch: names of the two files, the format version and
the table of migrations that upgrades older files.

A saved model is a directory with ``weights.safetensors`` (all tensors) and ``model.json``
(``format_version``, ``class``, ``config``, ``layout``, ``provenance``). :func:`read_document`
parses ``model.json`` and upgrades its ``config`` to :data:`FORMAT_VERSION` through
:data:`MIGRATIONS`, so the estimators (:func:`organoid_sim.models.load_model`) and the torch-free
simulation engine read every version the same way.

The two files of a save belong together: ``model.json`` records the SHA-256 of the weights it was
written with (``weights_sha256``) and :func:`write_pair` replaces them so that a failure or Ctrl-C at
any moment leaves either the old pair or the new one loadable (:func:`paired_bytes` reads the weights
that belong to ``model.json``; fit checkpoints use the same two functions). Files saved before
the digest existed load as they are.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Callable, Mapping

from .atomic import atomic_write_bytes, atomic_write_text

__all__ = ["WEIGHTS", "MODEL_JSON", "WEIGHTS_SHA256", "FORMAT_VERSION", "MIGRATIONS", "ModelFileError",
           "read_document", "migrate_config", "write_pair", "paired_bytes", "pending_path", "read_saved"]

WEIGHTS = "weights.safetensors"
MODEL_JSON = "model.json"
#: key of ``model.json`` (and of a fit checkpoint's JSON) holding the SHA-256 (hex) of its weights file
WEIGHTS_SHA256 = "weights_sha256"
#: version of the layout written now
FORMAT_VERSION = 2


class ModelFileError(ValueError):
    """A saved model that cannot be loaded: ``path`` names the file, the message the problem."""

    def __init__(self, path, problem: str) -> None:
        self.path = Path(path)
        super().__init__(f"{path}: {problem}")


def _network_1_to_2(cfg: dict) -> dict:
    """Format 1 files may predate ``dale_weights`` (Dale's law was then always ``"softplus"``)
    and ``max_rate_hz`` (no saturation: None)."""
    cfg = dict(cfg)
    if cfg.get("dale") and "dale_weights" not in cfg:
        cfg["dale_weights"] = "softplus"
    cfg.setdefault("max_rate_hz", None)
    return cfg


#: model class name -> {format version: function turning a ``config`` of that version into the
#: next version's}; a class or version without an entry needs no change
MIGRATIONS: Mapping[str, Mapping[int, Callable[[dict], dict]]] = {
    "SpikingNetworkModel": {1: _network_1_to_2},
}


def migrate_config(class_name: str, config: Mapping, version, path="model.json") -> dict:
    """A saved ``config`` of format ``version`` upgraded to :data:`FORMAT_VERSION`, one step at a time.

    Parameters
    ----------
    class_name : str
        The ``class`` entry of ``model.json``.
    config : Mapping
        Its ``config`` entry.
    version : int
        Its ``format_version`` (files without one are version 1).
    path : path-like
        The file, for error messages.

    Returns
    -------
    dict
        The configuration as the current version writes it.
    """
    try:
        version = int(version)
    except (TypeError, ValueError):
        raise ModelFileError(path, f"format_version must be an integer, got {version!r}") from None
    if version > FORMAT_VERSION:
        raise ModelFileError(path, f"model file format_version {version} is newer than this organoid-sim reads "
                                   f"({FORMAT_VERSION}); upgrade the package")
    if version < 1:
        raise ModelFileError(path, f"format_version must be >= 1, got {version}")
    cfg = dict(config)
    steps = MIGRATIONS.get(class_name, {})
    for v in range(version, FORMAT_VERSION):
        if v in steps:
            cfg = steps[v](cfg)
    return cfg


def read_document(directory) -> dict:
    """``model.json`` of a saved model, its ``config`` upgraded to the current format.

    Parameters
    ----------
    directory : path-like
        A folder written by ``model.save``.

    Returns
    -------
    dict
        ``class``, ``config`` (current format), ``layout``, ``provenance`` and
        ``format_version`` (:data:`FORMAT_VERSION`). A missing ``model.json`` raises
        ``FileNotFoundError``; an invalid one, or one without a ``config`` or ``layout`` object,
        :class:`ModelFileError` naming the file.
    """
    path = Path(directory) / MODEL_JSON
    if not path.exists():
        raise FileNotFoundError(f"{path}: not a saved organoid-sim model (model.json missing)")
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelFileError(path, f"model.json is not valid JSON ({exc})") from None
    if not isinstance(doc, dict):
        raise ModelFileError(path, "model.json must hold a JSON object")
    for key in ("config", "layout"):
        if not isinstance(doc.get(key), dict):
            raise ModelFileError(path, f"model.json has no {key!r} object")
    config = migrate_config(doc.get("class"), doc["config"], doc.get("format_version", 1), path)
    return {**doc, "config": config, "format_version": FORMAT_VERSION}


# ---------------------------------------------------------------------------- a consistent pair of files
def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def pending_path(path) -> Path:
    """Where :func:`write_pair` keeps a new data file until it is renamed over ``path``: a hidden
    file beside it (``weights.safetensors`` -> ``.weights.pending.safetensors``).

    Parameters
    ----------
    path : path-like
        The data file.

    Returns
    -------
    Path
    """
    path = Path(path)
    return path.with_name(f".{path.stem}.pending{path.suffix}")


def write_pair(data_path, data: bytes, index_path, index_text: Callable[[str], str]) -> str:
    """Replace a data file and the JSON file that records its SHA-256, so that whatever interrupts
    the save (an error, Ctrl-C, a killed process) leaves one complete pair.

    Three steps: ``data`` goes to :func:`pending_path` (atomically; the old pair is untouched), then
    the index (atomically; from here on it names the new data, which :func:`paired_bytes` reads from
    the pending file), then the pending file is renamed over ``data_path``. A pending file that the
    index already names (an earlier save interrupted before its last rename) is first renamed over
    ``data_path``, so that this save's pending data never replaces the data the index names.

    Parameters
    ----------
    data_path : path-like
        The data file (e.g. ``weights.safetensors``); its folder must exist.
    data : bytes
        Its new content.
    index_path : path-like
        The JSON file that belongs to it (e.g. ``model.json``).
    index_text : callable
        ``index_text(sha256_hex) -> str``: the index's text, recording the digest it is given.

    Returns
    -------
    str
        The SHA-256 (hex) of ``data``.
    """
    data_path = Path(data_path)
    digest = hashlib.sha256(data).hexdigest()
    pending = pending_path(data_path)
    _finish_earlier_save(data_path, pending, Path(index_path))
    atomic_write_bytes(pending, data)
    atomic_write_text(index_path, index_text(digest))      # the commit point
    os.replace(pending, data_path)
    return digest


def _finish_earlier_save(data_path: Path, pending: Path, index_path: Path) -> None:
    """Rename ``pending`` over ``data_path`` when the index names it (a save interrupted after its
    commit point); a pending file the index does not name is a leftover that the next write replaces."""
    if not pending.exists():
        return
    try:
        digest = json.loads(index_path.read_text(encoding="utf-8")).get(WEIGHTS_SHA256)
    except (OSError, ValueError, AttributeError):     # no index, or not one of ours: nothing to finish
        return
    if isinstance(digest, str) and _sha256(pending) == digest:
        os.replace(pending, data_path)


def _content_if(path: Path, digest: str) -> bytes | None:
    """``path``'s bytes when their SHA-256 is ``digest``; None when it differs or the file is missing."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    return data if hashlib.sha256(data).hexdigest() == digest else None


def _mismatch(data_path: Path, index_path) -> ModelFileError:
    pending = pending_path(data_path)
    return ModelFileError(data_path, f"does not belong to {index_path}: its SHA-256 differs from the one "
                                     f"{Path(index_path).name} records ({WEIGHTS_SHA256}), and there is no "
                                     f"{pending.name} beside it that matches (where a save interrupted after "
                                     f"writing {Path(index_path).name} keeps its data; a copy without hidden files "
                                     "leaves it behind); one of the two was replaced, truncated or damaged after "
                                     "the save")


def paired_bytes(data_path, digest: str | None, index_path) -> bytes:
    """The content of the data that ``index_path`` records the SHA-256 ``digest`` of, read once and
    checked: ``data_path``'s, or its pending file's when a save was interrupted after writing the
    index (:func:`write_pair`). A save running beside this read may rename its pending file over
    ``data_path`` between two reads, so ``data_path`` is read again before giving up.

    Parameters
    ----------
    data_path : path-like
        The data file (e.g. ``weights.safetensors``).
    digest : str or None
        The digest the index records; None (files saved before digests) takes ``data_path`` as it is.
    index_path : path-like
        The index, for error messages.

    Returns
    -------
    bytes
        The data. A missing ``data_path`` (and no pending file that matches) raises
        ``FileNotFoundError``; one whose content is not what the index records, a
        :class:`ModelFileError` naming both files.
    """
    data_path = Path(data_path)
    if digest is None:
        try:
            return data_path.read_bytes()
        except FileNotFoundError:
            raise FileNotFoundError(f"{data_path}: not found beside {index_path}") from None
    for path in (data_path, pending_path(data_path), data_path):
        data = _content_if(path, digest)
        if data is not None:
            return data
    if not data_path.exists():
        raise FileNotFoundError(f"{data_path}: not found beside {index_path}")
    raise _mismatch(data_path, index_path)


def read_saved(directory, doc: Mapping | None = None) -> tuple[dict, bytes]:
    """``model.json`` (as :func:`read_document` gives it) and the weights it records, read as one
    pair even while a save replaces them: when the weights do not match and ``model.json`` has
    changed meanwhile, both are read again (up to three times).

    Parameters
    ----------
    directory : path-like
        A folder written by ``model.save``.
    doc : Mapping, optional
        Its ``model.json`` as :func:`read_document` returns it, when already read.

    Returns
    -------
    (dict, bytes)
        The document and the content of its weights file (:func:`paired_bytes`; its errors).
    """
    directory = Path(directory)
    for attempt in range(3):
        doc = dict(read_document(directory) if doc is None else doc)
        try:
            return doc, paired_bytes(directory / WEIGHTS, doc.get(WEIGHTS_SHA256), directory / MODEL_JSON)
        except (ModelFileError, FileNotFoundError):
            try:
                now = json.loads((directory / MODEL_JSON).read_text(encoding="utf-8")).get(WEIGHTS_SHA256)
            except (OSError, ValueError, AttributeError):
                now = doc.get(WEIGHTS_SHA256)
            if attempt == 2 or now == doc.get(WEIGHTS_SHA256):
                raise
            doc = None                                # a save replaced the pair meanwhile: read it again
    raise AssertionError("unreachable")
