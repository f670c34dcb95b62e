"""Generic HDF5/NPZ/CSV layouts, MaxWell layouts written with h5py, MCS without spikes, detection."""

from __future__ import annotations

import shutil

import h5py
import numpy as np
import pytest

import organoid_sim
from organoid_sim import Electrodes, SpikeRecording, StimEvents
from organoid_sim.io import RecordingFormatError, UnknownFormatError, detect_format

SPIKE_DTYPE = np.dtype([("frameno", "<i8"), ("channel", "<i4"), ("amplitude", "<f4")])
MAP_DTYPE = np.dtype([("channel", "<i4"), ("electrode", "<i4"), ("x", "<f8"), ("y", "<f8")])


@pytest.fixture
def rec(rng):
    trains = [np.sort(rng.uniform(0, 30, n)) for n in (20, 0, 7)]
    stim = StimEvents.from_columns([3.0, 4.0], [5, 6], [-1.0, 2.0], [100.0, 200.0], [2, 2], amplitude_unit="mV")
    return SpikeRecording.from_spike_times(trains, t_start=0.0, t_stop=30.0, unit_ids=[4, 8, 15],
                                           electrode_ids=[5, 6, -1], positions=[[0, 0], [17.5, 3], [np.nan, np.nan]],
                                           electrodes=Electrodes([5, 6, 9], [0.0, 17.5, 35.0], [0.0, 3.0, 0.0]),
                                           sampling_rate=25_000.0, stim=stim, metadata={"a": 1})


@pytest.mark.parametrize("ext,fmt", [(".h5", "generic_h5"), (".hdf5", "generic_h5"), (".npz", "npz"), (".csv", "csv")])
def test_writers_round_trip_exactly(rec, tmp_path, ext, fmt):
    path = organoid_sim.save(rec, tmp_path / f"r{ext}")
    assert detect_format(path) == fmt
    back = organoid_sim.load(path)
    assert back == rec, back.differences(rec)


def test_detection_uses_content_not_extension(rec, tmp_path):
    path = organoid_sim.save(rec, tmp_path / "r.nwb")
    moved = tmp_path / "recording.dat"
    shutil.copy(path, moved)
    assert detect_format(moved) == "nwb" and organoid_sim.load(moved) == rec
    organoid_sim.save(rec, tmp_path / "r.csv")
    shutil.copy(tmp_path / "r.csv", tmp_path / "r.txt")
    assert organoid_sim.load(tmp_path / "r.txt") == rec


def test_unknown_content_lists_known_formats(tmp_path):
    junk = tmp_path / "x.bin"
    junk.write_bytes(b"\x00\x01garbage" * 10)
    with pytest.raises(UnknownFormatError) as err:
        organoid_sim.load(junk)
    for name in ("nwb", "axion", "maxwell", "meanap", "generic_h5", "csv", "npz", "mcs"):
        assert name in str(err.value)
    other_h5 = tmp_path / "other.h5"
    with h5py.File(other_h5, "w") as f:
        f["something"] = [1, 2, 3]
    with pytest.raises(UnknownFormatError, match="HDF5 file whose layout matches no known format"):
        organoid_sim.load(other_h5)


def test_generic_h5_written_by_hand_flat_pairs(tmp_path):
    """The documented minimal layout: spike_times + spike_units in any order."""
    path = tmp_path / "hand.h5"
    times = np.array([0.3, 0.1, 0.2, 0.05])
    units = np.array([2, 1, 2, 7])
    with h5py.File(path, "w") as f:
        f["spike_times"] = times
        f["spike_units"] = units
        f.attrs["t_stop"] = 1.0
    rec = organoid_sim.load(path)
    expected = SpikeRecording.from_spike_times([[0.1], [0.2, 0.3], [0.05]], t_start=0.0, t_stop=1.0, unit_ids=[1, 2, 7])
    assert rec.replace(metadata={}) == expected
    assert rec.metadata["format"] == "generic_h5"


def test_generic_h5_ragged_by_hand_with_text_ids(tmp_path):
    path = tmp_path / "ragged.h5"
    with h5py.File(path, "w") as f:
        f["spike_times"] = [0.1, 0.4, 0.2]
        f["spike_times_index"] = [2, 2, 3]
        f.create_dataset("unit_ids", data=["ch_a", "ch_b", "ch_c"], dtype=h5py.string_dtype())
    rec = organoid_sim.load(path)
    assert rec.unit_ids.tolist() == ["ch_a", "ch_b", "ch_c"]
    assert [len(s) for s in rec.spike_times] == [2, 0, 1]


