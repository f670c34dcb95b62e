"""cl.stream (no cl-sdk): the model as a CL1 data stream. Same seed -> same spikes whatever the read
sizes; pulses never change what was read; the evoked response equals model.stimulate()'s (reference:
the torch model) within a stated tolerance; frames hold the spikes' waveforms over the noise floor."""

from __future__ import annotations

import numpy as np
import pytest
from cl_models import CHANNELS, ground_truth, response_probability

from organoid_sim.cl.signal import TROUGH_FRAMES, UV_PER_UNIT
from organoid_sim.cl.stream import ModelStream
from organoid_sim.events import StimEvents

pytestmark = pytest.mark.usefixtures("one_thread")
FPS = 25_000


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("clmodel") / "gt"
    model = ground_truth(0)
    model.save(d)
    return d, model


def _read_all(stream, n_frames, sizes, pulses=(), late=False):
    """Read ``n_frames`` in blocks of ``sizes`` (cycled); each pulse ``(frame, channel, uA, us)`` is
    handed over before the block holding it is read (as cl-sdk does) or, with ``late``, in the
    middle of its block after part of it was read."""
    pulses = sorted(pulses)
    pos, i, sf, sc = 0, 0, [], []
    frames_out = []
    while pos < n_frames:
        n = min(sizes[i % len(sizes)], n_frames - pos)
        i += 1
        due = [p for p in pulses if p[0] < pos + n]
        pulses = [p for p in pulses if p[0] >= pos + n]
        if late and due and n > 1:
            half = max(1, min(due[0][0] - pos, n - 1))   # read up to the first pulse, then hand them over
            fr, f, c = stream.read(pos, half)
            sf.append(f), sc.append(c), frames_out.append(fr)
            pos += half
            n -= half
        for p in due:
            stream.add_pulses(p[0], p[1], p[2], p[3])
        fr, f, c = stream.read(pos, n)
        sf.append(f), sc.append(c), frames_out.append(fr)
        pos += n
    return np.concatenate(sf), np.concatenate(sc), np.concatenate(frames_out)


def test_same_seed_same_spikes_whatever_the_read_sizes(model_dir):
    d, _ = model_dir
    n = 3 * FPS
    a = _read_all(ModelStream(d, seed=3), n, [125])
    b = _read_all(ModelStream(d, seed=3), n, [997, 5, 1024, 33])
    c = _read_all(ModelStream(d, seed=4), n, [125])
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    np.testing.assert_array_equal(a[2], b[2])
    assert len(a[0]) > 50 and set(a[1].tolist()) <= set(CHANNELS.tolist())
    assert not (len(a[0]) == len(c[0]) and np.array_equal(a[0], c[0]))   # another seed, other spikes
    # pulses handed over before their block (as cl-sdk does): identical for read sizes on step bounds
    pulses = [(int(t * FPS) + 3, 27, -1.0, 160.0) for t in np.arange(0.1, 2.9, 0.25)]
    p1 = _read_all(ModelStream(d, seed=3), n, [125], pulses)
    p2 = _read_all(ModelStream(d, seed=3), n, [250, 500, 125], pulses)
    np.testing.assert_array_equal(p1[0], p2[0])


def test_pulses_never_change_what_was_read_and_responses_follow_onsets(model_dir):
    d, _ = model_dir
    n = 2 * FPS
    base = _read_all(ModelStream(d, seed=1), n, [50])
    onsets = [int(t * FPS) + 17 for t in np.arange(0.05, 1.9, 0.1)]
    pulses = [(f, 27, -2.5, 200.0) for f in onsets]
    late = _read_all(ModelStream(d, seed=1), n, [50], pulses, late=True)
    first = onsets[0]
    before = base[0] < first
    np.testing.assert_array_equal(late[0][late[0] < first], base[0][before])
    np.testing.assert_array_equal(late[2][:first], base[2][:first])
    # more spikes after the pulses than without (the stimulated channel responds)
    assert (late[1] == 27).sum() > (base[1] == 27).sum() + 5
    # pulses handed over before their step is read: no spike of the onset step falls on or before the onset
    aligned = _read_all(ModelStream(d, seed=1), n, [125], pulses)
    F = 125
    for f in onsets:
        k = f // F
        assert not np.any((aligned[0] >= k * F) & (aligned[0] <= f)), f
    assert (aligned[1] == 27).sum() > (base[1] == 27).sum() + 5


