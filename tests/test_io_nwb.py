"""NWB writer/reader checked against pynwb (the reference implementation of the standard)."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

import organoid_sim
from organoid_sim import SpikeRecording, StimEvents
from organoid_sim.io import RecordingFormatError

pynwb = pytest.importorskip("pynwb")


@pytest.fixture
def rec_with_stim(rng):
    trains = [np.sort(rng.uniform(0.5, 20.0, size=n)) for n in (30, 0, 12, 50)]
    stim = StimEvents.from_columns([1.0, 2.5, 2.5, 7.0], [101, 102, 103, 101], [-2.0, 1.5, 1.5, -3.0],
                                   [200.0, 100.0, 100.0, 400.0], [2, 1, 1, 3])
    from organoid_sim import Electrodes

    layout = Electrodes([100, 101, 102, 103, 104], [0.0, 200.0, 400.0, 0.0, np.nan], [0.0, 0.0, 0.0, 200.0, np.nan])
    return SpikeRecording.from_spike_times(trains, t_start=0.5, t_stop=20.0, unit_ids=[7, 3, 11, 5],
                                           electrode_ids=[100, -1, 102, 103], electrodes=layout,
                                           sampling_rate=20_000.0, stim=stim,
                                           metadata={"well": "D1", "note": "test", "n": [1, 2]})


def test_round_trip_exact_and_file_is_valid_nwb(rec_with_stim, tmp_path):
    path = organoid_sim.save(rec_with_stim, tmp_path / "x.nwb")
    back = organoid_sim.load(path)
    assert back == rec_with_stim, back.differences(rec_with_stim)
    with pynwb.NWBHDF5IO(str(path), "r") as io:
        assert list(pynwb.validate(io=io)) == []
    assert not list(tmp_path.glob(".*tmp*"))  # atomic write left no temp file


def test_pynwb_reads_what_we_wrote(rec_with_stim, tmp_path):
    path = organoid_sim.save(rec_with_stim, tmp_path / "x.nwb")
    with pynwb.NWBHDF5IO(str(path), "r") as io:
        nwb = io.read()
        units = nwb.units
        assert list(units.id[:]) == rec_with_stim.unit_ids.tolist()
        for i in range(rec_with_stim.n_units):
            np.testing.assert_array_equal(units["spike_times"][i], rec_with_stim.spike_times[i])
            np.testing.assert_array_equal(units["obs_intervals"][i], [[0.5, 20.0]])
        # unit 0 is on electrode 100, unit 1 has no known electrode
        el = nwb.electrodes.to_dataframe()
        assert units["electrodes"][0].index.tolist() == [100]
        assert len(units["electrodes"][1]) == 0
        assert el.loc[101, "rel_x"] == 200.0 and np.isnan(el.loc[104, "rel_x"])
        stim = nwb.intervals["stimulation"].to_dataframe()
        np.testing.assert_array_equal(stim["start_time"], rec_with_stim.stim.time)
        np.testing.assert_array_equal(stim["electrode"], rec_with_stim.stim.electrode)
        np.testing.assert_array_equal(stim["amplitude"], rec_with_stim.stim.amplitude)
        np.testing.assert_allclose(stim["stop_time"] - stim["start_time"],
                                   rec_with_stim.stim.n_phases * rec_with_stim.stim.phase_us * 1e-6)
        assert units.resolution == pytest.approx(1 / 20_000.0)


def _pynwb_file(tmp_path, stim="uA"):
    """An NWB file written with plain pynwb, as another lab's pipeline would write it."""
    from datetime import datetime, timezone

    from pynwb.epoch import TimeIntervals

    nwb = pynwb.NWBFile(session_description="s", identifier="id",
                        session_start_time=datetime(2024, 1, 1, tzinfo=timezone.utc))
    dev = nwb.create_device(name="mea")
    grp = nwb.create_electrode_group(name="g", description="d", location="dish", device=dev)
    for k in range(4):
        nwb.add_electrode(id=10 + k, x=float(k * 100), y=50.0, z=0.0, location="dish", group=grp)
    nwb.add_unit(id=1, spike_times=[0.1, 0.5, 2.0], electrodes=[2], obs_intervals=[[0.0, 3.0]])
    nwb.add_unit(id=2, spike_times=[1.0, 1.1], electrodes=[0], obs_intervals=[[0.0, 3.0]])
    if stim == "uA":
        t = TimeIntervals(name="electrical_stim", description="pulses")
        t.add_column("electrode", "site")
        t.add_column("amplitude", "uA")
        t.add_row(start_time=1.5, stop_time=1.5004, electrode=11, amplitude=-5.0)
        nwb.add_time_intervals(t)
    if stim == "amplitude_uA":  # the unit in the column name; onsets whose stop - start is not exact in float
        t = TimeIntervals(name="stim", description="pulses")
        t.add_column("electrode", "site")
        t.add_column("amplitude_uA", "current")
        for k, t0 in enumerate((0.3, 1.7, 2.9)):
            t.add_row(start_time=t0, stop_time=t0 + 0.0004, electrode=10 + k, amplitude_uA=-2.0)
        nwb.add_time_intervals(t)
    if stim == "no_amplitude":  # electrodes but nothing that says how strong: not a stimulation table
        t = TimeIntervals(name="sites", description="recording blocks")
        t.add_column("electrode", "site")
        t.add_row(start_time=0.5, stop_time=1.0, electrode=11)
        nwb.add_time_intervals(t)
    if stim == "before_start":  # NWB allows times before session_start_time: a pulse at -0.5 s
        t = TimeIntervals(name="stim", description="pulses")
        t.add_column("electrode", "site")
        t.add_column("amplitude_uA", "current")
        for t0 in (-0.5, 1.5):
            t.add_row(start_time=t0, stop_time=t0 + 0.0004, electrode=11, amplitude_uA=-5.0)
        nwb.add_time_intervals(t)
    if stim == "mV":  # a table whose electrode column is a region of the electrodes table, in mV
        v = TimeIntervals(name="voltage_stim", description="pulses")
        v.add_column("electrode", "site", table=nwb.electrodes)
        v.add_column("amplitude", "amplitude (mV)")
        v.add_row(start_time=0.5, stop_time=0.5002, electrode=3, amplitude=0.8)
        nwb.add_time_intervals(v)
    path = tmp_path / "other.nwb"
    with pynwb.NWBHDF5IO(str(path), "w") as io:
        io.write(nwb)
    return path


