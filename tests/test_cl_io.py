"""CL1 / cl-sdk recordings: a file laid out as cl-sdk's recording writer lays it out (PyTables tables,
pickled root dicts), written here with h5py, loads with the right times, channels and stims."""

from __future__ import annotations

import pickle

import h5py
import numpy as np
import pytest

import organoid_sim
from organoid_sim.io import detect_format
from organoid_sim.io.cl1 import read_data_stream
from organoid_sim.io.errors import ReaderOptionError, RecordingFormatError

FPS = 25_000


def _write(path, spikes, stims, *, start_timestamp=0, relative=True, duration_frames=50_000, stream=None,
           stim_dtype=None, evil_attr=False):
    spike_dt = np.dtype([("timestamp", "<i8"), ("channel", "u1"), ("samples", "<f4", (75,))])
    stim_dt = stim_dtype or np.dtype([("timestamp", "<i8"), ("channel", "u1")])
    with h5py.File(path, "w") as f:
        s = np.zeros(len(spikes), spike_dt)
        s["timestamp"], s["channel"] = np.asarray(spikes).T if len(spikes) else ([], [])
        f.create_dataset("spikes", data=s)
        st = np.zeros(len(stims), stim_dt)
        for name in stim_dt.names:
            st[name] = [row[stim_dt.names.index(name)] for row in stims]
        f.create_dataset("stims", data=st)
        f.create_dataset("samples", data=np.zeros((10, 64), np.int16))
        for k, v in {"frames_per_second": np.int64(FPS), "sampling_frequency": np.int64(FPS),
                     "channel_count": np.int64(64), "start_timestamp": np.int64(start_timestamp),
                     "duration_frames": np.int64(duration_frames), "uV_per_sample_unit": 0.195,
                     "hostname": np.bytes_(b"cl-sdk"), "CLASS": np.bytes_(b"GROUP")}.items():
            f.attrs[k] = v
        fmt = {"version": "SDK", "stim_and_spike_timestamps_relative_to_start": relative}
        f.attrs["file_format"] = np.bytes_(pickle.dumps(fmt, protocol=0))
        f.attrs["application"] = np.bytes_(pickle.dumps({"experiment": "pong"}, protocol=0))
        if evil_attr:  # a pickle that would call os.system: must never be executed
            f.attrs["evil"] = np.bytes_(b"cos\nsystem\n(S'touch /tmp/organoid_sim_pwned'\ntR.")
        if stream is not None:
            g = f.create_group("data_stream/score")
            g.attrs["name"] = np.bytes_(b"score")
            g.attrs["application"] = np.bytes_(pickle.dumps({"unit": "points"}, protocol=0))
            idx = np.zeros(len(stream), [("timestamp", "<i8"), ("start_index", "<u8"), ("end_index", "<u8")])
            blobs = [bytes([0xC0 + 0]) if v is None else bytes([v]) for v in stream.values()]  # msgpack ints
            ends = np.cumsum([len(b) for b in blobs])
            idx["timestamp"], idx["start_index"], idx["end_index"] = list(stream), ends - 1, ends
            g.create_dataset("index", data=idx)
            g.create_dataset("data", data=np.frombuffer(b"".join(blobs), np.uint8))
    return path


def test_spikes_stims_and_window(tmp_path):
    spikes = [(100, 8), (2600, 9), (125, 8), (30_000, 62), (40_000, 0)]
    stims = [(2500, 8), (25_000, 9)]
    rec = organoid_sim.load(_write(tmp_path / "rec.h5", spikes, stims))
    assert detect_format(tmp_path / "rec.h5") == "cl1"
    assert rec.t_start == 0.0 and rec.t_stop == pytest.approx(50_000 / FPS)
    assert rec.sampling_rate == FPS
    # the 60 recording channels are units (the grounded corners 0, 7, 56, 63 are not)
    assert rec.n_units == 60 and 0 not in rec.unit_ids and 63 not in rec.unit_ids
    trains = dict(zip(rec.unit_ids.tolist(), rec.spike_times))
    np.testing.assert_allclose(trains[8], [100 / FPS, 125 / FPS])
    np.testing.assert_allclose(trains[9], [2600 / FPS])
    np.testing.assert_allclose(trains[62], [30_000 / FPS])
    assert sum(len(t) for t in trains.values()) == 4   # the spike on grounded channel 0 is not a unit's
    # CL1 grid: channel 9 is row 1, column 1 at 200 um pitch
    np.testing.assert_allclose(rec.positions[list(rec.unit_ids).index(9)], [200.0, 200.0])
    np.testing.assert_allclose(rec.stim.time, [0.1, 1.0])
    np.testing.assert_array_equal(rec.stim.electrode, [8, 9])
    assert rec.metadata["stim_design_known"] is False and "unknown" in rec.metadata["stim_design_note"]
    assert rec.metadata["attributes"]["application"] == {"experiment": "pong"}


