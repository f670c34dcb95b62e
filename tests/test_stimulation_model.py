"""A small fitted SpikingNetworkModel shared by the stimulation tests (fitted once per session), and the
checks that the fitted model offers what stimulation needs (INTERFACES.md, stimulation input port)."""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import pytest

from organoid_sim import SpikeRecording
from organoid_sim.stimulation import CL1

UNITS = np.array([9, 12, 18, 21, 27, 30, 36, 45])


@lru_cache(maxsize=1)
def small_fitted_model():
    """8 Poisson-ish units on the CL1 grid, 20 s, fitted with a short teacher-forced fit (seeded)."""
    models = pytest.importorskip("organoid_sim.models")
    rng = np.random.default_rng(7)
    spikes = [np.sort(rng.uniform(0, 20.0, rng.integers(40, 80))) for _ in UNITS]
    rec = SpikeRecording.from_spike_times(spikes, t_stop=20.0, electrode_ids=UNITS, electrodes=CL1.electrodes())
    return models.SpikingNetworkModel(dt_ms=2.0).fit(rec, max_epochs=2, refine_steps=0, calibration_rounds=0,
                                                     progress=False, seed=0)


def test_fitted_model_has_the_stimulation_port():
    m = small_fitted_model()
    assert m.n_recorded == len(UNITS) and m.stim_coupling is not None
    np.testing.assert_array_equal(m.layout["electrode_ids"], UNITS)
    # recorded neurons sit at their electrodes (um), which is what the distance prior uses
    np.testing.assert_allclose(m.neuron_xy_um[: len(UNITS)].numpy(), CL1.electrodes().position_of(UNITS))
