"""VirtualMEA: CL-API-shaped closed loop over a fitted SpikingNetworkModel."""

from __future__ import annotations

import math

import numpy as np
import pytest
import test_stimulation_model as _shared

from organoid_sim.stimulation import CL1, BurstDesign, ChannelSet, DeviceLimitError, StimDesign, VirtualMEA

UNITS = _shared.UNITS


@pytest.fixture(scope="module")
def model():
    return _shared.small_fitted_model()


def _session(model, seconds=0.5, tps=100, seed=0, stim_at=(), design=None, **kw):
    design = design or StimDesign(160, -3.0, 160, 3.0)
    ticks = []
    with VirtualMEA(model, device=CL1, seed=seed, **kw).open() as neurons:
        for tick in neurons.loop(ticks_per_second=tps, stop_after_seconds=seconds):
            ticks.append(tick)
            if tick.iteration in stim_at:
                neurons.stim(ChannelSet(9, 12), design)
        rec = neurons.recording()
    return ticks, rec


def test_accelerated_tick_timing(model):
    tps, seconds = 100, 0.5
    ticks, rec = _session(model, seconds, tps)
    assert [t.iteration for t in ticks] == list(range(50))
    for k, t in enumerate(ticks):
        assert t.start_s == pytest.approx(k / tps, abs=1e-12) and t.stop_s == pytest.approx((k + 1) / tps, abs=1e-12)
        assert np.all((t.times >= t.start_s) & (t.times < t.stop_s))
        assert t.late_s == 0.0
        assert t.timestamp == round(k / tps * 25_000)
    # the ticks tile the session: their spikes are exactly the session recording's spikes
    all_times = np.concatenate([t.times for t in ticks])
    assert rec.t_start == 0.0 and rec.t_stop == pytest.approx(seconds)
    np.testing.assert_array_equal(np.sort(all_times), np.sort(rec.times))
    chans = np.concatenate([t.channels for t in ticks])
    assert set(chans.tolist()) <= set(UNITS.tolist())


def test_stop_after_ticks_and_bad_tick_rate(model):
    with VirtualMEA(model, seed=1).open() as neurons:
        assert len(list(neurons.loop(50, stop_after_ticks=7))) == 7
        assert neurons.time_s == pytest.approx(7 / 50)
        with pytest.raises(ValueError, match="whole number of model steps"):
            next(neurons.loop(300, stop_after_ticks=1))  # 3.33 ms ticks on a 2 ms grid


def test_stim_is_delivered_at_next_tick_with_lead_time(model):
    ticks, rec = _session(model, 0.3, 100, stim_at=(4,), design=StimDesign(160, -1.0, 160, 1.0))
    ev = rec.stim
    assert len(ev) == 2 and set(ev.electrode.tolist()) == {9, 12}
    np.testing.assert_allclose(ev.time, 0.05 + 80e-6)
    assert len(ticks[5].analysis.stims) == 2 and all(len(t.analysis.stims) == 0 for t in ticks if t.iteration != 5)
    np.testing.assert_allclose(ev.amplitude, -1.0)
    np.testing.assert_allclose(ev.phase_us, 160.0)


def test_burst_design_spreads_pulses(model):
    with VirtualMEA(model, device=CL1, seed=0).open() as neurons:
        new = neurons.stim(ChannelSet(18), StimDesign(200, -2.0, 200, 2.0), BurstDesign(4, 50))
        np.testing.assert_allclose(np.diff(new.time), 0.02)
        list(neurons.loop(100, stop_after_seconds=0.1))
        assert len(neurons.recording().stim) == 4


def test_device_limits_are_enforced_across_calls(model):
    with VirtualMEA(model, device=CL1, seed=0).open() as neurons:
        with pytest.raises(DeviceLimitError, match="maximum amplitude"):
            neurons.stim(ChannelSet(9), StimDesign(160, -4.0, 160, 4.0))
        neurons.stim(ChannelSet(9), StimDesign(160, -1.0, 160, 1.0), BurstDesign(2, 200))
        # a second train 1 ms later on the same electrode would exceed 200 Hz
        with pytest.raises(DeviceLimitError, match="pulse overlap|maximum frequency"):
            neurons.stim(9, StimDesign(160, -1.0, 160, 1.0))
        assert len(neurons.scheduled) == 2  # the refused pulse was not scheduled
        with pytest.raises(DeviceLimitError, match="electrode id"):
            neurons.stim(64, 1.0)


