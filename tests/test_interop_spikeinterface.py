"""SpikeRecording <-> SpikeInterface sortings, and phy/Kilosort folders, checked against SpikeInterface's
own objects and extractors (generate_sorting, NumpySorting, read_phy)."""

from __future__ import annotations

import numpy as np
import pytest

import organoid_sim
from organoid_sim import SpikeRecording
from organoid_sim.events import StimEvents
from organoid_sim.io import RecordingFormatError
from organoid_sim.recording import Electrodes

si = pytest.importorskip("spikeinterface.core")
se = pytest.importorskip("spikeinterface.extractors")
pytest.importorskip("pandas")  # SpikeInterface's phy reader needs it


def _same_trains(sorting_a, sorting_b):
    assert list(sorting_a.get_unit_ids()) == list(sorting_b.get_unit_ids())
    for u in sorting_a.get_unit_ids():
        np.testing.assert_array_equal(sorting_a.get_unit_spike_train(u), sorting_b.get_unit_spike_train(u))


def test_round_trip_through_generate_sorting():
    sorting = si.generate_sorting(num_units=6, sampling_frequency=30_000.0, durations=[4.0], seed=7)
    rec = SpikeRecording.from_spikeinterface(sorting)
    assert rec.sampling_rate == 30_000.0 and rec.n_units == 6
    assert rec.unit_ids.tolist() == list(sorting.get_unit_ids())
    for i, u in enumerate(sorting.get_unit_ids()):
        np.testing.assert_allclose(rec.spike_times[i], sorting.get_unit_spike_train(u) / 30_000.0)
    back = rec.to_spikeinterface()
    assert back.get_sampling_frequency() == 30_000.0
    _same_trains(sorting, back)


def test_text_unit_ids_and_numpy_sorting():
    frames = np.array([10, 20, 25, 400, 401, 900])
    labels = np.array(["b", "a", "b", "c", "a", "c"])
    sorting = si.NumpySorting.from_samples_and_labels([frames], [labels], 1000.0, unit_ids=["a", "b", "c"])
    rec = SpikeRecording.from_spikeinterface(sorting)
    assert rec.unit_ids.tolist() == ["a", "b", "c"]
    np.testing.assert_allclose(rec["b"], [0.010, 0.025])
    _same_trains(sorting, rec.to_spikeinterface())


def test_positions_and_window_from_the_probe():
    recording, sorting = si.generate_ground_truth_recording(durations=[3.0], num_channels=6, num_units=4, seed=1)
    channel_ids = recording.get_channel_ids()
    main = [channel_ids[k] for k in (5, 0, 3, 3)]
    sorting.set_property("main_channel_id", np.array(main))
    rec = SpikeRecording.from_spikeinterface(sorting, recording)
    locations = recording.get_channel_locations()
    np.testing.assert_array_equal(rec.positions, locations[[5, 0, 3, 3]])
    assert (rec.t_start, rec.t_stop) == (0.0, recording.get_num_samples(0) / recording.get_sampling_frequency())
    assert len(rec.electrodes) == len(channel_ids)
    np.testing.assert_array_equal(rec.electrodes.positions, locations)


def test_to_spikeinterface_without_sampling_rate_uses_the_resolution_rule():
    rec = SpikeRecording.from_spike_times([[0.0015, 0.75], [0.2]], t_stop=1.0, metadata={"dt_ms": 0.5})
    sorting = rec.to_spikeinterface()
    assert sorting.get_sampling_frequency() == 2000.0
    np.testing.assert_array_equal(sorting.get_unit_spike_train(0), [3, 1500])
    assert rec.replace(metadata={}).to_spikeinterface().get_sampling_frequency() == 1e6
    np.testing.assert_array_equal(sorting.get_property("electrode_id"), [-1, -1])



@pytest.mark.parametrize("fs", [12_500.0, 25_000.0])  # Axion's and cl1's rates: 1 / (1 / fs) != fs
def test_to_spikeinterface_keeps_the_sampling_rate_exactly(fs):
    rec = SpikeRecording.from_spike_times([[0.1, 0.2]], t_stop=1.0, sampling_rate=fs, electrode_ids=[0])
    sorting = rec.to_spikeinterface()
    assert sorting.get_sampling_frequency() == fs
    np.testing.assert_array_equal(sorting.get_unit_spike_train(0), [round(0.1 * fs), round(0.2 * fs)])
    recording = si.NumpyRecording(np.zeros((int(fs), 1), dtype="float32"), sampling_frequency=fs)
    back = SpikeRecording.from_spikeinterface(sorting, recording)  # refused when the rates differ
    assert back.sampling_rate == fs

