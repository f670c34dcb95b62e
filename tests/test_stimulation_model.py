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
    return models.SpikingNetworkModel(n_hidden=0, dt_ms=2.0, max_epochs=2, refine_steps=0, calibration_rounds=0,
                                      progress=False, fit_seed=0).fit(rec)


def test_fitted_model_has_the_stimulation_port():
    m = small_fitted_model()
    assert m.n_recorded == len(UNITS) and m.stim_coupling is not None
    np.testing.assert_array_equal(m.layout["electrode_ids"], UNITS)
    # recorded neurons sit at their electrodes (um), which is what the distance prior uses
    np.testing.assert_allclose(m.neuron_xy_um[: len(UNITS)].numpy(), CL1.electrodes().position_of(UNITS))


def test_stimulated_runs_read_their_input_chunk_by_chunk_bit_identically():
    """``simulate(stim=...)`` no longer builds ``[n_steps, n_neurons]`` inputs: the coupling's rows,
    computed block by block (block edges inside a pulse's 32 ms kernel too), equal the slices of
    the whole-window input, and the spikes equal those of a run fed the whole-window input."""
    import torch

    from organoid_sim.events import StimEvents

    m = small_fitted_model()
    n, dt_s = 1500, m.dt_ms / 1000.0                                # 3 s at 2 ms
    times = np.arange(0.05, 2.9, 0.037)
    ev = StimEvents.from_columns(times, UNITS[np.arange(len(times)) % 3], 1.0 + (np.arange(len(times)) % 4),
                                 200.0, 2, amplitude_unit="uA")
    ext, direct = m.stim_coupling.inputs(ev, n, dt_s, 0.0)
    lazy_ext, lazy_direct = m.stim_coupling.lazy_inputs(ev, n, dt_s, 0.0)
    assert direct is not None and float(direct.sum()) > 0
    for lo, hi in [(0, 1), (0, 97), (97, 1500), (500, 509), (1499, 1500), (1400, 1600)]:
        assert torch.equal(lazy_ext.rows(lo, hi), ext[lo:hi]), (lo, hi)
        assert torch.equal(lazy_direct.rows(lo, hi), direct[lo:hi]), (lo, hi)
    whole = m.run(n, seed=3, ext=ext, direct=direct, burn_in_steps=50)[0]
    chunked = m.run(n, seed=3, ext=lazy_ext, direct=lazy_direct, burn_in_steps=50, chunk_steps=64)[0]
    np.testing.assert_array_equal(whole, chunked)
    sim = m.simulate(n * dt_s, seed=3, stim=ev)
    dense = m.run(n, seed=3, ext=ext, direct=direct)[0]
    assert sim.n_spikes == int(dense[:, 3].sum()) > 0


def test_device_loop_reads_chunked_input_like_the_whole_window():
    """The step-by-step torch loop that runs on accelerators (``engine="torch"``, here on the CPU):
    row sources and whole-window tensors give the same spikes, and the evoked channels respond."""
    from organoid_sim.events import StimEvents

    m = small_fitted_model()
    n, dt_s = 600, m.dt_ms / 1000.0
    times = np.arange(0.05, 1.15, 0.05)
    ev = StimEvents.from_columns(times, UNITS[0], 3.0, 200.0, 2, amplitude_unit="uA")
    ext, direct = m.stim_coupling.inputs(ev, n, dt_s, 0.0)
    lazy_ext, lazy_direct = m.stim_coupling.lazy_inputs(ev, n, dt_s, 0.0)
    whole = m.run(n, seed=4, ext=ext, direct=direct, burn_in_steps=30, engine="torch")[0]
    chunked = m.run(n, seed=4, ext=lazy_ext, direct=lazy_direct, burn_in_steps=30, chunk_steps=64,
                    engine="torch")[0]
    np.testing.assert_array_equal(whole, chunked)
    quiet = m.run(n, seed=4, burn_in_steps=30, engine="torch")[0]
    stimulated = np.isin(np.arange(m.n_recorded), [0])
    assert whole[stimulated[whole[:, 2]], 3].sum() > quiet[stimulated[quiet[:, 2]], 3].sum() + 10
    with pytest.raises(ValueError, match="engine"):
        m.run(10, engine="gpu")