def test_same_seed_same_session_and_causality(model):
    _, a = _session(model, 0.4, 100, seed=3, stim_at=(10,))
    _, b = _session(model, 0.4, 100, seed=3, stim_at=(10,))
    assert a == b
    _, c = _session(model, 0.4, 100, seed=4, stim_at=(10,))
    assert not np.array_equal(a.times, c.times)
    # same seed without the pulse: identical up to the pulse (nothing leaks backwards in time) ...
    _, quiet = _session(model, 0.4, 100, seed=3)
    t_pulse = a.stim.time[0]
    np.testing.assert_array_equal(a.time_slice(0, 0.11).times, quiet.time_slice(0, 0.11).times)
    assert t_pulse == pytest.approx(0.11 + 80e-6)


def test_stimulation_reaches_neurons_under_the_electrode(model):
    # 3 uA x 160 us (0.48 nC) every 50 ms on the electrodes of units 9 and 12: their rate in the 20 ms after
    # a pulse must exceed their rate in the same session long after the pulses (state carried across ticks)
    ticks, rec = _session(model, 2.0, 100, seed=5, stim_at=tuple(range(0, 100, 5)))
    idx = [int(np.flatnonzero(rec.electrode_ids == e)[0]) for e in (9, 12)]
    times = np.concatenate([rec.spike_times[i] for i in idx])
    pulses = np.unique(rec.stim.time)
    lag = times[None, :] - pulses[:, None]
    evoked = np.sum((lag >= 0) & (lag < 0.02)) / (len(pulses) * 0.02)
    _, quiet = _session(model, 2.0, 100, seed=5)
    base = sum(len(quiet.spike_times[i]) for i in idx) / 2.0
    assert evoked > 2 * max(base, 1.0)


class _FakeClock:
    """A wall clock that only moves when slept on (or by ``lag`` per reading, to simulate a slow model)."""

    def __init__(self, lag: float = 0.0):
        self.now, self.lag, self.sleeps = 100.0, lag, []

    def monotonic(self):
        self.now += self.lag
        return self.now

    def sleep(self, s):
        self.sleeps.append(s)
        self.now += s


def test_paced_mode_waits_for_the_wall_clock(model):
    clock = _FakeClock()
    ticks, _ = _session(model, 0.2, 50, accelerated=False, clock=clock)
    assert len(ticks) == 10
    assert sum(clock.sleeps) == pytest.approx(0.2) and all(t.late_s == 0 for t in ticks)
    slow = _FakeClock(lag=0.05)  # each clock reading costs 50 ms of wall time: slower than real time
    ticks, _ = _session(model, 0.2, 50, accelerated=False, clock=slow)
    assert not slow.sleeps and ticks[-1].late_s > 0


def test_closed_session_refuses_use(model):
    mea = VirtualMEA(model)
    with mea.open() as neurons:
        pass
    with pytest.raises(RuntimeError, match="closed"):
        neurons.stim(9, 1.0)


def test_designs():
    d = StimDesign(160, -1.0, 160, 1.0)
    assert d.phase_us == (160.0, 160.0) and d.amplitudes == (-1.0, 1.0)
    with pytest.raises(ValueError, match="pairs"):
        StimDesign(160, -1.0, 160)
    assert ChannelSet(1, [2, 3]) == (1, 2, 3)
    with pytest.raises(ValueError, match="duplicate"):
        ChannelSet(1, 1)
    with pytest.raises(ValueError):
        BurstDesign(0, 10)


def test_warmup_starts_from_ongoing_activity(model):
    # with a warm-up the state at time 0 is not the resting state, so the first ticks differ from a cold
    # start with the same seed; the session clock still starts at 0
    _, cold = _session(model, 0.3, 100, seed=2)
    _, warm = _session(model, 0.3, 100, seed=2, warmup_s=0.5)
    assert warm.t_start == 0.0 and warm.t_stop == pytest.approx(0.3)
    assert not np.array_equal(cold.times, warm.times)
    with pytest.raises(ValueError, match="warmup_s"):
        VirtualMEA(model, warmup_s=-1)


