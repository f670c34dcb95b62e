"""A known coupled network for the fitting tests: positive and negative couplings and adaptation,
bursting like a culture."""

from __future__ import annotations

import math

import numpy as np
import torch

from organoid_sim import SpikeRecording
from organoid_sim.models import SpikingNetworkModel


def ground_truth(n: int = 8, seed: int = 0) -> SpikingNetworkModel:
    """A known coupled network (positive and negative couplings, adaptation): it bursts like a
    culture (network bursts of ~90 ms about every 3 s, 1-2.5 Hz per neuron)."""
    xy = np.stack([200.0 * (np.arange(n) % 4), 200.0 * (np.arange(n) // 4)], axis=1)
    tmpl = SpikeRecording.from_spike_times([np.array([0.5])] * n, t_start=0.0, t_stop=1.0,
                                           electrode_ids=np.arange(n), positions=xy, metadata={"well": "T1"})
    m = SpikingNetworkModel(seed=seed, n_hidden=0)
    m.attach_recording(tmpl)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        mask = (torch.rand(m.weight.shape, generator=g) < 0.5).float()
        m.weight.copy_(mask * torch.randn(m.weight.shape, generator=g) * 0.6)
        m.bias.copy_(torch.full((n,), 0.8) + 0.1 * torch.randn(n, generator=g))
        m.beta_raw.fill_(math.log(math.expm1(0.5)))   # adaptation 0.5 threshold units per spike
    return m