def test_evoked_response_equals_model_stimulate(model_dir):
    """P(>= 1 spike in 2-50 ms after a pulse) on the stimulated channel and its neighbour: the
    stream's estimate lies within 4 binomial standard errors (plus 0.02) of model.stimulate()'s
    (400 pulses each; the evoked rise itself is checked to be far larger than that)."""
    d, model = model_dir
    n_pulses, gap = 200, 0.2
    times = 0.1 + gap * np.arange(n_pulses)
    chans = [27, 26, 9]
    ev = StimEvents.from_columns(times, 27, -1.0, 160.0, 2)
    ref, ours, base = [], [], []
    for seed in (0, 1):
        rec = model.stimulate(ev, seed=seed)
        tr = rec.spike_times
        t = np.concatenate(tr)
        ch = np.concatenate([np.full(len(x), e) for x, e in zip(tr, rec.electrode_ids)])
        ref.append(response_probability(times, t, ch, chans))
        base.append(response_probability(times - 0.1, t, ch, chans))   # windows before each pulse
        pulses = [(int(round(x * FPS)), 27, -1.0, 160.0) for x in times]
        sf, sc, _ = _read_all(ModelStream(d, seed=seed + 10), int((times[-1] + 0.2) * FPS), [125], pulses)
        ours.append(response_probability(times, sf / FPS, sc, chans))
    ref, ours, base = np.mean(ref, 0), np.mean(ours, 0), np.mean(base, 0)
    n = 2 * n_pulses
    se = np.sqrt(np.maximum(ref * (1 - ref), 0.01) * 2 / n)
    assert ref[0] > base[0] + 0.2, (ref, base)        # the pulse evokes a clear response
    np.testing.assert_array_less(np.abs(ours - ref), 4 * se + 0.02)


def test_frames_hold_waveforms_over_the_noise_floor(model_dir):
    d, _ = model_dir
    s = ModelStream(d, seed=2, noise_uv=2.5, spike_uv=60.0)
    sf, sc, frames = _read_all(s, FPS, [333])
    silent = 40                                     # a channel without a unit: noise only
    assert frames.dtype == np.int16 and frames.shape == (FPS, 64)
    assert np.std(frames[:, silent]) * UV_PER_UNIT == pytest.approx(2.5, rel=0.05)
    assert not frames[:, [0, 7, 56, 63]].any()      # grounded channels are flat
    # every spike's trough (TROUGH_FRAMES after its timestamp) is far below the noise
    assert np.all(frames[np.minimum(sf + TROUGH_FRAMES, FPS - 1), sc] * UV_PER_UNIT < -30.0)
    snip = s.signal.snippet_uv(int(sf[0]), int(sc[0]))
    assert snip.shape == (75,) and np.argmin(snip) == 25 + TROUGH_FRAMES


def test_a_step_of_no_whole_frames_runs_at_the_nearest_step_that_is(tmp_path):
    from organoid_sim.models import SpikingNetworkModel

    model = SpikingNetworkModel(seed=0, n_hidden=0, dt_ms=2.5)     # 62.5 frames at 25 kHz
    model.attach_recording(ground_truth(0).simulate(5.0, seed=1))
    model.save(tmp_path / "m")
    stream = ModelStream(tmp_path / "m", seed=0)
    assert stream.dt_adjusted and stream.frames_per_step == 63 and stream.spec.dt_ms == pytest.approx(2.52)
    assert stream.dt_s * FPS == pytest.approx(63)
    with pytest.raises(ValueError, match="not a whole number of 25 kHz frames"):
        ModelStream(tmp_path / "m", seed=0, dt_ms=2.5)    # asked for explicitly: refused, as before
    assert not ModelStream(tmp_path / "m", seed=0, dt_ms=2.0).dt_adjusted


def test_units_on_grounded_corners_are_simulated_but_never_reported(tmp_path):
    """Channel 0 is grounded on a CL1: its unit (firing at 2-8 Hz in the model) never shows up, and
    the stream says so once, while the other units' channels do fire."""
    channels = np.r_[0, CHANNELS[1:]]
    model = ground_truth(0, channels=channels)
    model.save(tmp_path / "m")
    with pytest.warns(UserWarning, match="1 units sit on the CL1's grounded corner"):
        stream = ModelStream(tmp_path / "m", seed=1)
    _, ch, _ = _read_all(stream, 2 * FPS, [125])
    assert 0 not in set(ch.tolist()) and set(ch.tolist()) <= set(CHANNELS[1:].tolist())
    assert model.simulate(2.0, seed=1).spike_counts[0] > 0           # the corner unit does fire
