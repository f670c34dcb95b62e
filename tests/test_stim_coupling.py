"""StimulusCoupling: monotone in charge and distance, kernel conserves the drive, config round trip."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from organoid_sim.events import StimEvents
from organoid_sim.models.stim_coupling import StimulusCoupling, charge_per_phase_nc
from organoid_sim.recording import Electrodes


def _layout():
    electrodes = Electrodes(np.array([3, 7]), np.array([0.0, 200.0]), np.array([0.0, 0.0]))
    # neurons on a line away from electrode 3, at 0, 20, 50, 100, 300 um
    xy = np.array([[0, 0], [20, 0], [0, 50], [-100, 0], [0, -300]], float)
    return StimulusCoupling.from_prior(xy, electrodes), xy


def _events(amps, phase_us=200.0, electrode=3, unit="uA"):
    amps = np.atleast_1d(np.asarray(amps, float))
    return StimEvents.from_columns(np.arange(len(amps)) * 0.1, electrode, amps, phase_us, 2, amplitude_unit=unit)


def test_charge_matches_interface_formula():
    ev = _events([-1.5, 2.0], phase_us=160.0)
    np.testing.assert_allclose(charge_per_phase_nc(ev), [1.5 * 160e-3, 2.0 * 160e-3])
    mv = _events([100.0], unit="mV")
    np.testing.assert_allclose(charge_per_phase_nc(mv, ua_per_mv=1e-3), [0.1 * 200e-3])


def test_strength_monotone_in_charge_and_distance():
    coupling, xy = _layout()
    with torch.no_grad():
        s = coupling.strength(_events(np.linspace(0.1, 3.0, 12))).numpy()    # [K, N]
    assert np.all(np.diff(s, axis=0) > 0), "strength must grow with charge at every neuron"
    d = np.hypot(*xy.T)
    order = np.argsort(d)
    assert np.all(np.diff(s[:, order], axis=1) < 0), "strength must fall with distance"
    # saturating: never exceeds the gain, and the increments shrink at high charge
    assert s.max() < coupling.values()["gain"]
    big = coupling.strength(_events([100.0, 200.0])).detach().numpy()[:, 0]
    assert big[1] - big[0] < 0.01 * big[0]


def test_sign_of_amplitude_does_not_matter_and_far_electrode_reaches_less():
    coupling, _ = _layout()
    with torch.no_grad():
        a = coupling.strength(_events([-2.0])).numpy()
        b = coupling.strength(_events([2.0])).numpy()
        far = coupling.strength(_events([2.0], electrode=7)).numpy()
    np.testing.assert_allclose(a, b)
    assert far[0, 0] < a[0, 0]


def test_forward_delivers_the_whole_strength_with_alpha_time_course():
    coupling, _ = _layout()
    ev = StimEvents.from_columns([0.0123], 3, [2.0], 200.0, 2)
    with torch.no_grad():
        total = coupling.strength(ev).numpy()[0]
        for dt_s in (1e-3, 2.5e-4):
            cur = coupling(ev, n_steps=int(0.2 / dt_s), dt_s=dt_s, t0=0.0).numpy()
            np.testing.assert_allclose(cur.sum(0), total, rtol=1e-3)
            assert cur[: int(0.0123 / dt_s)].sum() == 0          # nothing before the pulse
            # the alpha kernel t/tau^2 exp(-t/tau) peaks tau ms after the onset
            tau_s = coupling.values()["tau_ms"] * 1e-3
            peak = (np.argmax(cur[:, 0]) + 0.5) * dt_s - 0.0123
            assert abs(peak - tau_s) <= dt_s
    # closed form of the alpha-kernel integral over the first full step after the onset
    dt_s = 1e-3
    cur = coupling(ev, 50, dt_s).detach().numpy()[:, 0]
    tau = coupling.values()["tau_ms"] * 1e-3
    cdf = lambda t: 1 - (1 + t / tau) * np.exp(-t / tau)  # noqa: E731
    np.testing.assert_allclose(cur[13], total[0] * (cdf(0.014 - 0.0123) - cdf(0.013 - 0.0123)), rtol=1e-4)


def test_window_offset_and_gradients():
    coupling, _ = _layout()
    ev = StimEvents.from_columns([0.5, 0.52], 3, [1.0, 2.0], 200.0, 2)
    full = coupling(ev, 1000, 1e-3, 0.0)
    part = coupling(ev, 100, 1e-3, 0.45)
    torch.testing.assert_close(part, full[450:550])
    part.sum().backward()
    for p in (coupling.log_gain, coupling.log_q50_nc, coupling.log_length_um, coupling.neuron_log_gain):
        assert p.grad is not None and torch.isfinite(p.grad).all()


def test_unknown_electrode_is_refused():
    coupling, _ = _layout()
    with pytest.raises(ValueError, match=r"electrodes \[99\]"):
        coupling(_events([1.0], electrode=99), 10, 1e-3)


def test_config_and_safetensors_round_trip(tmp_path):
    coupling, _ = _layout()
    with torch.no_grad():
        coupling.log_gain += 0.3
        coupling.neuron_log_gain[2] = -0.5
    save_file({k: v.contiguous() for k, v in coupling.state_dict().items()}, tmp_path / "c.safetensors")
    cfg = json.loads(json.dumps(coupling.config()))
    again = StimulusCoupling.from_config(cfg)
    again.load_state_dict(load_file(tmp_path / "c.safetensors"))
    ev = _events([0.5, 1.0, 2.0])
    torch.testing.assert_close(again(ev, 400, 1e-3), coupling(ev, 400, 1e-3))


def test_distance_power_broadens_the_spread_and_old_files_load():
    electrodes = Electrodes(np.array([0]), np.array([0.0]), np.array([0.0]))
    xy = np.array([[0, 0], [100, 0], [200, 0], [400, 0]], float)
    ev = _events([2.0], electrode=0)
    steep = StimulusCoupling.from_prior(xy, electrodes, length_um=50.0, distance_power=2.0)
    broad = StimulusCoupling.from_prior(xy, electrodes, length_um=50.0, distance_power=1.0)
    s, b = steep.strength(ev).detach().numpy()[0], broad.strength(ev).detach().numpy()[0]
    assert s[0] == pytest.approx(b[0]) and np.all(b[1:] > s[1:]) and np.all(np.diff(b) < 0)
    # closed form of the effective charge: q / (1 + (d / L)^p), Hill(2) with q50 = 0.3 nC, gain 3
    q_eff = 0.4 / (1 + (400 / 50.0) ** 1.0)
    assert b[3] == pytest.approx(3 * q_eff ** 2 / (q_eff ** 2 + 0.3 ** 2), rel=1e-5)
    state = {k: v for k, v in broad.state_dict().items() if k != "log_distance_power"}
    old = StimulusCoupling.from_config({**broad.config(), "distance_power": 2.0})
    old.load_state_dict(state)
    assert old.values()["distance_power"] == pytest.approx(2.0)
