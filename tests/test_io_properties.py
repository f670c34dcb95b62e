"""Property-based checks: random recordings survive every writer/reader round trip exactly, and
randomly damaged files give our error types (never a raw h5py/zlib/scipy traceback).

Examples are derandomized so CI runs are reproducible; to explore further, drop
``derandomize=True`` and raise ``max_examples`` locally."""

from __future__ import annotations

import io
import tempfile
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import organoid_sim
from organoid_sim import Electrodes, SpikeRecording, StimEvents
from organoid_sim.io import RecordingFormatError

FORMATS = (".nwb", ".h5", ".npz", ".csv")
finite = st.floats(min_value=-5000, max_value=5000, allow_nan=False, allow_infinity=False)
maybe_nan = st.one_of(finite, st.just(float("nan")))


@st.composite
def recordings(draw):
    n = draw(st.integers(0, 5))
    t_start = draw(st.floats(0, 100, allow_nan=False))
    length = draw(st.floats(0.001, 1000, allow_nan=False))
    t_stop = t_start + length
    in_window = st.floats(t_start, t_stop, allow_nan=False)
    trains = [sorted(draw(st.lists(in_window, max_size=15))) for _ in range(n)]
    if draw(st.booleans()):
        unit_ids = draw(st.lists(st.integers(-10**9, 10**9), min_size=n, max_size=n, unique=True))
    else:
        unit_ids = draw(st.lists(st.text("abcXYZ019_-.", min_size=1, max_size=6), min_size=n, max_size=n,
                                 unique=True))
    layout_ids = draw(st.lists(st.integers(0, 200), max_size=6, unique=True))
    layout = Electrodes(np.array(layout_ids, np.int64), draw(st.lists(maybe_nan, min_size=len(layout_ids),
                                                                    max_size=len(layout_ids))),
                        draw(st.lists(maybe_nan, min_size=len(layout_ids), max_size=len(layout_ids))))
    electrode_ids = draw(st.lists(st.one_of(st.just(-1), st.integers(0, 250)), min_size=n, max_size=n))
    positions = draw(st.lists(st.tuples(maybe_nan, maybe_nan), min_size=n, max_size=n))
    n_stim = draw(st.integers(0, 4))
    stim = StimEvents.from_columns(
        draw(st.lists(st.floats(0, 2000, allow_nan=False), min_size=n_stim, max_size=n_stim)),
        draw(st.lists(st.integers(0, 300), min_size=n_stim, max_size=n_stim)),
        draw(st.lists(st.floats(-100, 100, allow_nan=False), min_size=n_stim, max_size=n_stim)),
        draw(st.lists(st.floats(0, 1000, allow_nan=False), min_size=n_stim, max_size=n_stim)),
        draw(st.lists(st.integers(1, 3), min_size=n_stim, max_size=n_stim)),
        amplitude_unit=draw(st.sampled_from(["uA", "mV"])))
    fs = draw(st.one_of(st.none(), st.floats(1.0, 1e6, allow_nan=False)))
    metadata = draw(st.dictionaries(st.text("abcdef", min_size=1, max_size=5),
                                    st.one_of(st.integers(-100, 100), st.text(max_size=5), st.booleans()), max_size=3))
    return SpikeRecording.from_spike_times(
        trains, t_start=t_start, t_stop=t_stop, unit_ids=np.array(unit_ids) if n else None,
        electrode_ids=np.array(electrode_ids, np.int64), positions=np.array(positions, float).reshape(n, 2),
        electrodes=layout, sampling_rate=fs, stim=stim, metadata=metadata)


@pytest.mark.parametrize("ext", FORMATS)
@settings(max_examples=12, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(rec=recordings())
def test_every_writer_round_trips_exactly(ext, rec):
    with tempfile.TemporaryDirectory() as d:
        path = organoid_sim.save(rec, Path(d) / f"r{ext}")
        back = organoid_sim.load(path)
    assert back == rec, back.differences(rec)


@settings(max_examples=8, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(rec=recordings())
def test_written_nwb_files_pass_pynwb_validate(rec):
    pynwb = pytest.importorskip("pynwb")
    with tempfile.TemporaryDirectory() as d:
        path = organoid_sim.save(rec, Path(d) / "v.nwb")
        with pynwb.NWBHDF5IO(str(path), "r") as io:
            assert list(pynwb.validate(io=io)) == []


# ------------------------------------------------------------------------------------- corruption
_SAMPLE = SpikeRecording.from_spike_times(
    [np.linspace(0.01, 9.9, 40), [], np.linspace(0.5, 5.0, 25)], t_start=0.0, t_stop=10.0, unit_ids=[1, 2, 3],
    electrode_ids=[10, 11, -1], electrodes=Electrodes([10, 11], [0.0, 200.0], [0.0, 0.0]), sampling_rate=1e4,
    stim=StimEvents.from_columns([1.0, 2.0], [10, 11], [-1.0, 1.0], [100.0, 100.0], [2, 2]), metadata={"k": "v"})
_BYTES: dict[str, bytes] = {}


def _sample_bytes(ext: str) -> bytes:
    if ext not in _BYTES:
        with tempfile.TemporaryDirectory() as d:
            _BYTES[ext] = organoid_sim.save(_SAMPLE, Path(d) / f"s{ext}").read_bytes()
    return _BYTES[ext]


def _delete_part(path: Path, ext: str, pick: int) -> None:
    """Remove one dataset (HDF5), archive member (NPZ) or line (CSV)."""
    if ext in (".nwb", ".h5"):
        with h5py.File(path, "a") as f:
            names = []
            f.visititems(lambda n, o: names.append(n) if isinstance(o, h5py.Dataset) else None)
            del f[names[pick % len(names)]]
    elif ext == ".npz":
        with zipfile.ZipFile(path) as z:
            members = {m: z.read(m) for m in z.namelist()}
        drop = sorted(members)[pick % len(members)]
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as z:
            for m, data in members.items():
                if m != drop:
                    z.writestr(m, data)
        path.write_bytes(buf.getvalue())
    else:
        lines = path.read_text().splitlines(keepends=True)
        del lines[pick % len(lines)]
        path.write_text("".join(lines))


@pytest.mark.parametrize("ext", FORMATS)
@settings(max_examples=25, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(how=st.sampled_from(["truncate", "flip", "delete"]), where=st.floats(0, 1, exclude_max=True),
       n_flips=st.integers(1, 16), seed=st.integers(0, 2**32 - 1))
def test_corrupted_files_raise_our_errors(ext, how, where, n_flips, seed):
    data = bytearray(_sample_bytes(ext))
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / f"c{ext}"
        if how == "truncate":
            path.write_bytes(bytes(data[: int(where * len(data))]))
        elif how == "flip":
            rng = np.random.default_rng(seed)
            for pos in rng.integers(0, len(data), n_flips):
                data[pos] ^= int(rng.integers(1, 256))
            path.write_bytes(bytes(data))
        else:
            path.write_bytes(bytes(data))
            _delete_part(path, ext, int(where * 1000))
        try:
            rec = organoid_sim.load(path)
        except RecordingFormatError as exc:
            assert str(path) in str(exc)
        else:  # damage in a spot the reader does not need, or a still-valid value
            assert isinstance(rec, SpikeRecording)
