"""Stimulation events written by a protocol survive the NWB round trip (organoid_sim.save/load), and the
NWB file holds them as a TimeIntervals table readable by pynwb itself."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import organoid_sim
from organoid_sim import SpikeRecording
from organoid_sim.stimulation import CL1, Protocol, PulseDesign, PulseTrain, probe_electrodes


def _recording_with(protocol: Protocol, rng) -> SpikeRecording:
    ids = [0, 9, 18, 27]
    spikes = [np.sort(rng.uniform(0, protocol.duration_s, 30)) for _ in ids]
    return SpikeRecording.from_spike_times(spikes, t_stop=protocol.duration_s, electrode_ids=ids,
                                           electrodes=CL1.electrodes(), stim=protocol.to_events())


def _protocols():
    probe = probe_electrodes([0, 9, 18], amplitude=2.5, phase_us=160.0, n_repeats=3, interval_s=0.2, seed=2)
    mixed = Protocol((PulseTrain(PulseDesign.triphasic(2.0, 100.0), (4, 5), 0.1, 5, 50.0),
                      PulseTrain(PulseDesign.biphasic(1.0, 300.0, cathodic_first=False), (6,), 0.05)))
    return [probe, mixed]


@pytest.mark.parametrize("protocol", _protocols(), ids=["probe", "trains"])
def test_protocol_events_survive_nwb(tmp_path, rng, protocol):
    pynwb = pytest.importorskip("pynwb")
    rec = _recording_with(protocol, rng)
    path = tmp_path / "evoked.nwb"
    organoid_sim.save(rec, path)
    back = organoid_sim.load(path)
    assert back.stim == protocol.to_events()
    assert back.differences(rec) in ([], ["metadata"])  # readers may add source/format metadata
    # independent check with pynwb: one TimeIntervals row per pulse, start = onset, stop = end of the pulse
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pynwb.NWBHDF5IO(str(path), "r") as io:
            nwb = io.read()
            tables = [t for t in nwb.intervals.values()] if nwb.intervals else []
            assert len(tables) == 1
            df = tables[0].to_dataframe()
    ev = protocol.to_events()
    np.testing.assert_allclose(df["start_time"].to_numpy(), ev.time)
    np.testing.assert_allclose(df["stop_time"].to_numpy(), ev.time + ev.duration)
    np.testing.assert_array_equal(df["electrode"].to_numpy(), ev.electrode)
    np.testing.assert_allclose(df["amplitude"].to_numpy(), ev.amplitude)