def test_round_trip_keeps_window_electrodes_layout_stim_and_metadata(tmp_path):
    """rec -> sorting -> rec: the window (t_start 12.5 s), electrode ids, positions, the layout (with
    an electrode no unit sits on), stimulation and metadata come back (they were dropped: the times
    came back 12.5 s early and the electrodes unknown), also from a sorting saved to a folder. The
    spike trains are checked against SpikeInterface's own frames and times."""
    fs, t0 = 10_000.0, 12.5
    rng = np.random.default_rng(3)
    frames = [np.sort(rng.choice(30_000, size=40, replace=False)) for _ in range(3)]
    rec = SpikeRecording.from_spike_times(
        [t0 + f / fs for f in frames], t_start=t0, t_stop=t0 + 3.0, unit_ids=["u4", "u7", "u9"],
        electrode_ids=[21, 22, 24], electrodes=Electrodes([21, 22, 23, 24], [0.0, 200.0, 0.0, 200.0],
                                                         [0.0, 0.0, 200.0, np.nan]),
        sampling_rate=fs, stim=StimEvents.from_columns([13.0], [23], [2.0], 100.0, 2), metadata={"well": "B2"})
    sorting = rec.to_spikeinterface()
    assert sorting.get_start_time() == t0
    for i, u in enumerate(rec.unit_ids.tolist()):
        np.testing.assert_array_equal(sorting.get_unit_spike_train(u), frames[i])
        np.testing.assert_allclose(sorting.get_unit_spike_train(u, return_times=True), rec.spike_times[i],
                                   rtol=0, atol=1e-9)
    saved = sorting.save(folder=tmp_path / "sorting")
    for s in (sorting, saved):
        back = SpikeRecording.from_spikeinterface(s)
        assert back.differences(rec) == []
        np.testing.assert_array_equal(back.positions[:, 0], sorting.get_property("x_um"))


# ------------------------------------------------------------------------------ phy / Kilosort folders
def _phy_folder(tmp_path, *, cluster_info=True, params=None, name="phy"):
    """A minimal phy folder as Kilosort writes it: 3 clusters on a 4-channel probe at 30 kHz."""
    folder = tmp_path / name
    folder.mkdir()
    n_samples = 90_000  # 3 s of int16 data on 4 channels
    (folder / "recording.dat").write_bytes(b"\0" * (n_samples * 4 * 2))
    (folder / "params.py").write_text(params or "dat_path = 'recording.dat'\nn_channels_dat = 4\ndtype = 'int16'\n"
                                      "offset = 0\nsample_rate = 30000.0\nhp_filtered = False\n")
    rng = np.random.default_rng(0)
    times = np.sort(rng.choice(n_samples - 100, size=60, replace=False)).astype(np.uint64)
    clusters = rng.integers(0, 3, size=60).astype(np.int32)
    np.save(folder / "spike_times.npy", times)
    np.save(folder / "spike_clusters.npy", clusters)
    np.save(folder / "spike_templates.npy", clusters.astype(np.uint32))
    np.save(folder / "channel_map.npy", np.array([3, 4, 6, 7], dtype=np.int32))  # raw-data channel numbers
    np.save(folder / "channel_positions.npy", np.array([[0, 0], [0, 20], [16, 40], [16, 60]], dtype=np.float64))
    templates = np.zeros((3, 10, 4), dtype=np.float32)
    for t, ch in enumerate((2, 0, 3)):  # template t peaks on channel row ch
        templates[t, 4, ch] = -5.0
    np.save(folder / "templates.npy", templates)
    if cluster_info:
        (folder / "cluster_info.tsv").write_text("cluster_id\tgroup\tch\n0\tgood\t1\n1\tnoise\t2\n2\tmua\t3\n")
    return folder


def test_phy_folder_is_detected_and_matches_read_phy(tmp_path):
    folder = _phy_folder(tmp_path)
    assert organoid_sim.io.detect_format(folder) == "phy"
    rec = organoid_sim.load(folder)
    ref = se.read_phy(folder)
    assert rec.unit_ids.tolist() == list(ref.get_unit_ids()) == [0, 1, 2]
    for i, u in enumerate(ref.get_unit_ids()):
        np.testing.assert_allclose(rec.spike_times[i], ref.get_unit_spike_train(u) / 30_000.0)
    assert rec.sampling_rate == 30_000.0
    assert rec.electrode_ids.tolist() == [4, 6, 7]  # cluster_info 'ch' rows 1, 2, 3 -> channel_map
    np.testing.assert_array_equal(rec.positions, [[0, 20], [16, 40], [16, 60]])
    assert rec.t_stop == pytest.approx(3.0)  # duration of the .dat file
    no_noise = organoid_sim.load(folder, exclude_cluster_groups=["noise"])
    assert no_noise.unit_ids.tolist() == [0, 2]


def test_kilosort_folder_uses_the_templates_and_keeps_good_units(tmp_path):
    folder = _phy_folder(tmp_path, cluster_info=False)
    rec = organoid_sim.load(folder)
    assert rec.electrode_ids.tolist() == [6, 3, 7]  # template peaks on rows 2, 0, 3
    (folder / "cluster_KSLabel.tsv").write_text("cluster_id\tKSLabel\n0\tgood\n1\tmua\n2\tgood\n")
    good = organoid_sim.load(folder, keep_good_only=True)
    assert good.unit_ids.tolist() == list(se.read_kilosort(folder, keep_good_only=True).get_unit_ids()) == [0, 2]
    assert good.electrode_ids.tolist() == [6, 7]


def test_params_py_with_code_is_refused_and_never_run(tmp_path):
    marker = tmp_path / "ran"
    code = f"sample_rate = 30000.0\nopen({str(marker)!r}, 'w')\n"
    folder = _phy_folder(tmp_path, params=code)
    with pytest.raises(RecordingFormatError, match="line 2"):
        organoid_sim.load(folder)
    assert not marker.exists()


def test_a_plain_directory_is_still_an_error(tmp_path):
    with pytest.raises(RecordingFormatError, match="phy/Kilosort"):
        organoid_sim.load(tmp_path)
