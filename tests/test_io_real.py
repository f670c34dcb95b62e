"""Readers on the real recordings and genuine vendor fixtures in ../shared/data.

Expected values come from the data's provenance notes (../shared/data/README.md) and from reading
the files independently with h5py / scipy.io here.
"""

from __future__ import annotations

import datetime

import h5py
import numpy as np
import pytest
import scipy.io

import organoid_sim
from organoid_sim.io import RecordingFormatError, detect_format


def test_axion_well_d1_matches_provenance_and_raw_file(div12_path):
    rec = organoid_sim.load(div12_path, well="D1")
    assert rec.n_units == 16 and rec.n_spikes == 39_399  # README: well D1 has 39,399 spikes
    assert rec.metadata["format"] == "axion" and rec.metadata["well"] == "D1"
    with h5py.File(div12_path, "r") as f:
        names = np.array([n.decode() for n in f["names"][()]])
        counts = f["sCount"][()].astype(int)
        spikes = f["spikes"][()]
        epos = f["epos"][()]
    starts = np.concatenate([[0], np.cumsum(counts)])
    for i, name in enumerate(rec.unit_ids.tolist()):
        k = int(np.flatnonzero(names == name)[0])
        np.testing.assert_array_equal(rec.spike_times[i], spikes[starts[k]:starts[k + 1]])
        np.testing.assert_array_equal(rec.positions[i], epos[:, k])
    assert all(n.startswith("D1_") for n in rec.unit_ids.tolist())
    # 4 x 4 grid at 200 um pitch (README)
    assert len(np.unique(rec.positions[:, 0])) == 4 and set(np.diff(np.unique(rec.positions[:, 0]))) == {200.0}


def test_axion_lists_wells_and_requires_a_choice(div12_path):
    wells = organoid_sim.list_wells(div12_path)
    assert len(wells) == 47 and "D1" in wells  # README: 47 active wells
    with pytest.raises(RecordingFormatError, match="choose one with well="):
        organoid_sim.load(div12_path)
    with pytest.raises(RecordingFormatError, match="well 'Z9' not found"):
        organoid_sim.load(div12_path, well="Z9")
    total = sum(organoid_sim.load(div12_path, well=w).n_spikes for w in wells)
    assert total == 696_637  # README: all channels of the plate


def test_meanap_thr4_matches_scipy(ngn2_path):
    rec = organoid_sim.load(ngn2_path, detector="thr4")
    assert rec.n_units == 64 and rec.n_spikes == 24_941
    assert rec.sampling_rate == 12_500.0 and rec.duration == pytest.approx(600.0)
    mat = scipy.io.loadmat(ngn2_path, squeeze_me=True, struct_as_record=False)
    for i, s in enumerate(mat["spikeTimes"]):
        np.testing.assert_array_equal(rec.spike_times[i], np.atleast_1d(s.thr4).astype(float))
    np.testing.assert_array_equal(rec.unit_ids, mat["channels"])
    # 8 x 8 grid: layout coordinates become a 300 um pitch, same ordering as the MATLAB coords
    assert np.unique(rec.positions[:, 0]).tolist() == [300.0 * k for k in range(8)]
    np.testing.assert_array_equal(np.argsort(rec.positions[:, 0], kind="stable"),
                                  np.argsort(mat["coords"][:, 0], kind="stable"))


def test_meanap_detector_choice(ngn2_path):
    counts = {d: organoid_sim.load(ngn2_path, detector=d).n_spikes for d in ("bior1p5", "thr4", "thr5")}
    assert counts == {"bior1p5": 7_753, "thr4": 24_941, "thr5": 1_417}  # README
    with pytest.raises(RecordingFormatError, match="thr4"):
        organoid_sim.load(ngn2_path)
    with pytest.raises(RecordingFormatError, match="no detector 'nope'"):
        organoid_sim.load(ngn2_path, detector="nope")


def test_maxwell_legacy_mapping_from_genuine_file(maxone_legacy_path):
    assert detect_format(maxone_legacy_path) == "maxwell"
    rec = organoid_sim.load(maxone_legacy_path)
    with h5py.File(maxone_legacy_path, "r") as f:
        mapping = f["mapping"][()]
    assert rec.n_units == 781 and rec.n_spikes == 0  # README: 781 mapped channels, no spikeTimes
    order = np.argsort(mapping["channel"])
    np.testing.assert_array_equal(rec.unit_ids, mapping["channel"][order])
    np.testing.assert_array_equal(rec.electrode_ids, mapping["electrode"][order])
    np.testing.assert_array_equal(rec.positions, np.stack([mapping["x"], mapping["y"]], 1)[order])
    assert rec.sampling_rate == 20_000.0 and rec.metadata["spikes_stored"] is False
    assert len(rec.electrodes) == 781
    # window from the file's start/stop text (README: /sig holds zero samples)
    assert rec.metadata["time"].startswith("start: 2021-10-19 20:55:05")
    span = datetime.datetime(2021, 10, 19, 20, 56, 51) - datetime.datetime(2021, 10, 19, 20, 55, 5)
    assert rec.t_stop == span.total_seconds()


def test_mcs_timestamps_match_raw_stamps(mcs_path):
    rec = organoid_sim.load(mcs_path)
    assert rec.metadata["format"] == "mcs" and rec.n_units == 8
    with h5py.File(mcs_path, "r") as f:
        g = f["Data/Recording_0/TimeStampStream/Stream_0"]
        for i in range(8):
            stamps_us = g[f"TimeStampEntity_{i}"][()].ravel()
            np.testing.assert_array_equal(rec.spike_times[i], stamps_us / 1e6)
        duration_us = f["Data/Recording_0"].attrs["Duration"]
    assert rec.t_stop == duration_us / 1e6
    assert rec.sampling_rate == 500.0  # file name: 500 Hz; Tick = 2000 us
    assert rec.metadata["channel_labels"] == [f"E{k}" for k in range(1, 9)]


