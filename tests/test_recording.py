"""SpikeRecording: construction, validation, selection, slicing, splitting and joining."""

import re

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from organoid_sim.events import StimEvents
from organoid_sim.recording import Electrodes, SpikeRecording


def _random_recording(rng, n_units=5, duration=20.0, rate=3.0):
    trains = [np.sort(rng.uniform(0, duration, rng.poisson(rate * duration))) for _ in range(n_units)]
    return SpikeRecording.from_spike_times(trains, t_start=0.0, t_stop=duration,
                                           electrode_ids=np.arange(n_units) + 10,
                                           electrodes=Electrodes(np.arange(n_units) + 10,
                                                                 np.arange(n_units) * 200.0,
                                                                 np.zeros(n_units)))


def test_basic_properties(rng):
    trains = [np.array([0.1, 0.5, 2.0]), np.array([]), np.array([1.5])]
    rec = SpikeRecording.from_spike_times(trains, t_start=0.0, t_stop=4.0, unit_ids=[7, 8, 9])
    assert rec.n_units == 3 and rec.n_spikes == 4 and rec.duration == 4.0
    np.testing.assert_array_equal(rec.spike_counts, [3, 0, 1])
    np.testing.assert_allclose(rec.firing_rates(), [0.75, 0.0, 0.25])
    np.testing.assert_array_equal(rec[9], [1.5])
    assert np.all(np.isnan(rec.positions))
    assert "3 units" in repr(rec) and "4 spikes" in repr(rec)


@pytest.mark.parametrize("trains, kwargs, message", [
    ([[0.1, np.nan]], {}, "NaN"),
    ([[0.1, np.inf]], {}, "NaN or infinite"),
    ([[-0.1, 0.2]], {}, ">= 0"),
    ([[0.3, 0.2]], {}, "not sorted"),
    ([[0.1, 5.0]], {"t_stop": 2.0}, "outside"),
    ([[0.1], [0.2]], {"unit_ids": [1, 1]}, "duplicate unit ids"),
    ([[0.1], [0.2]], {"unit_ids": [1, 2, 3]}, "one id per unit"),
    ([[0.1], [0.2]], {"positions": np.zeros((3, 2))}, "positions"),
])
def test_validation_errors_are_specific(trains, kwargs, message):
    with pytest.raises(ValueError, match=message):
        SpikeRecording.from_spike_times(trains, **kwargs)


def test_offsets_must_match_times():
    with pytest.raises(ValueError, match="offsets"):
        SpikeRecording(np.array([0.1, 0.2]), np.array([0, 3]))


def test_from_pairs_matches_per_unit_grouping(rng):
    times = rng.uniform(0, 10, 500)
    units = rng.choice([3, 11, 42], 500)
    rec = SpikeRecording.from_pairs(times, units, t_stop=10.0)
    np.testing.assert_array_equal(rec.unit_ids, [3, 11, 42])
    for uid in (3, 11, 42):
        np.testing.assert_array_equal(rec[uid], np.sort(times[units == uid]))
    with pytest.raises(ValueError, match="not in unit_ids"):
        SpikeRecording.from_pairs(times, units, unit_ids=[3, 11])


def test_from_pairs_without_spikes_gives_an_empty_recording():
    """``from_pairs([], [])``: numpy reads ``[]`` as float64, which became float unit ids and the
    error 'unit_ids must be integers or strings, got dtype float64'. Now a recording with no units
    (or the units listed in ``unit_ids``, empty), and float unit labels are named as such."""
    empty = SpikeRecording.from_pairs([], [], t_start=1.0, t_stop=3.0)
    assert (empty.n_units, empty.n_spikes, empty.t_start, empty.t_stop, empty.duration) == (0, 0, 1.0, 3.0, 2.0)
    assert empty.unit_ids.dtype.kind == "i" and empty.spike_times == []
    assert SpikeRecording.from_pairs([], []).duration == 0.0
    assert SpikeRecording.from_pairs([], [], unit_ids=[], t_stop=3.0) == SpikeRecording.from_pairs(
        np.zeros(0), np.zeros(0, np.int64), t_stop=3.0)
    listed = SpikeRecording.from_pairs([], [], unit_ids=["a", "b"], t_stop=3.0)
    assert listed.unit_ids.tolist() == ["a", "b"] and listed.spike_counts.tolist() == [0, 0]
    with pytest.raises(ValueError, match="units must hold integer or text unit ids, got dtype float64"):
        SpikeRecording.from_pairs([0.5], [1.5])


def test_split_refuses_a_fraction_that_leaves_a_degenerate_part():
    """A fraction very near 0 or 1 whose part would be shorter than one sample (1 / sampling rate),
    or 0 s long when the cut rounds onto the window's edge, is refused naming the fraction (such
    parts were returned, and the figures computed on them later meant nothing); a one-sample part
    is kept."""
    rec = SpikeRecording.from_spike_times([[0.2, 0.99995]], t_start=0.0, t_stop=1.0, sampling_rate=10_000.0)
    with pytest.raises(ValueError, match=r"split\(fraction=0.99999\).*second part.*further from 1"):
        rec.split(0.99999)
    with pytest.raises(ValueError, match=r"split\(fraction=1e-05\).*first part.*further from 0"):
        rec.split(1e-5)
    head, tail = rec.split(0.9999)  # the held-out part is one sample (0.1 ms) long
    assert (head.t_stop, tail.t_start, tail.t_stop) == (0.9999, 0.9999, 1.0)
    assert tail.spike_times[0].tolist() == [0.99995] and head.n_spikes == 1
    late = SpikeRecording.from_spike_times([[200.0]], t_start=164.2, t_stop=1125.0)  # no sampling rate: 1 us
    assert late.t_start + 1e-17 * late.duration == late.t_start  # the cut rounds onto t_start
    with pytest.raises(ValueError, match=r"split\(fraction=1e-17\).*first part"):
        late.split(1e-17)
    with pytest.raises(ValueError, match=r"split\(fraction=0.5\).*zero duration"):
        SpikeRecording.from_spike_times([[5.0]], t_start=5.0, t_stop=5.0).split(0.5)


