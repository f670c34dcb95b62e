"""Bad input gives RecordingFormatError naming the file, the dataset and the problem."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

import organoid_sim
from organoid_sim import SpikeRecording
from organoid_sim.io import RecordingFormatError


def _generic(path, **datasets):
    with h5py.File(path, "w") as f:
        for k, v in datasets.items():
            f[k] = v
    return path


def _expect(path, dataset, problem):
    with pytest.raises(RecordingFormatError) as err:
        organoid_sim.load(path)
    e = err.value
    assert e.path == str(path) and str(path) in str(e)
    if dataset is not None:
        assert e.dataset == dataset, str(e)
    assert problem in e.problem, str(e)
    assert isinstance(e, ValueError)
    return e


def test_truncated_hdf5(tmp_path):
    rec = SpikeRecording.from_spike_times([np.linspace(0, 1, 500)], t_start=0, t_stop=1)
    path = organoid_sim.save(rec, tmp_path / "t.nwb")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])
    _expect(path, None, "corrupt or truncated")


def test_missing_datasets(tmp_path):
    _expect(_generic(tmp_path / "a.h5", spike_times=[0.1, 0.2]), "spike_times_index", "missing")
    _expect(_generic(tmp_path / "b.h5", spike_units=[1, 2]), None, "matches no known format")
    with h5py.File(tmp_path / "c.h5", "w") as f:
        f.attrs["format"] = "organoid_sim.spikes"
        f["spike_units"] = [0]
    _expect(tmp_path / "c.h5", "spike_times", "required dataset is missing")


def test_wrong_dtypes(tmp_path):
    path = tmp_path / "d.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("spike_times", data=["a", "b"], dtype=h5py.string_dtype())
        f["spike_times_index"] = [2]
    _expect(path, "spike_times", "has dtype")
    _expect(_generic(tmp_path / "e.h5", spike_times=[0.1, 0.2], spike_times_index=[0.5, 2.0]),
            "spike_times_index", "expected kind")


def test_unsorted_spikes(tmp_path):
    _expect(_generic(tmp_path / "u.h5", spike_times=[0.1, 0.3, 0.2], spike_times_index=[3]),
            "spike_times", "not sorted")


def test_mismatched_index_arrays(tmp_path):
    _expect(_generic(tmp_path / "m.h5", spike_times=[0.1, 0.2, 0.3], spike_times_index=[1, 2]),
            "spike_times_index", "index ends at 2 but the data has 3 values")
    _expect(_generic(tmp_path / "n.h5", spike_times=[0.1, 0.2, 0.3], spike_times_index=[2, 1, 3]),
            "spike_times_index", "not non-decreasing")
    _expect(_generic(tmp_path / "o.h5", spike_times=[0.1, 0.2], spike_units=[1, 2, 3]),
            "spike_units", "has shape (3,)")
    _expect(_generic(tmp_path / "p.h5", spike_times=[0.1, 0.2], spike_times_index=[1, 2], unit_ids=[5]),
            "unit_ids", "has 1 entries")
    _expect(_generic(tmp_path / "q.h5", spike_times=[0.1, 0.2], spike_times_index=[1, 2], positions=np.zeros((3, 2))),
            "positions", "has 3 rows for 2 units")


def test_empty_units_array_with_spikes(tmp_path):
    _expect(_generic(tmp_path / "q.h5", spike_times=[0.1, 0.2], spike_units=np.zeros(0, int)),
            "spike_units", "has shape (0,)")


def test_nwb_index_mismatch_and_bad_electrode_rows(tmp_path):
    rec = SpikeRecording.from_spike_times([[0.1, 0.2], [0.3]], t_start=0, t_stop=1, electrode_ids=[1, 2])
    path = organoid_sim.save(rec, tmp_path / "x.nwb")
    with h5py.File(path, "a") as f:
        f["units/spike_times_index"][1] = 7
    _expect(path, "units/spike_times_index", "index ends at 7")
    path = organoid_sim.save(rec, tmp_path / "y.nwb")
    with h5py.File(path, "a") as f:
        del f["units/electrodes"]
        f["units/electrodes"] = np.array([0, 9])
    _expect(path, "units/electrodes", "outside the electrodes table")


def test_negative_and_nan_times_name_the_dataset(tmp_path):
    _expect(_generic(tmp_path / "n.h5", spike_times=[-1.0, 0.2], spike_times_index=[2]), "spike_times", ">= 0 s")
    _expect(_generic(tmp_path / "nan.h5", spike_times=[np.nan], spike_times_index=[1]), "spike_times", "NaN")


def test_bad_mat_and_npz_and_empty_file(tmp_path, ngn2_path):
    mat = tmp_path / "x.mat"
    mat.write_bytes(ngn2_path.read_bytes()[:2000])
    _expect(mat, None, "corrupt or truncated")
    npz = tmp_path / "x.npz"
    rec = SpikeRecording.from_spike_times([[0.1]], t_start=0, t_stop=1)
    organoid_sim.save(rec, npz)
    npz.write_bytes(npz.read_bytes()[:300])
    with pytest.raises(RecordingFormatError):
        organoid_sim.load(npz)
    empty = tmp_path / "empty.h5"
    empty.write_bytes(b"")
    _expect(empty, None, "file is empty")


def test_missing_file_and_bad_output_extension(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.nwb"):
        organoid_sim.load(tmp_path / "nope.nwb")
    rec = SpikeRecording.from_spike_times([[0.1]], t_start=0, t_stop=1)
    with pytest.raises(ValueError, match="cannot tell the output format"):
        organoid_sim.save(rec, tmp_path / "x.xyz")


def test_failed_write_leaves_old_file_untouched(tmp_path, monkeypatch):
    rec = SpikeRecording.from_spike_times([[0.1]], t_start=0, t_stop=1)
    path = organoid_sim.save(rec, tmp_path / "keep.h5")
    before = path.read_bytes()
    calls = []
    real = h5py.Group.create_dataset

    def interrupted(self, *a, **k):  # Ctrl-C in the middle of writing the datasets
        calls.append(a)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(self, *a, **k)

    monkeypatch.setattr(h5py.Group, "create_dataset", interrupted)
    with pytest.raises(KeyboardInterrupt):
        organoid_sim.save(rec, path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.h5"]


def test_npz_errors_name_the_array(tmp_path):
    path = tmp_path / "x.npz"
    np.savez(path, spike_times=np.array([0.2, 0.1]), spike_times_index=np.array([2]))
    _expect(path, "spike_times", "not sorted")
    np.savez(path, spike_times=np.array([0.1]), spike_times_index=np.array([1.5]))
    _expect(path, "spike_times_index", "expected kind")


def test_option_that_does_not_apply(tmp_path):
    from organoid_sim.io import ReaderOptionError

    rec = SpikeRecording.from_spike_times([[0.1]], t_start=0, t_stop=1)
    path = organoid_sim.save(rec, tmp_path / "x.nwb")
    with pytest.raises(ReaderOptionError, match=r"x.nwb \(nwb\).*\['well'\]") as err:
        organoid_sim.load(path, well="D1")
    assert isinstance(err.value, TypeError) and isinstance(err.value, ValueError)


def test_scalar_per_unit_array_names_the_dataset(tmp_path):
    """A one-unit file written by hand with a scalar id (``f["unit_ids"] = 7``) says which dataset is wrong."""
    _expect(_generic(tmp_path / "s.h5", spike_times=[0.1, 0.2], spike_times_index=[2], unit_ids=7),
            "unit_ids", "expected 1-D")
    _expect(_generic(tmp_path / "e.h5", spike_times=[0.1, 0.2], spike_times_index=[2], electrode_ids=3),
            "electrode_ids", "expected 1-D")