def _write_v73(path, mat, struct_array: bool):
    """The NGN2 contents laid out as MATLAB -v7.3 saves them (HDF5 with a 512-byte MAT header)."""

    def num(group, name, value):
        a = np.asarray(value, dtype=float)
        if a.size == 0:
            ds = group.create_dataset(name, data=np.array([0, 0], np.uint64))
            ds.attrs["MATLAB_empty"] = np.uint8(1)
        else:
            ds = group.create_dataset(name, data=np.atleast_2d(a).T if a.ndim < 2 else a.T)
        ds.attrs["MATLAB_class"] = np.bytes_("double")
        return ds

    detectors = ("bior1p5", "thr4", "thr5")
    with h5py.File(path, "w", userblock_size=512) as f:
        refs = f.create_group("#refs#")
        if struct_array:
            g = f.create_group("spikeTimes")
            g.attrs["MATLAB_class"] = np.bytes_("struct")
            for d in detectors:
                targets = [num(refs, f"{d}_{i}", getattr(s, d)) for i, s in enumerate(mat["spikeTimes"])]
                g.create_dataset(d, data=np.array([[t.ref] for t in targets], dtype=h5py.ref_dtype))
        else:
            cells = []
            for i, s in enumerate(mat["spikeTimes"]):
                g = refs.create_group(f"c{i}")
                g.attrs["MATLAB_class"] = np.bytes_("struct")
                for d in detectors:
                    num(g, d, getattr(s, d))
                cells.append([g.ref])
            ds = f.create_dataset("spikeTimes", data=np.array(cells, dtype=h5py.ref_dtype))
            ds.attrs["MATLAB_class"] = np.bytes_("cell")
        num(f, "channels", mat["channels"][None, :])
        num(f, "coords", mat["coords"])
        p = f.create_group("Params")
        num(p, "fs", mat["Params"].fs)
        i = f.create_group("Info")
        num(i, "duration_s", mat["Info"].duration_s)
    with open(path, "r+b") as fh:
        fh.write(b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: test HDF5 schema 1.00 .".ljust(116))


@pytest.mark.parametrize("struct_array", [False, True])
def test_meanap_v73_hdf5_matches_v5(ngn2_path, tmp_path, struct_array):
    mat = scipy.io.loadmat(ngn2_path, squeeze_me=True, struct_as_record=False)
    path = tmp_path / "ngn2_v73.mat"
    _write_v73(path, mat, struct_array)
    assert detect_format(path) == "meanap"
    assert organoid_sim.io.meanap.detectors(path) == ["bior1p5", "thr4", "thr5"]
    v73 = organoid_sim.load(path, detector="thr4")
    v5 = organoid_sim.load(ngn2_path, detector="thr4")
    assert v73.metadata["mat_version"] == "7.3"
    assert v73.replace(metadata={}) == v5.replace(metadata={})


@pytest.mark.parametrize("version", ["5", "7.3 cell", "7.3 struct"])
def test_meanap_one_channel_file_loads(ngn2_path, tmp_path, version):
    """One channel of the NGN2 file saved alone, in the shapes MATLAB saves (1 x 1 cell of a struct,
    1 x 1 ``channels``, 1 x 2 ``coords``): scipy.io squeezes them to a struct, a scalar and a
    2-vector (the v5 file failed: 'coords has shape (2,)'), and the channel's thr5 train holds one
    spike (a scalar). Times, id, rate and window match the original file read with scipy.io; the
    position is unknown (one electrode shows no grid spacing: the v7.3 file gave 300, 600 um for an
    electrode at 900, 1800 um)."""
    mat = scipy.io.loadmat(ngn2_path, squeeze_me=True, struct_as_record=False)
    counts = [np.atleast_1d(s.thr5).size for s in mat["spikeTimes"]]
    k = counts.index(1)
    s = mat["spikeTimes"][k]
    path = tmp_path / "one_channel.mat"
    if version == "5":
        cell = np.empty((1, 1), dtype=object)
        cell[0, 0] = {d: np.atleast_2d(np.atleast_1d(getattr(s, d)).astype(float)) for d in ("bior1p5", "thr4", "thr5")}
        scipy.io.savemat(path, {"spikeTimes": cell, "channels": np.array([[mat["channels"][k]]], dtype=float),
                                "coords": mat["coords"][k:k + 1], "Params": {"fs": mat["Params"].fs},
                                "Info": {"duration_s": mat["Info"].duration_s}})
    else:
        one = {"spikeTimes": mat["spikeTimes"][k:k + 1], "channels": mat["channels"][k:k + 1],
               "coords": mat["coords"][k:k + 1], "Params": mat["Params"], "Info": mat["Info"]}
        _write_v73(path, one, struct_array=version == "7.3 struct")
    assert detect_format(path) == "meanap"
    for detector in ("thr4", "thr5"):
        rec = organoid_sim.load(path, detector=detector)
        assert rec.unit_ids.tolist() == rec.electrode_ids.tolist() == [int(mat["channels"][k])]
        np.testing.assert_array_equal(rec.spike_times[0], np.atleast_1d(getattr(s, detector)).astype(float))
        assert rec.sampling_rate == float(mat["Params"].fs) and rec.t_stop == float(mat["Info"].duration_s)
        assert np.isnan(rec.positions).all()
        np.testing.assert_array_equal(rec.metadata["coords_layout_units"], mat["coords"][k:k + 1])
    assert rec.n_spikes == 1