@pytest.mark.parametrize("fraction", ["0.5", b"0.5", True, np.True_, None, [0.5]])
def test_split_names_a_fraction_that_is_not_a_number(fraction):
    """Text, bytes and booleans are not fractions even though float() reads them ("0.5" split at
    the middle, True was refused only as 'not strictly between 0 and 1')."""
    rec = SpikeRecording.from_spike_times([[0.2, 0.7]], t_start=0.0, t_stop=1.0)
    with pytest.raises(ValueError, match=r"fraction must be a number strictly between 0 and 1, got " +
                       re.escape(repr(fraction))):
        rec.split(fraction)
    assert rec.split(np.float32(0.5))[0].t_stop == 0.5   # a NumPy number is one


def test_time_slice_half_open_and_absolute(rng):
    rec = _random_recording(rng)
    part = rec.time_slice(5.0, 12.0)
    assert (part.t_start, part.t_stop) == (5.0, 12.0)
    for full, cut in zip(rec.spike_times, part.spike_times):
        np.testing.assert_array_equal(cut, full[(full >= 5.0) & (full < 12.0)])
    with pytest.raises(ValueError, match="not inside"):
        rec.time_slice(-1.0, 3.0)


def test_split_then_concat_is_identity(rng):
    stim = StimEvents.from_columns([1.0, 9.0, 15.0], [10, 11, 12], [1.0, 2.0, 1.5], 200.0, 2)
    rec = _random_recording(rng).replace(stim=stim)
    a, b = rec.split(0.75)
    assert a.t_stop == b.t_start == 15.0
    assert a.n_spikes + b.n_spikes == rec.n_spikes
    assert len(a.stim) == 2 and len(b.stim) == 1
    assert a.concat(b) == rec



def test_concat_joins_windows_exactly_with_spikes_and_pulses_on_the_edges():
    """The second part starts exactly where the first stops: shifting it by ``t_stop - t_start`` put
    its first spike and pulse an ulp earlier (2.629 + (6.652 - 2.629) < 6.652), behind the first
    part's last ones, and concat raised 'not sorted'."""
    t0, t1 = 2.629, 6.652
    stim = StimEvents.from_columns([t0, t1], [1, 2], [1.0, 2.0], 200.0, 2)
    rec = SpikeRecording.from_spike_times([[t0, t1]], t_start=t0, t_stop=t1, stim=stim)
    joined = rec.concat(rec)
    end = t1 + (t1 - t0)   # the second copy: offsets from its t_start, counted from the first's t_stop
    assert (joined.t_start, joined.t_stop) == (t0, end)
    np.testing.assert_array_equal(joined.times, [t0, t1, t1, end])
    np.testing.assert_array_equal(joined.stim.time, [t0, t1, t1, end])
    np.testing.assert_array_equal(joined.stim.electrode, [1, 2, 1, 2])

def test_select_units(rng):
    rec = _random_recording(rng, n_units=6)
    sub = rec.select_units([3, 1])
    np.testing.assert_array_equal(sub.unit_ids, [3, 1])
    np.testing.assert_array_equal(sub[3], rec[3])
    np.testing.assert_array_equal(sub.electrode_ids, [13, 11])
    np.testing.assert_array_equal(sub.positions, rec.positions[[3, 1]])
    m = int(np.median(rec.spike_counts))
    busy = rec.select_units(min_spikes=m)
    np.testing.assert_array_equal(busy.unit_ids, [u for u, t in zip(rec.unit_ids, rec.spike_times) if len(t) >= m])


def test_positions_come_from_electrodes(rng):
    rec = _random_recording(rng, n_units=4)
    np.testing.assert_array_equal(rec.positions[:, 0], [0.0, 200.0, 400.0, 600.0])


def test_immutability(rng):
    rec = _random_recording(rng)
    with pytest.raises(ValueError):
        rec.times[0] = 1.0
    shifted = rec.shifted(2.0)
    assert shifted.t_start == 2.0 and rec.t_start == 0.0
    np.testing.assert_allclose(shifted.times, rec.times + 2.0)


def test_metadata_must_be_json(rng):
    rec = _random_recording(rng)
    assert rec.with_metadata(well="D1").metadata["well"] == "D1"
    with pytest.raises(ValueError, match="JSON"):
        rec.with_metadata(bad=object())


@settings(max_examples=40, deadline=None)
@given(st.lists(st.lists(st.floats(0, 10, allow_nan=False), max_size=20), min_size=1, max_size=6),
       st.floats(0.05, 0.95))
def test_split_concat_property(trains, fraction):
    rec = SpikeRecording.from_spike_times(trains, t_start=0.0, t_stop=10.0, sort=True)
    a, b = rec.split(fraction)
    assert a.n_spikes + b.n_spikes == rec.n_spikes
    assert a.concat(b) == rec
