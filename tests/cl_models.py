"""Small saved models for the cl tests: a 16-unit network on CL1 channels with known weights (the
ground truth), and a model fitted to a recording of it."""

from __future__ import annotations

import numpy as np

#: the 16 CL1 channels (4 x 4 block, rows 1-4, columns 1-4) the units sit on
CHANNELS = np.array([9, 10, 11, 12, 17, 18, 19, 20, 25, 26, 27, 28, 33, 34, 35, 36])


def _positions(ch):
    return np.c_[(ch % 8) * 200.0, (ch // 8) * 200.0]


def ground_truth(seed: int = 0, channels=CHANNELS):
    """A ``SpikingNetworkModel`` of 16 units on :data:`CHANNELS` (or ``channels``) with weak
    excitatory coupling and the physical stimulus-coupling prior (the known ground truth)."""
    import torch

    from organoid_sim.models import SpikingNetworkModel
    from organoid_sim.recording import SpikeRecording

    rng = np.random.default_rng(seed)
    trains = [np.sort(rng.uniform(0, 60, rng.poisson(60 * r))) for r in rng.uniform(2, 8, len(channels))]
    rec = SpikeRecording.from_spike_times(trains, t_stop=60.0, electrode_ids=channels,
                                          positions=_positions(np.asarray(channels)))
    # 5 ms = 125 frames a step: the stream tests read in blocks on step bounds
    model = SpikingNetworkModel(seed=seed, n_hidden=0, dt_ms=5.0)
    model.attach_recording(rec)
    with torch.no_grad():
        w = torch.zeros_like(model.weight)
        w[0] = torch.as_tensor(rng.normal(0.15, 0.05, (16, 16)).clip(0), dtype=torch.float32)
        model.weight.copy_(w)
    return model


def fitted(seed: int = 0, duration_s: float = 60.0):
    """A model with 4 hidden neurons fitted (short fit: 5 epochs, no refinement, one calibration
    round) to ``duration_s`` of the ground truth's spontaneous activity."""
    from organoid_sim.models import SpikingNetworkModel

    rec = ground_truth(seed).simulate(duration_s, seed=seed + 1)
    opts = dict(max_epochs=5, refine_steps=0, calibration_rounds=1, progress=False)
    try:  # fit options as constructor parameters (newer releases)
        model = SpikingNetworkModel(seed=seed, n_hidden=4, dt_ms=5.0, **opts)   # hidden neurons: on no channel
    except TypeError:  # releases where they are arguments of fit()
        model = SpikingNetworkModel(seed=seed, n_hidden=4, dt_ms=5.0)
        return model.fit(rec, **opts)
    return model.fit(rec)


def response_probability(stim_times, spikes_t, spikes_ch, channels, window=(0.002, 0.050)):
    """Fraction of pulses followed by at least one spike on each channel within ``window`` (s).

    Parameters
    ----------
    stim_times : pulse onsets (s).
    spikes_t, spikes_ch : spike times (s) and their channels.
    channels : channels to report.
    window : (start, end) after each pulse (s).

    Returns
    -------
    float array ``[len(channels)]``.
    """
    stim_times = np.asarray(stim_times, float)
    out = []
    for c in channels:
        t = np.sort(np.asarray(spikes_t)[np.asarray(spikes_ch) == c])
        lo = np.searchsorted(t, stim_times + window[0])
        hi = np.searchsorted(t, stim_times + window[1])
        out.append(float(np.mean(hi > lo)) if len(stim_times) else np.nan)
    return np.array(out)
