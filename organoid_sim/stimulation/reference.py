"""A model-free reference for evoked-response predictions: what distance and channel alone predict.

:func:`distance_channel_prediction` predicts each channel's response to a pulse on an electrode
from *other* electrodes' measured responses at the same amplitude: the mean response of every
(electrode, channel) pair at the same electrode-channel distance (pooled to ``resolution_um``),
plus the channel's mean departure from that profile away from its own electrode, linear in
amplitude between the measured amplitudes (clamped outside). It knows nothing specific to the
stimulated electrode (how strongly it sets off the network), so it tells how much of a culture's
evoked responses a model could get right from geometry and each channel's general responsiveness
alone. :func:`organoid_sim.stimulation.calibrate` reports it on its held-out check electrodes
beside the model (``check["model_free"]``), built from the electrodes the calibration fitted.
"""

from __future__ import annotations

import warnings
from typing import Mapping

import numpy as np

__all__ = ["distance_channel_prediction", "model_free_check", "recording_geometry"]

#: electrode-channel distances (um) are pooled to this resolution
RESOLUTION_UM = 10.0


def _interp(x: float, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """Linear interpolation of rows ``ys`` [A, C] at ``x`` over sorted ``xs`` [A], clamped; where one
    side is NaN (a channel never answered there) the other side stands in."""
    if len(xs) == 1:
        return ys[0]
    j = int(np.clip(np.searchsorted(xs, x) - 1, 0, len(xs) - 2))
    w = float(np.clip((x - xs[j]) / (xs[j + 1] - xs[j]), 0.0, 1.0))
    lo, hi = ys[j], ys[j + 1]
    lo_only = lo if w < 1 else np.full_like(lo, np.nan)
    hi_only = hi if w > 0 else np.full_like(hi, np.nan)
    return np.where(np.isnan(lo), hi_only, np.where(np.isnan(hi), lo_only, (1 - w) * lo + w * hi))


def _at_level(values: np.ndarray, keys: np.ndarray, own: np.ndarray) -> np.ndarray:
    """One level's prediction: ``values``/``keys`` [G, C] (measured rows and their distance keys),
    ``own`` [C] the target electrode's distance keys (0: the channel on that electrode)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)          # all-NaN groups (no latency there)
        profile = {int(d): np.nanmean(values[keys == d]) for d in np.unique(keys) if d >= 0}
        base = np.vectorize(lambda d: profile.get(int(d), np.nan), otypes=[float])(keys)
        offset = np.nan_to_num(np.nanmean(np.where(keys > 0, values - base, np.nan), 0))
    return np.array([profile.get(int(d), np.nan) for d in own]) + np.where(own > 0, offset, 0.0)


def distance_channel_prediction(electrodes, amplitudes, probability, latency_s, unit_xy_um,
                                electrode_xy_um: Mapping, target_electrodes, target_amplitudes,
                                resolution_um: float = RESOLUTION_UM):
    """Predict response probabilities and median latencies from other electrodes by distance and channel.

    Parameters
    ----------
    electrodes, amplitudes : [G] the measured conditions (electrode ids; amplitudes in uA, sign ignored).
    probability : [G, C] measured response probability of each channel (NaN: not measured).
    latency_s : [G, C] measured median first-spike latency (s; NaN: no response).
    unit_xy_um : [C, 2] channel positions (um).
    electrode_xy_um : {electrode id: (x, y) um}; an electrode missing or at NaN has no distances.
    target_electrodes, target_amplitudes : [K] the conditions to predict (uA, sign ignored).
    resolution_um : distances are pooled to this many um.

    Returns
    -------
    (probability [K, C] in [0, 1], latency [K, C] in s). A target electrode's own measured rows are
    left out: only the other electrodes inform its prediction. NaN where nothing informs a channel
    (no position, no measured pair at its distance).
    """
    e_obs = np.asarray(electrodes, np.int64)
    a_obs = np.round(np.abs(np.asarray(amplitudes, float)), 6)
    p_obs, l_obs = np.asarray(probability, float), np.asarray(latency_s, float)
    xy = np.asarray(unit_xy_um, float)
    levels = np.unique(a_obs)

    def keys_of(e) -> np.ndarray:
        # an electrode or channel without a position has no distance (-1): it informs nothing, and
        # its own prediction is NaN
        d = np.hypot(*(xy - np.asarray(electrode_xy_um.get(int(e), (np.nan, np.nan)), float)).T)
        return np.where(np.isfinite(d), np.round(np.nan_to_num(d) / resolution_um), -1).astype(np.int64)

    keys = {int(e): keys_of(e) for e in np.unique(np.concatenate([e_obs, np.asarray(target_electrodes, np.int64)]))}
    probs, lats = [], []
    for e, a in zip(np.asarray(target_electrodes, np.int64), np.abs(np.asarray(target_amplitudes, float))):
        per_level = []
        for lv in levels:
            rows = np.nonzero((a_obs == lv) & (e_obs != e))[0]
            if not len(rows):
                per_level.append(np.full((2, xy.shape[0]), np.nan))
                continue
            k = np.array([keys[int(x)] for x in e_obs[rows]])
            per_level.append(np.stack([_at_level(p_obs[rows], k, keys[int(e)]),
                                       _at_level(l_obs[rows], k, keys[int(e)])]))
        per_level = np.array(per_level)                                    # [A, 2, C]
        probs.append(_interp(float(a), levels, per_level[:, 0]))
        lats.append(_interp(float(a), levels, per_level[:, 1]))
    return np.clip(np.array(probs), 0.0, 1.0), np.array(lats)


def model_free_check(fitted, check, recording) -> dict:
    """:func:`organoid_sim.stats.evoked_agreement` of the model-free reference on a calibration's check.

    Parameters
    ----------
    fitted : EvokedResponses (by amplitude) of the pulses the calibration fitted.
    check : EvokedResponses (by amplitude) of the held-out check pulses.
    recording : the session (unit and electrode positions, um).

    Returns
    -------
    dict
        The agreement figures (response-probability r, median latency error ms, ...) of the
        reference built from ``fitted`` against ``check``.
    """
    from ..stats import evoked_agreement

    xy, exy = recording_geometry(recording, fitted.unit_ids)
    p, lat = distance_channel_prediction(fitted.electrodes, fitted.amplitudes, fitted.response_probability,
                                         fitted.median_latency_s, xy, exy, check.electrodes, check.amplitudes)
    return evoked_agreement(check.response_probability, check.median_latency_s, p, lat)


def recording_geometry(recording, unit_ids):
    """The positions :func:`distance_channel_prediction` takes, from a recording.

    Parameters
    ----------
    recording : SpikeRecording
        Its unit and electrode positions (um).
    unit_ids : array
        The units (channels) of the prediction, in its column order.

    Returns
    -------
    (unit_xy_um [C, 2], {electrode id: (x, y) um})
    """
    col = {u: i for i, u in enumerate(np.asarray(recording.unit_ids).tolist())}
    xy = np.asarray(recording.positions, float)[[col[u] for u in np.asarray(unit_ids).tolist()]]
    return xy, {int(e): p for e, p in zip(recording.electrodes.ids, recording.electrodes.positions)}
