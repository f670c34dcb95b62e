"""StimulusCoupling: monotone in charge and distance, kernel conserves the drive, config round trip."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from organoid_sim.events import StimEvents
from organoid_sim.nn.stim_coupling import StimulusCoupling, charge_per_phase_nc
from organoid_sim.recording import Electrodes


pytestmark = pytest.mark.usefixtures("one_thread")


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


# ---------------------------------------------------------------------------------- direct pathway
def _direct_layout(**kw):
    electrodes = Electrodes(np.array([0]), np.array([0.0]), np.array([0.0]))
    xy = np.array([[0, 0], [100, 0], [200, 0], [300, 0], [600, 0]], float)
    return StimulusCoupling.from_prior(xy, electrodes, **kw), xy


def test_direct_pathway_is_monotone_saturating_and_closed_form():
    coupling, xy = _direct_layout(direct_gain=2.5, direct_q50_nc=0.2, direct_hill=1.5, direct_length_um=250.0,
                                  direct_power=4.0, direct_local_fraction=0.3)
    assert coupling.direct
    with torch.no_grad():
        m = coupling.direct_strength(_events(np.linspace(0.2, 3.0, 10), electrode=0)).numpy()   # [K, N]
    assert np.all(np.diff(m, axis=0) > 0), "direct spikes must grow with charge"
    assert np.all(np.diff(m, axis=1) < 0), "direct spikes must fall with distance"
    assert m.max() < 2.5
    # closed form at 300 um, 2 uA x 200 us = 0.4 nC: two-component effective charge, Hill(1.5)
    q = 0.4 * (0.3 / (1 + (300 / 50.0) ** 2) + 0.7 / (1 + (300 / 250.0) ** 4))
    x = (q / 0.2) ** 1.5
    with torch.no_grad():
        got = coupling.direct_strength(_events([2.0], electrode=0)).numpy()[0, 3]
    assert got == pytest.approx(2.5 * x / (1 + x), rel=1e-5)


def test_direct_input_delivers_all_spikes_later_with_distance():
    coupling, xy = _direct_layout(velocity_um_per_ms=50.0, direct_tau_ms=1.0)
    ev = StimEvents.from_columns([0.0104], 0, [2.0], 200.0, 2)
    dt_s = 2.5e-4
    with torch.no_grad():
        m = coupling.direct_strength(ev).numpy()[0]
        d = coupling.direct_input(ev, int(0.1 / dt_s), dt_s).numpy()                  # [T, N]
    np.testing.assert_allclose(d.sum(0), m, rtol=1e-3)
    # peak of the alpha kernel tau after the onset plus the conduction delay d / v
    peak_s = (np.argmax(d, axis=0) + 0.5) * dt_s - 0.0104
    np.testing.assert_allclose(peak_s, 1e-3 + np.hypot(*xy.T) / 50.0 * 1e-3, atol=dt_s)
    assert d[: int(0.0104 / dt_s)].sum() == 0
    # the membrane pathway is untouched by the direct one
    plain, _ = _direct_layout(direct=False)
    torch.testing.assert_close(coupling(ev, 400, dt_s), plain(ev, 400, dt_s))
    assert plain.direct_input(ev, 400, dt_s) is None and "direct_gain" not in plain.values()


def _silent_model():
    from test_calibrate import grid_model

    model, _ = grid_model(dt_ms=1.0)
    with torch.no_grad():            # no spontaneous spikes, no synaptic answers: only direct spikes remain
        model.bias.fill_(-30.0)
        model.weight.zero_()
    return model


def test_direct_response_probability_is_one_minus_exp_of_minus_m():
    """With the network silenced, P(a neuron spikes after a pulse) = 1 - exp(-m) (closed form), on the
    NumPy fast path and on the torch step alike."""
    from organoid_sim.nn.neurons import NetworkState, lif_step

    model = _silent_model()
    coupling = model.stim_coupling
    coupling.set_value("gain", 1e-6)              # no membrane drive either
    ev = StimEvents.from_columns([0.0], [4], [-2.0], 200.0, 2)
    n_steps, B = 40, 4000
    with torch.no_grad():
        m = coupling.direct_strength(ev).numpy()[0]
        direct = coupling.direct_input(ev, n_steps, 1e-3)
        ext = coupling(ev, n_steps, 1e-3)
    m_win = direct.sum(0).numpy()
    assert np.all(m_win > 0.97 * m) and m.max() > 1.0 and m.min() < 0.3   # graded across the 3x3 grid
    want = 1.0 - np.exp(-m_win)
    ev_np, _, _ = model.run(n_steps, batch=B, seed=1, ext=ext, direct=direct)
    hit = np.zeros((B, 9), bool)
    hit[ev_np[:, 1], ev_np[:, 2]] = True
    tol = 4.0 * np.sqrt(want * (1 - want) / B) + 1e-3
    assert np.all(np.abs(hit.mean(0) - want) < tol)
    # the torch step (used on GPUs): same closed form
    gen = torch.Generator().manual_seed(2)
    p = model.step_params()
    st = NetworkState.rest(B, 9, model.n_syn)
    any_spike = torch.zeros(B, 9, dtype=torch.bool)
    with torch.no_grad():
        for t in range(n_steps):
            st, _ = lif_step(p, st, ext[t], torch.rand(B, 9, generator=gen), model.observation, model.surrogate,
                             direct=direct[t])
            any_spike |= st.s > 0
    assert np.all(np.abs(any_spike.float().mean(0).numpy() - want) < tol)


def test_model_with_direct_pathway_round_trips_and_old_files_load(tmp_path):
    import organoid_sim

    model = _silent_model()
    with torch.no_grad():
        model.bias.fill_(0.5)                     # some spontaneous activity
    coupling = model.stim_coupling
    coupling.set_value("direct_gain", 1.7)
    coupling.set_value("velocity_um_per_ms", 250.0)
    coupling.set_value("direct_local_fraction", 0.35)
    with torch.no_grad():
        coupling.neuron_log_gain[3] = 0.4
    ev = StimEvents.from_columns([0.05, 0.15, 0.25], [0, 4, 8], [-1.0, -2.0, -3.0], 200.0, 2)
    model.save(tmp_path / "m")
    again = organoid_sim.load_model(tmp_path / "m")
    assert again.stim_coupling.direct and again.stim_coupling.values() == pytest.approx(coupling.values())
    a, b = model.stimulate(ev, seed=5), again.stimulate(ev, seed=5)
    assert len(a.times) > 0
    np.testing.assert_array_equal(a.times, b.times)
    np.testing.assert_array_equal(a.unit_index, b.unit_index)
    # a coupling saved before the direct pathway existed: no 'direct' in its config, no tensors for it
    cfg = {k: v for k, v in coupling.config().items() if not k.startswith(("direct", "velocity"))}
    state = {k: v for k, v in coupling.state_dict().items() if not k.startswith(("log_direct", "log_velocity"))}
    old = StimulusCoupling.from_config(cfg)
    old.load_state_dict(state)
    assert not old.direct and old.direct_input(ev, 10, 1e-3) is None
    torch.testing.assert_close(old.strength(ev), coupling.strength(ev))


def _assert_scaled_and_round_trip(coupling, ev, before, want, new_keys, tmp_path):
    """``coupling``'s membrane and direct drives of ``ev`` are ``want``; saved and loaded they stay so, and
    loaded from a file without ``new_keys`` (older) they are ``before``."""
    with torch.no_grad():
        got = coupling.strength(ev), coupling.direct_strength(ev)
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w)
    save_file({k: v.contiguous() for k, v in coupling.state_dict().items()}, tmp_path / "c.safetensors")
    again = StimulusCoupling.from_config(json.loads(json.dumps(coupling.config())))
    again.load_state_dict(load_file(tmp_path / "c.safetensors"))
    torch.testing.assert_close(again.strength(ev), got[0])
    torch.testing.assert_close(again.direct_strength(ev), got[1])
    old = StimulusCoupling.from_config(coupling.config())
    old.load_state_dict({k: v for k, v in coupling.state_dict().items() if k not in new_keys})
    torch.testing.assert_close(old.strength(ev), before[0])
    torch.testing.assert_close(old.direct_strength(ev), before[1])


def test_pair_gains_scale_only_their_electrode_and_neuron_and_round_trip(tmp_path):
    """A pair log-gain g on (electrode 7, neuron 1) multiplies both pathways' drive of exactly that pair
    by exp(g); other pairs keep theirs; saved and loaded (also from files that predate pair gains)."""
    coupling, _ = _layout()
    ev = StimEvents.from_columns([0.0, 0.1], [3, 7], [-2.0, -2.0], 200.0, 2)
    with torch.no_grad():
        m0, d0 = coupling.strength(ev).clone(), coupling.direct_strength(ev).clone()
    pair = np.zeros((2, 3), np.float32)          # pair gains for the first 3 neurons only
    pair[1, 1] = np.log(3.0)
    coupling.set_pair_log_gain(pair)
    want_m, want_d = m0.clone(), d0.clone()
    want_m[1, 1] *= 3.0
    want_d[1, 1] *= 3.0
    _assert_scaled_and_round_trip(coupling, ev, (m0, d0), (want_m, want_d), ("pair_log_gain",), tmp_path)
    with pytest.raises(ValueError, match="pair_log_gain"):
        coupling.set_pair_log_gain(np.zeros((3, 2)))


def test_pair_slopes_scale_the_drive_as_a_power_of_charge_and_round_trip(tmp_path):
    """A pair charge slope s around log charge x_ref multiplies that pair's drive (both pathways) by
    (q / exp(x_ref))^s, on top of its pair gain; other pairs keep theirs; saved and loaded, and a
    file without slopes (older) loads as none."""
    coupling, _ = _layout()
    amps = np.array([-1.0, -2.0, -3.0])
    ev = StimEvents.from_columns(np.arange(3) * 0.1, [7, 7, 7], amps, 200.0, 2)
    q = np.abs(amps) * 200.0 * 1e-3                                   # nC per phase
    pair = np.zeros((2, 3), np.float32)
    pair[1, 1] = np.log(2.0)
    coupling.set_pair_log_gain(pair)
    with torch.no_grad():
        m0, d0 = coupling.strength(ev).clone(), coupling.direct_strength(ev).clone()
    slope = np.zeros((2, 3), np.float32)
    slope[1, 1] = 1.5
    x_ref = float(np.log(0.4))
    coupling.set_pair_log_gain(pair, slope, log_q_ref=x_ref)
    factor = torch.as_tensor((q / 0.4) ** 1.5, dtype=torch.float32)
    want_m, want_d = m0.clone(), d0.clone()
    want_m[:, 1] *= factor
    want_d[:, 1] *= factor
    _assert_scaled_and_round_trip(coupling, ev, (m0, d0), (want_m, want_d), ("pair_log_slope", "pair_log_q_ref"),
                                  tmp_path)
    with pytest.raises(ValueError, match="pair_log_slope"):
        coupling.set_pair_log_gain(pair, np.zeros((2, 2)))
    coupling.set_pair_log_gain(np.zeros((0, 0)))                       # switching pairs off drops the slopes
    assert coupling.pair_log_slope.numel() == 0
