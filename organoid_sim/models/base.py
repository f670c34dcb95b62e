"""What every model shares: the recording layout it was fitted to, scoring in bits/spike,
turning simulated counts into a :class:`SpikeRecording`, and model files (safetensors + JSON).

Model files: a directory with ``weights.safetensors`` (all tensors) and ``model.json``
(``class``, ``config``, ``layout``, ``provenance``, ``weights_sha256``), replaced together by
:func:`organoid_sim.model_files.write_pair`, so an interrupted save leaves the old model or the new
one, never new weights beside an old ``model.json``; loading checks the weights against the digest.
Loading never unpickles: safetensors holds raw arrays only and JSON is data.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import warnings
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from .. import __version__
from ..jsonable import json_default
from ..model_files import (FORMAT_VERSION, MODEL_JSON, WEIGHTS, WEIGHTS_SHA256, ModelFileError, read_document,
                           read_saved, write_pair)
from ..nn.observation import bits_per_spike
from ..nn.serialization import tensor_bytes, tensors_from_bytes
from ..recording import Electrodes, SpikeRecording

#: time step (ms) of every estimator unless asked otherwise (the network, the GLM, the Poisson
#: model's scoring bins; ``evaluate`` and the CLI): one step, so their bits/spike are on the same
#: bins. 2.5 ms was chosen over 5 ms for the network on tune wells (docs/models.md, "A 2.5 ms
#: step"): its free-running simulations reproduce their fitting windows more often, at twice the
#: fitting time.
DEFAULT_DT_MS = 2.5

__all__ = ["ModelBase", "load_model", "bits_per_spike", "file_sha256", "ModelFileError"]



# ---------------------------------------------------------------------------- small helpers
def file_sha256(path) -> str | None:
    """SHA-256 hex digest of a file, or None when it cannot be read.

    Parameters
    ----------
    path : path-like
        The file.

    Returns
    -------
    str or None
    """
    try:
        h = hashlib.sha256()
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
        return h.hexdigest()
    except (OSError, TypeError):
        return None


# ---------------------------------------------------------------------------- the layout
def layout_of(rec: SpikeRecording) -> dict:
    """JSON-able description of the units and electrodes a model is fitted to.

    Parameters
    ----------
    rec : SpikeRecording
        The recording.

    Returns
    -------
    dict
        ``unit_ids``, ``unit_ids_kind``, ``electrode_ids``, ``positions`` (um), ``electrodes`` and
        ``sampling_rate``.
    """
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


def add_event_counts(counts: np.ndarray, events: np.ndarray, *, steps_per_trajectory: int | None = None,
                     first_trajectory: int = 0) -> np.ndarray:
    """Add the spike events of ``run`` into a ``[rows, units]`` count array, in place.

    Parameters
    ----------
    counts : np.ndarray
        int64 ``[rows, units]`` array to add to.
    events : np.ndarray
        Rows ``(step, trajectory, neuron, count)`` as ``SpikingNetworkModel.run`` returns them.
    steps_per_trajectory : int, optional
        With it, trajectory ``b``'s step ``s`` lands on row ``(b + first_trajectory) *
        steps_per_trajectory + s`` (trajectories one after the other in time); without it, on
        row ``s`` whatever the trajectory.
    first_trajectory : int
        Trajectory index of the events' trajectory 0.

    Returns
    -------
    np.ndarray
        ``counts``; events beyond its rows or of neurons beyond its units are left out.
    """
    events = np.asarray(events)
    rows = events[:, 0]
    if steps_per_trajectory is not None:
        rows = rows + (events[:, 1] + first_trajectory) * steps_per_trajectory
    keep = (rows < counts.shape[0]) & (events[:, 2] < counts.shape[1])
    np.add.at(counts, (rows[keep], events[keep, 2]), events[keep, 3])
    return counts


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

    Parameters
    ----------
    counts : np.ndarray
        ``[T, N]`` spike counts.
    dt_ms : float
        Bin (ms).
    layout : Mapping
        The units' layout (:func:`layout_of`).
    t_start : float
        Start (s) of the first bin.
    seed : int
        Seed of the spike times.
    stim : StimEvents, optional
        Stimulation events carried by the result.
    metadata : Mapping, optional
        Metadata of the result.
    refractory_ms : float
        Smallest gap (ms) between two spikes of a unit.

    Returns
    -------
    SpikeRecording
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
    """Mixin with the parts every model shares (parameters, layout, scoring, files).

    scikit-learn's estimator shape: every hyperparameter, fit options included, is an ``__init__``
    argument, kept as given (:meth:`get_params`, :meth:`set_params`); ``fit(recording)`` takes the
    data only; fitted state ends in ``_`` (``layout_``, ``provenance_``).

    Subclasses call ``self._store_params(locals())`` first in ``__init__``, set ``self.dt_ms``,
    ``self.observation``, list their fit-only arguments in :attr:`fit_options`, and define
    ``_eta(counts)`` (teacher-forced ``log`` expected count per bin, ``[T, N]``), ``config()``,
    ``_tensors()`` and ``_from_files(config, tensors)``; older model files reach
    ``_from_files`` upgraded (:data:`organoid_sim.model_files.MIGRATIONS`).
    """

    layout_: dict | None = None
    #: every concrete subclass by class name (the ``class`` entry of ``model.json``); filled by
    #: :meth:`__init_subclass__`, so this module never imports its subclasses
    registry: dict[str, type] = {}
    #: ``__init__`` arguments that steer ``fit`` only (changing them keeps the fitted state)
    fit_options: tuple[str, ...] = ()
    #: keywords that ``fit(recording, **options)`` accepted before, by parameter name they map to
    legacy_fit_names: Mapping[str, str] = {}

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        ModelBase.registry[cls.__name__] = cls

    # ------------------------------------------------------------------ parameters
    @classmethod
    def _get_param_names(cls) -> list[str]:
        """The ``__init__`` arguments, in signature order."""
        sig = inspect.signature(cls.__init__)
        return [n for n, p in sig.parameters.items()
                if n != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]

    def _store_params(self, values: Mapping[str, Any]) -> None:
        """Keep the ``__init__`` arguments as given (call with ``locals()``)."""
        self._params = {n: values[n] for n in self._get_param_names()}

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """The ``__init__`` arguments, as given.

        Parameters
        ----------
        deep : bool
            Accepted for scikit-learn compatibility (no parameter is itself an estimator).

        Returns
        -------
        dict
            Parameter name -> value; ``type(model)(**model.get_params())`` is an unfitted copy.
        """
        return dict(self._params)

    def set_params(self, **params) -> "ModelBase":
        """Change ``__init__`` arguments.

        Changing only :attr:`fit_options` keeps the fitted state; any other argument rebuilds the
        model from its new arguments (unfitted), as a new instance would be.

        Parameters
        ----------
        **params
            Parameter name -> new value; unknown names raise ``TypeError``.

        Returns
        -------
        ModelBase
            ``self``.
        """
        valid = self._get_param_names()
        unknown = [k for k in params if k not in valid]
        if unknown:
            raise TypeError(f"{type(self).__name__}: unknown parameter(s) {unknown}; valid parameters: {valid}")
        new = {**self._params, **params}
        if all(k in self.fit_options for k in params):
            self._params = new
        else:
            type(self).__init__(self, **new)
        return self

    #: fit options that describe the machine a fit ran on, not the fit: never restored on loading
    _local_fit_options = ("device", "progress", "checkpoint_dir")

    def _restore_fit_options(self, settings: Mapping[str, Any]) -> None:
        """Take back the fit options a saved model was fitted with (its ``fit_settings``), so that
        :meth:`get_params` of a loaded model describes its fit and not the constructor's defaults."""
        named = {self.legacy_fit_names.get(k, k): v for k, v in settings.items()}
        self._params.update({k: v for k, v in named.items()
                             if k in self.fit_options and k not in self._local_fit_options})

    def _legacy_fit_options(self, options: Mapping[str, Any]) -> None:
        """``fit(recording, **options)`` of earlier releases: map the options onto parameters
        (``set_params``) with a FutureWarning; unknown options raise ``TypeError``."""
        if not options:
            return
        mapped = {self.legacy_fit_names.get(k, k): v for k, v in options.items()}
        unknown = [k for k in options if self.legacy_fit_names.get(k, k) not in self.fit_options]
        if unknown:
            raise TypeError(f"{type(self).__name__}.fit: unknown option(s) {unknown}; fit options are "
                            f"constructor parameters: {list(self.fit_options)}")
        warnings.warn(f"{type(self).__name__}.fit(recording, {', '.join(options)}=...) is deprecated and will be "
                      "removed in the next release: pass fit options to the constructor or to set_params(); "
                      f"applied now as set_params({', '.join(f'{k}=...' for k in mapped)})",
                      FutureWarning, stacklevel=3)
        self.set_params(**mapped)

    # ------------------------------------------------------------------ fitted state
    @property
    def layout(self) -> dict | None:
        """Same as :attr:`layout_` (the units and electrodes the model was fitted to)."""
        return self.layout_

    @layout.setter
    def layout(self, value) -> None:
        self.layout_ = value

    @property
    def provenance(self) -> dict:
        """Same as :attr:`provenance_` (source, fit window, settings and metrics of the fit)."""
        return self.__dict__.setdefault("provenance_", {})

    @provenance.setter
    def provenance(self, value) -> None:
        self.provenance_ = value

    def _require_fitted(self) -> None:
        if self.layout_ is None:
            raise RuntimeError(f"{type(self).__name__} is not fitted yet: call fit(recording) first")

    def _check_units(self, rec: SpikeRecording) -> None:
        ids = unit_ids_from_layout(self.layout_)
        # compared as text: casting text ids to the model's integer ids raised int()'s own error
        if rec.n_units != len(ids) or not np.array_equal(rec.unit_ids.astype(str), ids.astype(str)):
            raise ValueError(f"recording has units {rec.unit_ids[:8].tolist()}... ({rec.n_units}) but the model was "
                             f"fitted to {ids[:8].tolist()}... ({len(ids)}); select the same units")

    def binned(self, rec: SpikeRecording, device=None) -> torch.Tensor:
        """``rec`` as a ``[T, N]`` float32 count tensor in the model's ``dt_ms`` bins.

        Parameters
        ----------
        rec : SpikeRecording
            Spikes to bin.
        device : str or torch.device, optional
            Where the tensor goes (default CPU).

        Returns
        -------
        torch.Tensor
            Spike counts per bin and unit.
        """
        return rec.to_tensor(self.dt_ms, dtype=torch.float32, device=device)

    def log_likelihood(self, recording: SpikeRecording) -> tuple[float, float, int]:
        """Teacher-forced one-step-ahead log-likelihood of ``recording`` and of its homogeneous null.

        Parameters
        ----------
        recording : SpikeRecording
            Spikes of the units the model was fitted to.

        Returns
        -------
        ll : float
            The model's log-likelihood (nats).
        ll_null : float
            The null's (each unit's own mean count in the window).
        n_spikes : int
            Spikes in the binned window.
        """
        self._require_fitted()
        self._check_units(recording)
        with torch.no_grad():
            counts = self.observation.prepare(self.binned(recording, device=self.torch_device()))
            eta = self._eta(counts)
            ll = float(self.observation.log_likelihood(counts, eta))
            ll0 = float(self.observation.null_log_likelihood(counts))
        return ll, ll0, int(counts.sum())

    def score(self, recording: SpikeRecording) -> float:
        """Held-out log-likelihood gain in **bits per spike** over a homogeneous Poisson model.

        Teacher-forced and one step ahead: each bin of ``recording`` (binned at ``dt_ms``) is
        predicted from the recorded spikes before it. The null model fires each unit at its own
        mean rate over ``recording``, so a model must beat the held-out mean rate to score > 0.

        Parameters
        ----------
        recording : SpikeRecording
            Held-out spikes of the units the model was fitted to.

        Returns
        -------
        float
            Bits per spike.
        """
        ll, ll0, n = self.log_likelihood(recording)
        return bits_per_spike(ll, ll0, n)

    def torch_device(self) -> torch.device:
        """Where the model's tensors are.

        Returns
        -------
        torch.device
        """
        return torch.device("cpu")

    # private spellings of earlier releases, kept for one release
    def _device(self) -> torch.device:
        return self.torch_device()

    def _binned(self, rec: SpikeRecording, device=None) -> torch.Tensor:
        return self.binned(rec, device=device)

    def _set_provenance(self, rec: SpikeRecording, settings: Mapping[str, Any]) -> None:
        self.set_provenance(rec, settings)

    # ------------------------------------------------------------------ provenance and files
    def set_provenance(self, rec: SpikeRecording, settings: Mapping[str, Any]) -> None:
        """Record where the fit came from in :attr:`provenance_` (metrics start empty).

        Parameters
        ----------
        rec : SpikeRecording
            The fitting window (its ``metadata["source"]`` file is hashed).
        settings : Mapping
            The fit settings to record.

        Returns
        -------
        None
        """
        md = rec.metadata
        src = md.get("source")
        self.provenance_ = {"source": src, "source_sha256": file_sha256(src) if src else None,
                            "well": md.get("well"), "fit_window_s": [rec.t_start, rec.t_stop],
                            "n_spikes": int(rec.n_spikes), "fit_settings": dict(settings), "metrics": {},
                            "package_version": __version__}

    def save(self, directory) -> Path:
        """Write the model to ``directory`` (``weights.safetensors`` + ``model.json``); returns the path.

        The two files are replaced as a pair (:func:`organoid_sim.model_files.write_pair`): an error
        or Ctrl-C during the save leaves the model saved there before, or this one, loadable.
        """
        self._require_fitted()
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        data = tensor_bytes(self._tensors(), {"class": type(self).__name__})
        doc = {"format_version": FORMAT_VERSION, "class": type(self).__name__, "config": self.config(),
               "layout": self.layout_, "provenance": {**self.provenance, "package_version": __version__}}
        write_pair(directory / WEIGHTS, data, directory / MODEL_JSON,
                   lambda digest: json.dumps({**doc, WEIGHTS_SHA256: digest}, indent=2, default=json_default,
                                             allow_nan=True))
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

    Parameters
    ----------
    directory : path-like
        A folder written by ``model.save``.
    device : str or torch.device, optional
        Where to put a torch model.

    Returns
    -------
    PoissonModel, CoupledGLM or SpikingNetworkModel
        The model, fitted state included.
    """
    directory = Path(directory)
    path = directory / MODEL_JSON
    doc = read_document(directory)
    cls_name = doc.get("class")
    reg = _registry()
    if cls_name not in reg:
        raise ModelFileError(path, f"unknown model class {cls_name!r}; expected one of {sorted(reg)}")
    doc, data = read_saved(directory, doc)    # the weights model.json was saved with, read once
    try:
        tensors = tensors_from_bytes(data)
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
    model.layout_ = doc["layout"]
    model.provenance_ = doc.get("provenance", {})
    model._restore_fit_options(model.provenance_.get("fit_settings") or {})
    if hasattr(model, "finish_loading"):
        model.finish_loading()
    if device is not None and isinstance(model, torch.nn.Module):
        model.to(device)
    return model