def test_reads_foreign_pynwb_file(tmp_path):
    rec = organoid_sim.load(_pynwb_file(tmp_path))
    assert rec.unit_ids.tolist() == [1, 2]
    assert rec.electrode_ids.tolist() == [12, 10]
    np.testing.assert_array_equal(rec.positions, [[200.0, 50.0], [0.0, 50.0]])  # x/y when no rel_x
    assert (rec.t_start, rec.t_stop) == (0.0, 3.0)
    np.testing.assert_array_equal(rec.spike_times[0], [0.1, 0.5, 2.0])
    assert rec.stim.time.tolist() == [1.5] and rec.stim.electrode.tolist() == [11]
    assert rec.stim.amplitude.tolist() == [-5.0] and rec.stim.amplitude_unit == "uA"
    assert rec.stim.phase_us == pytest.approx([200.0])  # 0.4 ms biphasic pulse
    assert rec.metadata["format"] == "nwb" and rec.metadata["identifier"] == "id"
    assert rec.metadata["session_start_time"].startswith("2024-01-01")


def test_foreign_region_electrodes_and_mv_amplitudes(tmp_path):
    path = _pynwb_file(tmp_path, stim="mV")
    rec = organoid_sim.load(path)
    assert rec.stim.electrode.tolist() == [13]  # row 3 of the electrodes table has id 13
    assert rec.stim.amplitude_unit == "mV" and rec.stim.amplitude.tolist() == [0.8]
    assert rec.metadata["format"] == "nwb"


def test_amplitude_column_named_with_its_unit(tmp_path):
    """An ``amplitude_uA`` column is stimulation in uA, and phases from stop - start are exact."""
    path = _pynwb_file(tmp_path, stim="amplitude_uA")
    with pynwb.NWBHDF5IO(str(path), "r") as io:   # the reference: what pynwb reads back
        ref = io.read().intervals["stim"].to_dataframe()
    assert ((ref["stop_time"] - ref["start_time"]) * 1e6 / 2 != 200.0).any()   # float seconds are not exact
    rec = organoid_sim.load(path)
    np.testing.assert_array_equal(rec.stim.time, ref["start_time"])
    np.testing.assert_array_equal(rec.stim.amplitude, ref["amplitude_uA"])
    assert rec.stim.amplitude_unit == "uA"
    assert rec.stim.phase_us.tolist() == [200.0, 200.0, 200.0]


