""":class:`NetworkSpec`: a fitted :class:`~organoid_sim.models.SpikingNetworkModel` as plain arrays,
and :func:`load_network`, which reads one from a saved model directory without torch.

The spec holds the parameters *resolved* for one step size (decays, signed weights, per-neuron
constants), exactly what :meth:`SpikingNetworkModel.step_params` computes in torch, so the engine
never needs the model's raw (softplus/log/logit) parametrisation. Outgoing synapses are stored as
one CSR matrix per synapse type over the presynaptic neuron: the synapses of type ``k`` leaving
neuron ``j`` are ``syn_ptr[k, j] .. syn_ptr[k, j + 1]`` of ``syn_post`` (postsynaptic neuron) and
``syn_weight`` (threshold units per presynaptic spike, signed). Exact zeros are left out.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from ..model_files import MODEL_JSON, WEIGHTS, ModelFileError, read_document, read_saved

__all__ = ["NetworkSpec", "load_network", "spec_from_arrays", "LOG_R0"]

LOG_R0 = math.log(10.0)  # escape rate (Hz) at threshold, as in the torch model


@dataclass(frozen=True)
class NetworkSpec:
    """A spiking network resolved for step ``dt_ms`` (all arrays NumPy, float32 unless noted).

    Attributes
    ----------
    dt_ms : time step (ms).
    n_recorded, n_hidden : recorded neurons (first) and hidden neurons (after them).
    alpha_syn : ``[n_syn]`` synaptic current decay per step, ``exp(-dt / tau_syn)``.
    alpha_m : membrane decay per step, ``exp(-dt / tau_mem)``.
    alpha_a, alpha_rec : ``[n]`` adaptation and depression-recovery decays per step.
    log1m_u : ``[n]`` ``log(1 - U)`` of the Tsodyks-Markram utilisation.
    theta, beta, bias, inv_delta_u : ``[n]`` threshold, adaptation strength, bias (threshold
        units) and inverse escape-noise softness.
    log_r0_dt : ``log(r0 * dt)`` (``r0`` = 10 Hz at threshold).
    eta_max : ``[n]`` log of the largest expected count per step, or None (no saturation).
    syn_ptr : int64 ``[n_syn, n + 1]`` CSR row offsets per synapse type (rows: presynaptic neuron).
    syn_post : int32 ``[nnz]`` postsynaptic neuron of each synapse.
    syn_weight : ``[nnz]`` signed weight (threshold units per presynaptic spike).
    observation : ``"poisson"`` or ``"bernoulli"``; ``max_count`` its count cap per bin.
    positions_um : float64 ``[n, 2]`` neuron positions (um).
    unit_ids, electrode_ids : ids of the recorded units and their electrodes (from the layout).
    config : the model's JSON configuration (hyperparameters, stimulation coupling).
    """

    dt_ms: float
    n_recorded: int
    n_hidden: int
    alpha_syn: np.ndarray
    alpha_m: float
    alpha_a: np.ndarray
    alpha_rec: np.ndarray
    log1m_u: np.ndarray
    theta: np.ndarray
    beta: np.ndarray
    bias: np.ndarray
    inv_delta_u: np.ndarray
    log_r0_dt: float
    eta_max: np.ndarray | None
    syn_ptr: np.ndarray
    syn_post: np.ndarray
    syn_weight: np.ndarray
    observation: str = "poisson"
    max_count: int = 4
    positions_um: np.ndarray | None = None
    unit_ids: np.ndarray | None = None
    electrode_ids: np.ndarray | None = None
    config: Mapping[str, Any] = field(default_factory=dict)

    @property
    def n_neurons(self) -> int:
        """Recorded plus hidden neurons."""
        return self.n_recorded + self.n_hidden

    @property
    def n_syn(self) -> int:
        """Number of synapse types."""
        return int(len(self.alpha_syn))

    @property
    def n_synapses(self) -> int:
        """Stored (nonzero) synapses over all types."""
        return int(len(self.syn_post))

    def dense_weight(self) -> np.ndarray:
        """The dense weights (O(n^2) memory: small networks and tests only).

        Returns
        -------
        numpy.ndarray
            float32 ``[n_syn, n_post, n_pre]``, threshold units per presynaptic spike.
        """
        n = self.n_neurons
        out = np.zeros((self.n_syn, n, n), np.float32)
        for k in range(self.n_syn):
            lo, hi = self.syn_ptr[k, 0], self.syn_ptr[k, -1]
            pre = np.repeat(np.arange(n), np.diff(self.syn_ptr[k]))
            out[k, self.syn_post[lo:hi], pre] = self.syn_weight[lo:hi]
        return out


# ---------------------------------------------------------------------------- building a spec
def csr_from_coo(n: int, pre: np.ndarray, post: np.ndarray, weight: np.ndarray):
    """CSR outgoing synapses per type from a synapse list (zeros dropped per type).

    Parameters
    ----------
    n : number of neurons.
    pre, post : ``[nnz]`` presynaptic and postsynaptic neuron of each synapse.
    weight : ``[n_syn, nnz]`` (or ``[nnz]``) weights, threshold units per presynaptic spike.

    Returns
    -------
    tuple
        ``(syn_ptr [n_syn, n + 1] int64, syn_post int32, syn_weight float32)``, rows sorted by
        presynaptic neuron (see :class:`NetworkSpec`).
    """
    weight = np.atleast_2d(weight)
    pre, post = np.asarray(pre), np.asarray(post)
    order = np.argsort(pre, kind="stable")   # one sort for every type (stable: post order kept)
    pre_s = pre[order]
    ptrs, posts, ws = [], [], []
    base = 0
    for k in range(weight.shape[0]):
        wk = weight[k][order]
        keep = wk != 0
        q, w = post[order], wk
        p = pre_s
        if not keep.all():  # drop the zeros of this type (e.g. uncoupled recorded units)
            p, q, w = pre_s[keep], q[keep], w[keep]
        ptr = np.zeros(n + 1, np.int64)
        np.cumsum(np.bincount(p, minlength=n), out=ptr[1:])
        ptrs.append(ptr + base)
        posts.append(q.astype(np.int32, copy=False))
        ws.append(w.astype(np.float32, copy=False))
        base += len(q)
    del order, pre_s
    return (np.stack(ptrs), np.concatenate(posts) if len(posts) > 1 else posts[0],
            np.concatenate(ws) if len(ws) > 1 else ws[0])


def _softplus(x: np.ndarray) -> np.ndarray:
    # torch's softplus returns x itself above 20 (threshold); the two agree to float precision
    return np.where(x > 20.0, x, np.logaddexp(0.0, np.minimum(x, 20.0)))


def _f(t) -> np.ndarray:
    return np.asarray(t, dtype=np.float64)


def _synapses(cfg: Mapping, t: Mapping[str, np.ndarray], n: int):
    """Signed effective weights as ``(pre, post, weight [n_syn, nnz])`` (dense or sparse files)."""
    raw = np.asarray(t["weight"], np.float32)       # float32 as saved: no float64 copy of 10^7 weights
    if "syn_pre" in t:                                  # sparse model: values per listed synapse
        pre, post = np.asarray(t["syn_pre"]), np.asarray(t["syn_post"])
    else:                                               # dense model: [n_syn, post, pre] with a mask
        post, pre = np.nonzero(_f(t["mask"]) != 0)
        raw = raw[:, post, pre]
    if cfg.get("dale"):
        mag = np.abs(raw) if cfg.get("dale_weights", "softplus") == "abs" else _softplus(raw)
        raw = (mag * np.asarray(t["sign"], np.float32)[pre][None]).astype(np.float32)
    return pre, post, raw


def spec_from_arrays(config: Mapping[str, Any], tensors: Mapping[str, np.ndarray], layout: Mapping | None = None,
                     dt_ms: float | None = None) -> NetworkSpec:
    """A :class:`NetworkSpec` from a model's configuration and its saved arrays (NumPy).

    Parameters
    ----------
    config : the ``config`` entry of ``model.json`` (:meth:`SpikingNetworkModel.config`).
    tensors : the arrays of ``weights.safetensors`` by name (NumPy, any float dtype).
    layout : the ``layout`` entry of ``model.json`` (unit and electrode ids), optional.
    dt_ms : step size (ms) to resolve the decays for; default the model's ``dt_ms``.

    Returns
    -------
    NetworkSpec
    """
    cfg = dict(config)
    for key in ("weight", "bias", "theta_raw", "log_delta_u", "beta_raw", "use_logit", "log_tau_rec_ms",
                "log_tau_adapt_ms", "tau_syn_ms"):
        if key not in tensors:
            raise ModelFileError(WEIGHTS, f"no {key!r} array; not a SpikingNetworkModel's weights")
    dt = float(cfg["dt_ms"] if dt_ms is None else dt_ms)
    n = int(len(tensors["bias"]))
    n_rec = int(cfg.get("n_recorded", n - int(cfg.get("n_hidden", 0))))
    t = tensors
    pre, post, w = _synapses(cfg, t, n)
    ptr, syn_post, syn_w = csr_from_coo(n, pre, post, w)
    eta_max = None
    if cfg.get("max_rate_hz") is not None and "log_max_rate" in t:
        eta_max = (_f(t["log_max_rate"]) + math.log(dt / 1000.0)).astype(np.float32)
    f32 = lambda v: np.ascontiguousarray(v, dtype=np.float32)  # noqa: E731
    lay = layout or {}
    obs = str(cfg.get("observation", "poisson"))
    return NetworkSpec(
        dt_ms=dt, n_recorded=n_rec, n_hidden=n - n_rec,
        alpha_syn=f32(np.exp(-dt / _f(t["tau_syn_ms"]))),
        alpha_m=float(math.exp(-dt / float(cfg["tau_mem_ms"]))),
        alpha_a=f32(np.exp(-dt / np.exp(_f(t["log_tau_adapt_ms"])))),
        alpha_rec=f32(np.exp(-dt / np.exp(_f(t["log_tau_rec_ms"])))),
        log1m_u=f32(np.log1p(-1.0 / (1.0 + np.exp(-_f(t["use_logit"]))))),
        theta=f32(_softplus(_f(t["theta_raw"]))), beta=f32(_softplus(_f(t["beta_raw"]))),
        bias=f32(t["bias"]), inv_delta_u=f32(np.exp(-_f(t["log_delta_u"]))),
        log_r0_dt=LOG_R0 + math.log(dt / 1000.0), eta_max=eta_max,
        syn_ptr=ptr, syn_post=syn_post, syn_weight=syn_w,
        observation=obs, max_count=1 if obs == "bernoulli" else 4,
        positions_um=None if "neuron_xy_um" not in t else np.asarray(t["neuron_xy_um"], np.float64),
        unit_ids=None if "unit_ids" not in lay else np.asarray(lay["unit_ids"]),
        electrode_ids=None if "electrode_ids" not in lay else np.asarray(lay["electrode_ids"]),
        config=cfg)


def load_network(model_dir, dt_ms: float | None = None) -> NetworkSpec:
    """Read a saved :class:`SpikingNetworkModel` directory into a :class:`NetworkSpec` without torch.

    Parameters
    ----------
    model_dir : directory written by ``model.save(dir)`` (``weights.safetensors`` + ``model.json``).
    dt_ms : step size (ms); default the model's.

    Returns
    -------
    NetworkSpec
    """
    from safetensors.numpy import load  # raw arrays only: loading executes no code

    d = Path(model_dir)
    path = d / MODEL_JSON
    doc = read_document(d)        # parsed and upgraded to the current format, as load_model does
    if doc.get("class") != "SpikingNetworkModel":
        raise ModelFileError(path, f"the engine runs SpikingNetworkModel files, this one holds {doc.get('class')!r}")
    doc, data = read_saved(d, doc)  # checked against the digest model.json records, read once
    return spec_from_arrays(doc["config"], load(data), doc.get("layout"), dt_ms)