def test_npz_written_by_hand(tmp_path):
    path = tmp_path / "hand.npz"
    np.savez(path, spike_times=np.array([0.5, 0.25, 0.75]), spike_units=np.array(["b", "a", "b"]))
    rec = organoid_sim.load(path)
    assert rec.unit_ids.tolist() == ["a", "b"] and rec.metadata["format"] == "npz"
    np.testing.assert_array_equal(rec.spike_times[1], [0.5, 0.75])


def test_csv_pairs_from_another_tool(tmp_path):
    path = tmp_path / "spikes.csv"
    path.write_text("# exported by some tool\nchannel;time\n3;0.50\n1;0.25\n3;0.10\n")
    rec = organoid_sim.load(path)
    assert rec.unit_ids.tolist() == [1, 3]
    np.testing.assert_array_equal(rec.spike_times[1], [0.10, 0.50])
    bad = tmp_path / "bad.csv"
    bad.write_text("time,unit\n0.1,1\noops,2\n")
    with pytest.raises(RecordingFormatError, match="line 3"):
        organoid_sim.load(bad)


# ------------------------------------------------------------------------------------- MaxWell
def _maxwell_new(path, fs=10_000.0, first=1_000_000):
    mapping = np.array([(0, 500, 17.5, 35.0), (1, 501, 35.0, 35.0), (1, 501, 35.0, 35.0), (2, 502, 52.5, 0.0)],
                       dtype=MAP_DTYPE)  # channel 1 listed twice, as stimulation sites are
    with h5py.File(path, "w") as f:
        f["version"] = np.array([b"20190530"])
        for w, spikes in (("well000", [(first + 10, 0, -50.0), (first + 25, 2, -40.0), (first + 30, 0, -60.0)]),
                          ("well001", [(first + 5, 1, -30.0)])):
            g = f.create_group(f"recordings/rec0000/{w}")
            g["spikes"] = np.array(spikes, dtype=SPIKE_DTYPE)
            g["settings/mapping"] = mapping
            g["settings/sampling"] = np.array([fs])
            g["groups/routed/frame_nos"] = np.arange(first, first + 100, dtype=np.int64)
            g["start_time"] = np.array([1_700_000_000_000], dtype=np.int64)
            g["stop_time"] = np.array([1_700_000_000_010], dtype=np.int64)
        f.create_group("wells")
    return path


def test_maxwell_new_layout_spikes_and_wells(tmp_path):
    path = _maxwell_new(tmp_path / "new.raw.h5")
    assert detect_format(path) == "maxwell"
    assert organoid_sim.list_wells(path) == ["well000", "well001"]
    with pytest.raises(RecordingFormatError, match="well000, well001"):
        organoid_sim.load(path)
    rec = organoid_sim.load(path, well="well000", recording="rec0000")
    assert rec.unit_ids.tolist() == [0, 1, 2] and rec.electrode_ids.tolist() == [500, 501, 502]
    np.testing.assert_array_equal(rec.spike_times[0], [10 / 10_000.0, 30 / 10_000.0])  # relative to frame_nos[0]
    np.testing.assert_array_equal(rec.spike_times[2], [25 / 10_000.0])
    np.testing.assert_array_equal(rec.positions, [[17.5, 35.0], [35.0, 35.0], [52.5, 0.0]])
    assert rec.sampling_rate == 10_000.0 and rec.t_stop == pytest.approx(100 / 10_000.0)
    assert organoid_sim.load(path, well=1).n_spikes == 1
    with pytest.raises(RecordingFormatError, match="no well 'well007'"):
        organoid_sim.load(path, well=7)


def test_maxwell_wells_first_layout_reads_the_same(tmp_path):
    """Some files (and neo's MaxwellRawIO) put the groups under /wells/<well>/<rec>."""
    src = _maxwell_new(tmp_path / "new.raw.h5")
    alt = tmp_path / "wells.raw.h5"
    with h5py.File(src, "r") as a, h5py.File(alt, "w") as b:
        for w in ("well000", "well001"):
            a.copy(a[f"recordings/rec0000/{w}"], b, name=f"wells/{w}/rec0000")
    assert detect_format(alt) == "maxwell" and organoid_sim.list_wells(alt) == ["well000", "well001"]
    for w in ("well000", "well001"):
        ours, ref = organoid_sim.load(alt, well=w), organoid_sim.load(src, well=w)
        assert ours.replace(metadata={}) == ref.replace(metadata={})


