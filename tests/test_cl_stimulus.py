"""engine.stimulus: the NumPy coupling equals the torch StimulusCoupling (reference) to float32 rounding,
row blocks equal the whole window, a saved model's coupling loads without torch."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from organoid_sim.engine.stimulus import Coupling, charge_per_phase_nc
from organoid_sim.events import StimEvents
from organoid_sim.nn.stim_coupling import StimulusCoupling
from organoid_sim.nn.stim_coupling import charge_per_phase_nc as torch_charge
from organoid_sim.recording import Electrodes

pytestmark = pytest.mark.usefixtures("one_thread")
ROOT = Path(__file__).resolve().parents[1]


def _torch_coupling(seed=0, direct=True, pairs=False, slopes=False):
    rng = np.random.default_rng(seed)
    electrodes = Electrodes(np.array([2, 5, 9, 11]), np.array([0.0, 200.0, 0.0, np.nan]),
                            np.array([0.0, 0.0, 200.0, np.nan]))
    xy = rng.uniform(-100, 300, size=(7, 2))
    c = StimulusCoupling.from_prior(xy, electrodes, direct=direct)
    with torch.no_grad():  # a calibrated-looking coupling, not the prior's round numbers
        c.neuron_log_gain.copy_(torch.as_tensor(rng.normal(0, 0.3, 7), dtype=torch.float32))
        c.set_value("q50_nc", 0.23)
        c.set_value("tau_ms", 1.7)
        if direct:
            c.set_value("direct_local_fraction", 0.65)
            c.set_value("velocity_um_per_ms", 80.0)
    if pairs:  # electrode x neuron gains for the first 5 neurons (the recorded ones)
        c.set_pair_log_gain(rng.normal(0, 0.5, (4, 5)), rng.normal(0, 0.8, (4, 5)) if slopes else None,
                            log_q_ref=-1.7)
    return c


def _events(rng, n=25, t_max=0.3, unit="uA"):
    t = np.sort(rng.uniform(0, t_max, n))
    t[3] = 0.017  # exactly on a step boundary (1 ms steps): the binning tolerance matters
    return StimEvents.from_columns(t, rng.choice([2, 5, 9, 11], n), rng.uniform(-3, 3, n),
                                   rng.choice([100.0, 160.0, 200.0], n), 2, amplitude_unit=unit)


def _numpy_coupling(c: StimulusCoupling) -> Coupling:
    tensors = {"stim_coupling." + k: v.detach().numpy() for k, v in c.state_dict().items()}
    return Coupling.from_parts(json.loads(json.dumps(c.config())), tensors)


@pytest.mark.parametrize("direct,pairs,slopes", [(True, False, False), (False, False, False), (True, True, False),
                                                 (True, True, True)])
def test_inputs_equal_torch_coupling(direct, pairs, slopes):
    rng = np.random.default_rng(1)
    c = _torch_coupling(direct=direct, pairs=pairs, slopes=slopes)
    nc = _numpy_coupling(c)
    ev = _events(rng)
    n_steps, dt, t0 = 320, 1e-3, -0.004
    with torch.no_grad():
        ref_m, ref_d = c.inputs(ev, n_steps, dt, t0)
        np.testing.assert_allclose(nc.strength(ev), c.strength(ev).numpy(), rtol=2e-6, atol=1e-7)
    m, d = nc.inputs(ev, n_steps, dt, t0)
    assert m.shape == (n_steps, 7) and m.dtype == np.float32
    assert np.abs(ref_m.numpy()).max() > 0.05  # the comparison is not between zeros
    np.testing.assert_allclose(m, ref_m.numpy(), rtol=1e-5, atol=1e-6)
    if direct:
        assert np.abs(ref_d.numpy()).max() > 0.01
        np.testing.assert_allclose(d, ref_d.numpy(), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(nc.direct_delay_s(ev), c.direct_delay_s(ev).detach().numpy(), rtol=1e-6)
    else:
        assert d is None and ref_d is None
    assert nc.span_s() == pytest.approx(c.span_s(), rel=1e-6)


def test_row_blocks_equal_whole_window_and_torch_rows():
    rng = np.random.default_rng(2)
    c = _torch_coupling()
    nc = _numpy_coupling(c)
    ev = _events(rng, n=40, t_max=0.5)
    n = 600
    full_m, full_d = nc.inputs(ev, n, 1e-3, 0.0)
    lm, ld = nc.lazy_inputs(ev, n, 1e-3, 0.0)
    tm, td = c.lazy_inputs(ev, n, 1e-3, 0.0)
    for lo, hi in ((0, 37), (37, 38), (38, 333), (333, 600)):
        np.testing.assert_array_equal(lm.rows(lo, hi), full_m[lo:hi])
        np.testing.assert_array_equal(ld.rows(lo, hi), full_d[lo:hi])
        with torch.no_grad():
            np.testing.assert_allclose(lm.rows(lo, hi), tm.rows(lo, hi).numpy(), rtol=1e-5, atol=1e-6)
            np.testing.assert_allclose(ld.rows(lo, hi), td.rows(lo, hi).numpy(), rtol=1e-5, atol=1e-6)


def test_voltage_mode_charge_and_unknown_electrode():
    ev = StimEvents.from_columns([0.0, 0.1], [2, 5], [100.0, -50.0], 200.0, 2, amplitude_unit="mV")
    np.testing.assert_allclose(charge_per_phase_nc(ev, 2e-3), torch_charge(ev, 2e-3))
    nc = _numpy_coupling(_torch_coupling())
    bad = StimEvents.from_columns([0.0], [42], [1.0], 200.0, 2)
    with pytest.raises(ValueError, match="electrodes \\[42\\]"):
        nc.strength(bad)
    # electrode 11 has no known position: it reaches no neuron (as in the torch coupling)
    nowhere = StimEvents.from_columns([0.0], [11], [3.0], 200.0, 2)
    assert not nc.strength(nowhere).any() and not nc.direct_strength(nowhere).any()


@pytest.mark.parametrize("pairs", [False, True])
def test_extra_electrodes_act_like_layout_electrodes(pairs):
    nc = _numpy_coupling(_torch_coupling(pairs=pairs))
    if pairs:   # the added electrode has no pair gains: it acts like electrode 2 without them
        nc.pair_log_gain[0] = 0.0
    ext = nc.with_electrodes([100], [[0.0, 0.0]])   # a second electrode where electrode 2 sits
    a = StimEvents.from_columns([0.01], [2], [2.0], 160.0, 2)
    b = StimEvents.from_columns([0.01], [100], [2.0], 160.0, 2)
    np.testing.assert_array_equal(ext.forward(a, 50, 1e-3), ext.forward(b, 50, 1e-3))
    with pytest.raises(ValueError, match="already exist"):
        nc.with_electrodes([2], [[0.0, 0.0]])


def _grid_recording(n_units=6, seed=0):
    """A few Poisson units on a 200 um grid (layout only matters here)."""
    from organoid_sim.recording import SpikeRecording

    rng = np.random.default_rng(seed)
    eid = np.arange(n_units) + 9
    trains = [np.sort(rng.uniform(0, 10, rng.poisson(30))) for _ in range(n_units)]
    return SpikeRecording.from_spike_times(trains, t_stop=10.0, electrode_ids=eid,
                                           positions=np.c_[(eid % 8) * 200.0, (eid // 8) * 200.0])


def test_model_dir_loads_without_torch(tmp_path):
    from organoid_sim.models import SpikingNetworkModel

    model = SpikingNetworkModel(seed=0, n_hidden=2)
    model.attach_recording(_grid_recording())
    model.save(tmp_path / "m")
    code = ("import sys; sys.modules['torch'] = None\n"
            "from organoid_sim.engine.stimulus import Coupling\n"
            f"c = Coupling.from_model_dir({str(tmp_path / 'm')!r})\n"
            "print(c.n_neurons, c.direct, c.value('gain'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                         env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr
    n, direct, gain = out.stdout.split()
    assert int(n) == model.n_neurons and direct == "True"
    assert float(gain) == pytest.approx(model.stim_coupling.values()["gain"], rel=1e-6)
