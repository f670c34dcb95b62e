"""Rate calibration of the fitted network: biases put off per unit are brought back so each unit's
free-running rate meets its target (rates counted independently with NumPy)."""

from __future__ import annotations

import copy
import sys
from pathlib import Path

import numpy as np
import torch

from organoid_sim.fit.calibrate import calibrate_rates

sys.path.insert(0, str(Path(__file__).parent))
from test_self_check import _ground_truth  # noqa: E402


def _rates(model, seconds, seed):
    sim = model.simulate(seconds, seed=seed, n_parallel=8, burn_in_s=5.0)
    return sim.spike_counts / sim.duration


def test_calibration_restores_per_unit_rates_of_a_known_network():
    gt = _ground_truth()
    rec = gt.simulate(300.0, seed=1)
    counts = gt._binned(rec)
    target = rec.spike_counts / rec.duration
    bad = copy.deepcopy(gt)
    sign = torch.tensor([1.0, -1.0] * (bad.n_neurons // 2))
    with torch.no_grad():   # every other unit 3x too fast, the others 3x too slow (if isolated)
        bad.bias += bad.delta_u * sign * np.log(3.0)
    before = np.median(np.abs(_rates(bad, 300.0, 7) - target) / target)
    out = calibrate_rates(bad, counts.float(), duration_s=30.0, seed=0, progress=False)
    print(before, out)
    after = np.median(np.abs(_rates(bad, 300.0, 7) - target) / target)
    assert before > 0.2 and after < 0.1 and after < before / 3
    assert len(out["calibration_rounds_err"]) == 8