def test_maxwell_legacy_layout_spikes(tmp_path):
    path = tmp_path / "legacy.raw.h5"
    with h5py.File(path, "w") as f:
        f["mapping"] = np.array([(3, 900, 0.0, 17.5), (4, 901, 17.5, 17.5)], dtype=MAP_DTYPE)
        f["proc0/spikeTimes"] = np.array([(5000, 4, -20.0), (5020, 3, -30.0), (5400, 4, -25.0), (5100, 9, -5.0)],
                                         dtype=SPIKE_DTYPE)
        f["sig"] = np.zeros((1028, 0), np.uint16)
        f["version"] = np.array([b"20160704"])
    rec = organoid_sim.load(path)
    assert rec.unit_ids.tolist() == [3, 4, 9] and rec.electrode_ids.tolist() == [900, 901, -1]
    # frame numbers relative to the first frame, at 20 kHz
    np.testing.assert_array_equal(rec.spike_times[1], [0.0, 400 / 20_000.0])
    np.testing.assert_array_equal(rec.spike_times[0], [20 / 20_000.0])
    assert np.isnan(rec.positions[2]).all()
    assert organoid_sim.load(path, first_frame=4000).spike_times[1][0] == 1000 / 20_000.0


def test_maxwell_missing_mapping_field(tmp_path):
    path = tmp_path / "bad.raw.h5"
    with h5py.File(path, "w") as f:
        f["mapping"] = np.zeros(2, dtype=[("channel", "<i4"), ("x", "<f8")])
        f["proc0/spikeTimes"] = np.zeros(0, dtype=SPIKE_DTYPE)
    with pytest.raises(RecordingFormatError, match=r"mapping.*lacks field\(s\) \['electrode', 'y'\]"):
        organoid_sim.load(path)


# ------------------------------------------------------------------------------------- MCS
def test_mcs_falls_back_to_cutouts_then_says_no_spike_data(mcs_path, tmp_path):
    path = tmp_path / "mcs_cutouts_only.h5"
    shutil.copy(mcs_path, path)
    with h5py.File(path, "a") as f:
        del f["Data/Recording_0/TimeStampStream"]
        cut = f["Data/Recording_0/SegmentStream/Stream_0"]
        expected = [cut[f"SegmentData_ts_{k}"][()].ravel() / 1e6 for k in range(8)]  # cutout stamps in us
    rec = organoid_sim.load(path)
    assert rec.metadata["stream"] == "SegmentStream/Stream_0" and rec.n_units == 8
    for mine, ref in zip(rec.spike_times, expected):
        np.testing.assert_array_equal(mine, ref)
    assert rec.metadata["channel_labels"][0] == "E1"
    with h5py.File(path, "a") as f:
        del f["Data/Recording_0/SegmentStream"]
    assert detect_format(path) == "mcs"
    with pytest.raises(RecordingFormatError, match="holds no spike data"):
        organoid_sim.load(path)


def test_csv_text_ids_that_look_like_numbers(tmp_path):
    rec = SpikeRecording.from_spike_times([[0.5], [0.25], []], t_start=0.0, t_stop=1.0, unit_ids=["007", "7", "x"])
    assert organoid_sim.load(organoid_sim.save(rec, tmp_path / "ids.csv")) == rec


def test_csv_text_ids_with_surrounding_spaces_round_trip(tmp_path):
    """Our header says the ids are text: cells are taken as written, not stripped like a foreign CSV's."""
    rec = SpikeRecording.from_spike_times([[0.5], [0.25]], t_start=0.0, t_stop=1.0, unit_ids=[" a", "b "])
    back = organoid_sim.load(organoid_sim.save(rec, tmp_path / "ids.csv"))
    assert back == rec, back.differences(rec)


def test_csv_text_ids_with_line_breaks_commas_and_quotes_round_trip(tmp_path):
    """Ids holding a comma, quotes, line breaks (\\n, \\r\\n, a bare \\r) or characters that
    ``str.splitlines`` breaks at (\\x0b, \\x85, \\u2028) come back unchanged, and Python's csv module
    reads the same id for every spike line of the file (a bare \\r was written unquoted, and the
    reader split lines inside quoted ids and at those characters)."""
    import csv

    ids = ["a,b", 'say "hi"', "two\nlines", "crlf\r\nid", "cr\rid", "vt\x0bid", "nel\x85id", "ls\u2028id",
           "#hash", ""]
    trains = [[0.1 * (k + 1)] for k in range(len(ids))]
    rec = SpikeRecording.from_spike_times(trains, t_start=0.0, t_stop=2.0, unit_ids=ids)
    path = organoid_sim.save(rec, tmp_path / "ids.csv")
    back = organoid_sim.load(path)
    assert back == rec, back.differences(rec)
    with open(path, encoding="utf-8", newline="") as fh:
        rows = list(csv.reader(line for line in fh if not line.startswith("#")))
    assert rows[0] == ["time", "unit"]
    assert [r[1] for r in rows[1:]] == np.repeat(rec.unit_ids, rec.spike_counts).tolist()
    np.testing.assert_array_equal([float(r[0]) for r in rows[1:]], rec.times)