def test_pulses_before_time_zero_shift_the_recording_like_spikes(tmp_path):
    """A pulse before 0 s moves the whole recording (spikes, window, pulses) so the window starts at 0 s."""
    path = _pynwb_file(tmp_path, stim="before_start")
    with pynwb.NWBHDF5IO(str(path), "r") as io:   # the reference: what pynwb reads back
        nwb = io.read()
        ref_stim = nwb.intervals["stim"].to_dataframe()["start_time"].to_numpy()
        ref_spikes = nwb.units["spike_times"][0]
    with pytest.warns(UserWarning, match="shifted by 0.5 s"):
        rec = organoid_sim.load(path)
    offset = rec.metadata["time_offset_s"]
    assert offset == -0.5 and rec.t_start == 0.0 and rec.t_stop == 3.5
    np.testing.assert_allclose(rec.stim.time + offset, ref_stim, rtol=0, atol=1e-12)
    np.testing.assert_allclose(rec.spike_times[0] + offset, ref_spikes, rtol=0, atol=1e-12)


def test_table_with_electrodes_but_no_amplitude_is_skipped_with_a_warning(tmp_path):
    path = _pynwb_file(tmp_path, stim="no_amplitude")
    with pytest.warns(UserWarning, match=r"intervals/sites has an electrode column but no amplitude"):
        rec = organoid_sim.load(path)
    assert len(rec.stim) == 0


def test_neo_agrees_with_our_reader(rec_with_stim, tmp_path):
    neo = pytest.importorskip("neo")
    path = organoid_sim.save(rec_with_stim.replace(stim=StimEvents.empty()), tmp_path / "x.nwb")
    block = neo.io.NWBIO(str(path), mode="r").read_all_blocks()[0]
    trains = block.segments[0].spiketrains
    ours = organoid_sim.load(path)
    assert len(trains) == ours.n_units
    for st, mine in zip(trains, ours.spike_times):
        np.testing.assert_array_equal(st.rescale("s").magnitude, mine)


def test_string_unit_ids_and_empty_recording(tmp_path):
    rec = SpikeRecording.from_spike_times([[0.1], [], [0.2, 0.3]], t_start=0.0, t_stop=1.0, unit_ids=["a", "b", "c"])
    assert organoid_sim.load(organoid_sim.save(rec, tmp_path / "s.nwb")) == rec
    empty = SpikeRecording.from_spike_times([], t_start=2.0, t_stop=5.0)
    assert organoid_sim.load(organoid_sim.save(empty, tmp_path / "e.nwb")) == empty


def test_foreign_file_with_an_empty_units_table_loads_with_no_units(tmp_path):
    """A Units table without rows (sorting found nothing) is a valid NWB file: pynwb writes only its ``id``."""
    from datetime import datetime, timezone

    from pynwb.misc import Units

    nwb = pynwb.NWBFile(session_description="s", identifier="id", session_start_time=datetime(2024, 1, 1, tzinfo=timezone.utc))
    nwb.units = Units(name="units", description="no units found")
    path = tmp_path / "no_units.nwb"
    with pynwb.NWBHDF5IO(str(path), "w") as io:
        io.write(nwb)
    with pynwb.NWBHDF5IO(str(path), "r") as io:   # the reference: pynwb reads a table of 0 units
        assert len(io.read().units) == 0
    rec = organoid_sim.load(path)
    assert rec.n_units == 0 and rec.n_spikes == 0 and rec.metadata["format"] == "nwb"


def test_unsorted_nwb_spikes_raise_or_sort(tmp_path):
    path = _pynwb_file(tmp_path, stim=None)
    with h5py.File(path, "a") as f:
        f["units/spike_times"][0:3] = [0.5, 0.1, 2.0]
    with pytest.raises(RecordingFormatError, match="units/spike_times.*not sorted"):
        organoid_sim.load(path)
    rec = organoid_sim.load(path, sort=True)
    np.testing.assert_array_equal(rec.spike_times[0], [0.1, 0.5, 2.0])


def test_progress_read_in_slices_gives_the_same_recording(rec_with_stim, tmp_path, monkeypatch, capsys):
    import organoid_sim.io._util as util

    path = organoid_sim.save(rec_with_stim, tmp_path / "x.nwb")
    monkeypatch.setattr(util, "CHUNK_VALUES", 7)  # 92 spikes -> 14 slices
    assert organoid_sim.load(path, progress=True) == rec_with_stim
    assert "reading x.nwb" in capsys.readouterr().err
