"""What every model shares: the recording layout it was fitted to, scoring in bits/spike,
turning simulated counts into a :class:`SpikeRecording`, and model files (safetensors + JSON).

Model files: a directory with ``weights.safetensors`` (all tensors) and ``model.json``
(``class``, ``config``, ``layout``, ``provenance``). Both are written atomically (temporary file
then ``os.replace``), the JSON last, so a directory with a ``model.json`` is always complete.
Loading never unpickles: safetensors holds raw arrays only and JSON is data.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from .. import __version__
from ..atomic import atomic_write_bytes
from ..nn.observation import bits_per_spike
from ..nn.serialization import load_tensors, save_tensors
from ..recording import Electrodes, SpikeRecording

__all__ = ["ModelBase", "load_model", "bits_per_spike", "file_sha256", "ModelFileError"]

WEIGHTS = "weights.safetensors"
MODEL_JSON = "model.json"
FORMAT_VERSION = 1


class ModelFileError(ValueError):
    """A saved model that cannot be loaded: ``path`` names the file, the message the problem."""

    def __init__(self, path, problem: str) -> None:
        self.path = Path(path)
        super().__init__(f"{path}: {problem}")


# ---------------------------------------------------------------------------- small helpers
def file_sha256(path) -> str | None:
    """SHA-256 hex digest of a file, or None when it cannot be read."""
    try:
        h = hashlib.sha256()
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
        return h.hexdigest()
    except (OSError, TypeError):
        return None


def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, torch.Tensor):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON-serialisable: {type(o).__name__}")


# ---------------------------------------------------------------------------- the layout
def layout_of(rec: SpikeRecording) -> dict:
    """JSON-able description of the units and electrodes a model is fitted to."""
    ids = rec.unit_ids
    pos = np.where(np.isfinite(rec.positions), rec.positions, None).tolist() if rec.n_units else []
    ex = rec.electrodes
    return {"unit_ids": ids.tolist(), "unit_ids_kind": ids.dtype.kind,
            "electrode_ids": rec.electrode_ids.tolist(), "positions": pos,
            "electrodes": {"ids": ex.ids.tolist(),
                           "x": np.where(np.isfinite(ex.x), ex.x, None).tolist(),
                           "y": np.where(np.isfinite(ex.y), ex.y, None).tolist()},
            "sampling_rate": rec.sampling_rate}


def _float_array(values) -> np.ndarray:
    return np.array([np.nan if v is None else v for v in values], dtype=np.float64)


def electrodes_from_layout(layout: Mapping) -> Electrodes:
    """The :class:`Electrodes` stored in a layout dict."""
    e = layout["electrodes"]
    return Electrodes(np.asarray(e["ids"], dtype=np.int64), _float_array(e["x"]), _float_array(e["y"]))


def positions_from_layout(layout: Mapping) -> np.ndarray:
    """``(N, 2)`` unit positions in um (NaN unknown) stored in a layout dict."""
    pos = layout["positions"]
    if not pos:
        return np.zeros((0, 2))
    return np.array([[np.nan if v is None else v for v in row] for row in pos], dtype=np.float64)


def unit_ids_from_layout(layout: Mapping) -> np.ndarray:
    """Unit ids (int64 or str) stored in a layout dict."""
    ids = layout["unit_ids"]
    return np.asarray(ids, dtype=np.int64 if layout.get("unit_ids_kind", "i") in "iu" else str)


def counts_to_recording(counts: np.ndarray, dt_ms: float, layout: Mapping, *, t_start: float = 0.0,
                        seed: int = 0, stim=None, metadata: Mapping | None = None,
                        refractory_ms: float = 1.0) -> SpikeRecording:
    """A :class:`SpikeRecording` from simulated ``[T, N]`` counts in ``dt_ms`` bins.

    Spike times are drawn inside their bins (seeded), so that they are not all on the bin grid
    (statistics such as STTC or ISIs would otherwise see ties), and no two spikes of a unit come
    closer than ``refractory_ms`` (a detector's dead time; shrunk to ``dt_ms / (k + 1)`` for a bin
    of ``k`` spikes, so that the times stay random when ``dt_ms`` is not much longer than the dead
    time): the ``k`` spikes of a bin are uniform order statistics on the bin minus ``k`` gaps (the
    spacing transform), kept half a gap away from both bin edges.
    """
    counts = np.asarray(counts)
    n_bins, n = counts.shape
    dt = dt_ms / 1000.0
    unit, b = np.nonzero(counts.T)
    k = counts.T[unit, b].astype(np.int64)
    unit, b, k = np.repeat(unit, k), np.repeat(b, k), np.repeat(k, k)
    rng = np.random.default_rng(seed)
    u = rng.random(len(b))
    grouped = np.lexsort((u, b, unit))               # spikes of one (unit, bin) together, u ascending
    unit, b, k, u = unit[grouped], b[grouped], k[grouped], u[grouped]
    first = np.r_[True, (unit[1:] != unit[:-1]) | (b[1:] != b[:-1])] if len(b) else np.zeros(0, bool)
    rank = np.arange(len(b)) - np.maximum.accumulate(np.where(first, np.arange(len(b)), 0))
    gap = np.minimum(refractory_ms / 1000.0, dt / (k + 1))  # leaves dt / (k + 1) of room to draw from
    times = t_start + b * dt + gap / 2 + u * (dt - k * gap) + rank * gap
    order = np.lexsort((times, unit))
    per_unit = np.bincount(unit, minlength=n)
    offsets = np.concatenate([[0], np.cumsum(per_unit)]).astype(np.int64)
    return SpikeRecording(times[order], offsets, t_start=t_start, t_stop=t_start + n_bins * dt,
                          unit_ids=unit_ids_from_layout(layout),
                          electrode_ids=np.asarray(layout["electrode_ids"], dtype=np.int64),
                          positions=positions_from_layout(layout), electrodes=electrodes_from_layout(layout),
                          stim=stim, metadata=dict(metadata or {}))


# ---------------------------------------------------------------------------- the base class
class ModelBase:
    """Mixin with the parts every model shares (layout, scoring, files).

    Subclasses set ``self.dt_ms``, ``self.layout`` (after fitting), ``self.observation``, and define
    ``_eta(counts)`` (teacher-forced ``log`` expected count per bin, ``[T, N]``), ``config()``,
    ``_tensors()`` and ``_from_files(config, tensors)``.
    """

    layout: dict | None = None
    provenance: dict
    #: every concrete subclass by class name (the ``class`` entry of ``model.json``); filled by
    #: :meth:`__init_subclass__`, so this module never imports its subclasses
    registry: dict[str, type] = {}

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        ModelBase.registry[cls.__name__] = cls

    def _require_fitted(self) -> None:
        if self.layout is None:
            raise RuntimeError(f"{type(self).__name__} is not fitted yet: call fit(recording) first")

    def _check_units(self, rec: SpikeRecording) -> None:
        ids = unit_ids_from_layout(self.layout)
        if rec.n_units != len(ids) or not np.array_equal(rec.unit_ids.astype(ids.dtype), ids):
            raise ValueError(f"recording has units {rec.unit_ids[:8].tolist()}... ({rec.n_units}) but the model was "
                             f"fitted to {ids[:8].tolist()}... ({len(ids)}); select the same units")

    def _binned(self, rec: SpikeRecording, device=None) -> torch.Tensor:
        return rec.to_tensor(self.dt_ms, dtype=torch.float32, device=device)

    def log_likelihood(self, recording: SpikeRecording) -> tuple[float, float, int]:
        """Teacher-forced one-step-ahead log-likelihood (nats) of ``recording``, the homogeneous
        null's log-likelihood (each unit's own mean count in the window) and the spike count."""
        self._require_fitted()
        self._check_units(recording)
        with torch.no_grad():
            counts = self.observation.prepare(self._binned(recording, device=self._device()))
            eta = self._eta(counts)
            ll = float(self.observation.log_likelihood(counts, eta))
            ll0 = float(self.observation.null_log_likelihood(counts))
        return ll, ll0, int(counts.sum())

    def score(self, recording: SpikeRecording) -> float:
        """Held-out log-likelihood gain in **bits per spike** over a homogeneous Poisson model.

        Teacher-forced and one step ahead: each bin of ``recording`` (binned at ``dt_ms``) is
        predicted from the recorded spikes before it. The null model fires each unit at its own
        mean rate over ``recording``, so a model must beat the held-out mean rate to score > 0.
        """
        ll, ll0, n = self.log_likelihood(recording)
        return bits_per_spike(ll, ll0, n)

    def _device(self):
        return torch.device("cpu")

    # ------------------------------------------------------------------ provenance and files
    def _set_provenance(self, rec: SpikeRecording, settings: Mapping[str, Any]) -> None:
        md = rec.metadata
        src = md.get("source")
        self.provenance = {"source": src, "source_sha256": file_sha256(src) if src else None,
                           "well": md.get("well"), "fit_window_s": [rec.t_start, rec.t_stop],
                           "n_spikes": int(rec.n_spikes), "fit_settings": dict(settings), "metrics": {},
                           "package_version": __version__}

    def save(self, directory) -> Path:
        """Write the model to ``directory`` (``weights.safetensors`` + ``model.json``); returns the path."""
        self._require_fitted()
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        save_tensors(directory / WEIGHTS, self._tensors(), {"class": type(self).__name__})
        doc = {"format_version": FORMAT_VERSION, "class": type(self).__name__, "config": self.config(),
               "layout": self.layout, "provenance": {**getattr(self, "provenance", {}),
                                                    "package_version": __version__}}
        text = json.dumps(doc, indent=2, default=_json_default, allow_nan=True)
        atomic_write_bytes(directory / MODEL_JSON, text.encode("utf-8"))
        return directory


def _check_layout(path: Path, model, layout: Mapping) -> None:
    """The layout's units must be the model's recorded neurons (one per unit)."""
    n = getattr(model, "n_recorded", None)
    if n is None:
        n = getattr(model, "n_units", None)
    ids = layout.get("unit_ids")
    if not isinstance(ids, list) or not isinstance(layout.get("electrode_ids"), list):
        raise ModelFileError(path, "layout has no 'unit_ids'/'electrode_ids' lists")
    if n is not None and len(ids) != n:
        raise ModelFileError(path, f"layout lists {len(ids)} units but the model has {n} recorded neurons")
    if len(layout["electrode_ids"]) != len(ids):
        raise ModelFileError(path, f"layout lists {len(ids)} units but {len(layout['electrode_ids'])} electrode ids")


def _registry() -> dict:
    """Model classes by name: every subclass of :class:`ModelBase` registers itself when defined."""
    return dict(ModelBase.registry)


def load_model(directory, device=None):
    """Load a model saved with ``model.save(directory)`` (safetensors + JSON; nothing is unpickled).

    ``device`` (e.g. ``"cuda"``) places a :class:`SpikingNetworkModel` on that device.
    """
    directory = Path(directory)
    path = directory / MODEL_JSON
    if not path.exists():
        raise FileNotFoundError(f"{path}: not a saved organoid-sim model (model.json missing)")
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelFileError(path, f"model.json is not valid JSON ({exc})") from None
    if not isinstance(doc, dict):
        raise ModelFileError(path, "model.json must hold a JSON object")
    cls_name = doc.get("class")
    reg = _registry()
    if cls_name not in reg:
        raise ModelFileError(path, f"unknown model class {cls_name!r}; expected one of {sorted(reg)}")
    for key in ("config", "layout"):
        if not isinstance(doc.get(key), dict):
            raise ModelFileError(path, f"model.json has no {key!r} object")
    try:
        tensors = load_tensors(directory / WEIGHTS)
    except FileNotFoundError:
        raise
    except Exception as exc:  # safetensors raises its own SafetensorError (and OSError, ValueError)
        raise ModelFileError(directory / WEIGHTS, "not a complete safetensors file (truncated or damaged?): "
                             f"{exc}") from None
    try:
        model = reg[cls_name]._from_files(doc["config"], tensors)
    except (RuntimeError, KeyError, TypeError, ValueError) as exc:
        # e.g. an edited n_recorded: the tensors' shapes no longer fit the config
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelFileError(path, f"its config does not match {WEIGHTS} ({first})") from None
    _check_layout(path, model, doc["layout"])
    model.layout = doc["layout"]
    model.provenance = doc.get("provenance", {})
    if hasattr(model, "finish_loading"):
        model.finish_loading()
    if device is not None and isinstance(model, torch.nn.Module):
        model.to(device)
    return model