def test_absolute_timestamps_and_design_options(tmp_path):
    path = _write(tmp_path / "abs.h5", [(10_100, 8)], [(12_500, 8)], start_timestamp=10_000, relative=False)
    rec = organoid_sim.load(path, stim_amplitude_ua=-1.0, stim_phase_us=160.0)
    np.testing.assert_allclose(rec.spike_times[rec.unit_ids.tolist().index(8)], [100 / FPS])
    np.testing.assert_allclose(rec.stim.time, [0.1])
    assert rec.stim.amplitude[0] == -1.0 and rec.stim.phase_us[0] == 160.0 and rec.metadata["stim_design_known"]
    only = organoid_sim.load(path, channels=[8, 9])
    assert only.unit_ids.tolist() == [8, 9]


def test_stim_rows_with_phases(tmp_path):
    dt = np.dtype([("timestamp", "<i8"), ("channel", "u1"), ("phase_durations_us", "<i4", (3,)),
                   ("phase_currents_uA", "<f4", (3,))])
    path = _write(tmp_path / "ph.h5", [], [(500, 10, (200, 200, 0), (-1.5, 1.5, 0.0))], stim_dtype=dt)
    rec = organoid_sim.load(path)
    assert rec.stim.amplitude[0] == -1.5 and rec.stim.phase_us[0] == 200.0 and rec.stim.n_phases[0] == 2
    assert rec.metadata["stim_design_known"]


def test_data_stream_and_no_code_runs(tmp_path):
    import os

    marker = "/tmp/organoid_sim_pwned"
    if os.path.exists(marker):
        os.remove(marker)
    path = _write(tmp_path / "ds.h5", [(100, 8)], [], stream={250: 3, 500: 7}, evil_attr=True)
    rec = organoid_sim.load(path)
    assert not os.path.exists(marker) and "evil" not in rec.metadata["attributes"]
    assert rec.metadata["data_streams"]["score"] == {"n_events": 2, "attributes": {"unit": "points"}}
    times, values = read_data_stream(path, "score")
    np.testing.assert_allclose(times, [0.01, 0.02])
    assert values == [3, 7] or values == [b"\x03", b"\x07"]


def test_errors_name_file_and_dataset(tmp_path):
    path = _write(tmp_path / "bad.h5", [(60_000, 8)], [], duration_frames=50_000)
    with pytest.raises(RecordingFormatError, match="bad.h5.*spikes.*after the recording's end"):
        organoid_sim.load(path)
    path = _write(tmp_path / "neg.h5", [(5, 8)], [], start_timestamp=100, relative=False)
    with pytest.raises(RecordingFormatError, match="neg.h5.*spikes.*before the recording start"):
        organoid_sim.load(path)
    with pytest.raises(ReaderOptionError, match="channels"):
        organoid_sim.load(_write(tmp_path / "ok.h5", [], []), channels=[3, 3])
    with pytest.raises(ReaderOptionError, match="well"):
        organoid_sim.load(tmp_path / "ok.h5", well="A1")


def _cl_msgpack(obj) -> bytes:
    """``obj`` packed as cl-sdk's DataStream.append packs it (cl.util.to_msgpacked: msgpack with
    msgpack_numpy's encoding of numpy arrays and scalars)."""
    import msgpack

    def default(o):
        if isinstance(o, np.ndarray):
            return {b"nd": True, b"type": o.dtype.str, b"kind": b"", b"shape": o.shape, b"data": o.tobytes()}
        if isinstance(o, np.generic):
            return {b"nd": False, b"type": o.dtype.str, b"data": o.tobytes()}
        return o

    return msgpack.packb(obj, default=default, use_bin_type=True)


def test_data_stream_numpy_values_decode_as_cl_sdk_reads_them(tmp_path):
    """cl-sdk's own docs append a numpy array to a data stream; its RecordingView gives the array back
    (and numpy scalars as numpy scalars), so read_data_stream must too, without unpickling anything."""
    pytest.importorskip("msgpack")
    path = _write(tmp_path / "np.h5", [(100, 8)], [])
    values = [np.array([2**64 - 1, 2**64 - 2], np.uint64), {"count": np.int64(7), "xy": np.eye(2)}, "text"]
    blobs = [_cl_msgpack(v) for v in values]
    ends = np.cumsum([len(b) for b in blobs])
    with h5py.File(path, "a") as f:
        g = f.create_group("data_stream/game")
        idx = np.zeros(3, [("timestamp", "<i8"), ("start_index", "<u8"), ("end_index", "<u8")])
        idx["timestamp"], idx["start_index"], idx["end_index"] = [0, 1, 3], ends - [len(b) for b in blobs], ends
        g.create_dataset("index", data=idx)
        g.create_dataset("data", data=np.frombuffer(b"".join(blobs), np.uint8))
    _, got = read_data_stream(path, "game")
    assert got[0].dtype == np.uint64 and got[0].tolist() == [2**64 - 1, 2**64 - 2]
    assert got[1]["count"] == 7 and isinstance(got[1]["count"], np.int64)
    np.testing.assert_array_equal(got[1]["xy"], np.eye(2))
    assert got[2] == "text"