def test_buffered_input_equals_the_coupling_over_all_pulses(model):
    # pulses are converted to current once when scheduled; every window's slice must equal what the coupling
    # gives for all pulses over that window (kernel tails crossing window edges included)
    import torch

    from organoid_sim import StimEvents
    from organoid_sim.stimulation.virtual_mea import ModelStepper

    stepper = ModelStepper(model, seed=0)
    a = StimEvents.from_columns([0.0091, 0.0119], [9, 12], -2.0, 160.0, 2)
    b = StimEvents.from_columns([0.0301], [18], -3.0, 200.0, 2)
    stepper.add_events(a)
    stepper.add_events(b)
    both = StimEvents.from_columns([0.0091, 0.0119, 0.0301], [9, 12, 18], [-2.0, -2.0, -3.0], [160.0, 160.0, 200.0], 2)
    dt = stepper.dt_s
    # the coupling's forward cuts each pulse's kernel after 10 time constants (< 0.1 % of its drive, as its
    # docstring says); the buffer keeps the whole tail, so they agree to 0.1 % of a pulse's total drive
    coupling = model.stim_coupling
    assert coupling.direct                       # the prior has the direct pathway: check both inputs
    total = coupling.strength(both).detach().max()
    total_direct = coupling.direct_strength(both).detach().max()
    got_all, got_direct_all = [], []
    for s0 in range(0, 60, 5):
        got, got_direct = stepper._input(s0, 5)
        want = coupling(both, 5, dt, s0 * dt).detach()
        want_direct = coupling.direct_input(both, 5, dt, s0 * dt).detach()
        got = torch.zeros_like(want) if got is None else got
        got_direct = torch.zeros_like(want_direct) if got_direct is None else got_direct
        torch.testing.assert_close(got, want, rtol=0, atol=float(1e-3 * total))
        torch.testing.assert_close(got_direct, want_direct, rtol=0, atol=float(1e-3 * total_direct))
        got_all.append(got)
        got_direct_all.append(got_direct)
    # and nothing is lost: summed over time each pulse delivers its whole drive (the kernel integrates to 1)
    torch.testing.assert_close(torch.cat(got_all).sum(0), coupling.strength(both).detach().sum(0),
                               rtol=2e-3, atol=1e-6)
    torch.testing.assert_close(torch.cat(got_direct_all).sum(0), coupling.direct_strength(both).detach().sum(0),
                               rtol=2e-3, atol=1e-6)


def test_spike_timestamps_are_the_frames_their_times_fall_in(model, monkeypatch):
    # a spike at time t lies in frame floor(t * 25 kHz); a spike in the last half frame of a tick belongs
    # to that tick, not to the next one's first frame (as in cl-sdk, start <= timestamp < next start)
    fps, tps = 25_000, 100
    with VirtualMEA(model, seed=0).open() as neurons:
        stepper = neurons._stepper

        def advance(t0, n_steps):
            t1 = t0 + n_steps * stepper.dt_s
            return np.array([t0, t0 + 0.3 / fps, t1 - 1.6 / fps, t1 - 0.2 / fps]), np.zeros(4, np.int64)

        monkeypatch.setattr(stepper, "advance", advance)
        for tick in neurons.loop(ticks_per_second=tps, stop_after_ticks=30):
            ts = [s.timestamp for s in tick.analysis.spikes]
            assert ts == [tick.timestamp, tick.timestamp, tick.timestamp + 248, tick.timestamp + 249], \
                (tick.iteration, ts)


def test_stop_after_seconds_runs_whole_ticks_covering_the_time(model):
    # cl-sdk's Loop runs ceil(stop_after_seconds * ticks_per_second) ticks: at least the time asked for
    with VirtualMEA(model, seed=0).open() as neurons:
        assert len(list(neurons.loop(100, stop_after_seconds=0.004))) == 1    # was 0: nothing ran
        assert len(list(neurons.loop(100, stop_after_seconds=0.025))) == 3    # was 2 (20 ms of 25)
        assert len(list(neurons.loop(100, stop_after_seconds=0.03))) == 3
        assert len(list(neurons.loop(10, stop_after_seconds=0.3))) == 3
        # where the product rounds up, as cl-sdk's math.ceil(0.07 * 100) = 8 does
        assert len(list(neurons.loop(100, stop_after_seconds=0.07))) == math.ceil(0.07 * 100) == 8


def test_documented_closed_loops_run_as_written(model):
    """The loops of docs/stimulation.md and of the module docstring ask for a 30 ms burst on every
    quiet tick; as written they must keep each burst clear of the last (CL1: no overlap, <= 200 Hz)."""
    import re
    import textwrap
    from pathlib import Path

    import organoid_sim.stimulation.virtual_mea as vm

    docs = (Path(__file__).resolve().parents[1] / "docs" / "stimulation.md").read_text(encoding="utf-8")
    from_docs = re.search(r"```python\n(from organoid_sim\.stimulation import VirtualMEA.*?)```", docs, re.S).group(1)
    from_docstring = textwrap.dedent(vm.__doc__.split("::\n", 1)[1].split("\nTime is simulated", 1)[0])
    for code in (from_docs, from_docstring):
        code = re.sub(r"stop_after_seconds=\d+", "stop_after_seconds=1", code)
        scope = {"model": model}
        exec(compile(code, "<documented loop>", "exec"), scope)
        stim = scope["session"].stim
        assert len(stim) >= 8                    # bursts were delivered (channels 40, 48: no units here)
        for e in np.unique(stim.electrode):
            assert np.diff(np.sort(stim.time[stim.electrode == e])).min() >= 0.005 - 1e-9
