"""The model-file format, readable without torch: names of the two files, the format version and
the table of migrations that upgrades older files.

A saved model is a directory with ``weights.safetensors`` (all tensors) and ``model.json``
(``format_version``, ``class``, ``config``, ``layout``, ``provenance``). :func:`read_document`
parses ``model.json`` and upgrades its ``config`` to :data:`FORMAT_VERSION` through
:data:`MIGRATIONS`, so the estimators (:func:`organoid_sim.models.load_model`) and the torch-free
simulation engine read every version the same way.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable, Mapping

__all__ = ["WEIGHTS", "MODEL_JSON", "FORMAT_VERSION", "MIGRATIONS", "ModelFileError", "read_document",
           "migrate_config"]

WEIGHTS = "weights.safetensors"
MODEL_JSON = "model.json"
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
