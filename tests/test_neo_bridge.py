"""Lossless conversion to and from neo, checked with neo's and elephant's own functions."""

import numpy as np
import pytest
import neo
import quantities as pq
from elephant.statistics import mean_firing_rate

from organoid_sim.events import StimEvents
from organoid_sim.recording import Electrodes, SpikeRecording


def test_neo_round_trip_is_lossless(rng):
    trains = [np.sort(rng.uniform(2, 12, 40)) for _ in range(4)]
    rec = SpikeRecording.from_spike_times(
        trains, t_start=2.0, t_stop=12.0, unit_ids=["a", "b", "c", "d"], electrode_ids=[5, 6, 7, 8],
        electrodes=Electrodes([5, 6, 7, 8], [0.0, 100.0, 200.0, 300.0], [0.0, 0.0, 50.0, 50.0]),
        sampling_rate=20000.0, stim=StimEvents.from_columns([3.0], [6], [2.0], 100.0, 2),
        metadata={"well": "D1"})
    sts = rec.to_neo()
    assert all(isinstance(s, neo.SpikeTrain) for s in sts) and len(sts) == 4
    assert sts[1].annotations["unit_id"] == "b"
    for s, t in zip(sts, trains):
        np.testing.assert_array_equal(s.rescale(pq.s).magnitude, t)
        assert float(s.t_start.rescale(pq.s)) == 2.0 and float(s.t_stop.rescale(pq.s)) == 12.0
    assert SpikeRecording.from_neo(sts) == rec


def test_from_neo_block_in_ms(rng):
    seg = neo.Segment()
    for i in range(3):
        t = np.sort(rng.uniform(0, 5000, 30))
        seg.spiketrains.append(neo.SpikeTrain(t * pq.ms, t_start=0 * pq.ms, t_stop=5000 * pq.ms))
    block = neo.Block()
    block.segments.append(seg)
    rec = SpikeRecording.from_neo(block)
    assert rec.n_units == 3 and rec.t_stop == 5.0
    for s, ours in zip(seg.spiketrains, rec.spike_times):
        np.testing.assert_allclose(ours, s.rescale(pq.s).magnitude, rtol=0, atol=1e-12)
    np.testing.assert_allclose(rec.firing_rates(),
                               [float(mean_firing_rate(s).rescale(pq.Hz)) for s in seg.spiketrains])


def test_from_spike_times_reads_quantities_in_seconds_whatever_their_unit():
    """A neo SpikeTrain (or quantities array) in ms handed to from_spike_times: its times in s, as
    neo's own rescale gives them (the unit used to be dropped, so 100 ms became 100 s)."""
    st = neo.SpikeTrain([100.0, 2500.0] * pq.ms, t_stop=3000.0 * pq.ms)
    rec = SpikeRecording.from_spike_times([st, np.array([0.5]) * pq.s], t_stop=3.0)
    np.testing.assert_array_equal(rec.spike_times[0], st.rescale(pq.s).magnitude)
    np.testing.assert_array_equal(rec.spike_times[1], [0.5])


def test_recording_without_units_through_neo_keeps_its_window():
    """No units: ``to_neo`` gives no trains (elephant would count a placeholder train as a unit), so
    the window comes from a neo Segment holding other data (neo's own ``t_start``/``t_stop``) or
    from ``t_start``/``t_stop`` given; without either, a clear error (it was 'no spike trains found'
    even when the window was given)."""
    rec = SpikeRecording.from_spike_times([], t_start=1.5, t_stop=4.0, sampling_rate=1000.0)
    assert rec.to_neo() == []
    back = SpikeRecording.from_neo(rec.to_neo(), t_start=rec.t_start, t_stop=rec.t_stop, sampling_rate=1000.0)
    assert back.differences(rec) == []
    assert (back.n_units, back.t_start, back.t_stop) == (0, 1.5, 4.0)
    seg = neo.Segment()
    seg.analogsignals.append(neo.AnalogSignal(np.zeros((250, 2)), units="uV", sampling_rate=100 * pq.Hz,
                                              t_start=1500 * pq.ms))
    from_seg = SpikeRecording.from_neo(seg)
    assert from_seg.n_units == 0
    assert (from_seg.t_start, from_seg.t_stop) == (float(seg.t_start.rescale(pq.s)), float(seg.t_stop.rescale(pq.s)))
    with pytest.raises(ValueError, match="no spike trains in the list.*t_start= and t_stop="):
        SpikeRecording.from_neo([])
