"""NWB files we write pass nwbinspector and load in SpikeInterface; foreign (neuroconv/SpikeInterface
style) NWB files load correctly. References: nwbinspector, pynwb and SpikeInterface's own readers."""

from __future__ import annotations

import datetime
from pathlib import Path

import numpy as np
import pytest

import organoid_sim
from organoid_sim import SpikeRecording, StimEvents
from organoid_sim.io import RecordingFormatError
from organoid_sim.io.nwb import DEFAULT_RESOLUTION_S, ObservationGapWarning

pynwb = pytest.importorskip("pynwb")
nwbinspector = pytest.importorskip("nwbinspector")
se = pytest.importorskip("spikeinterface.extractors")

AXION_H5 = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "real" / "CO_20140212_MW1007-51_DIV05_00_001.h5"
UTC = datetime.timezone.utc


def _bad_messages(path) -> list[str]:
    """nwbinspector messages at CRITICAL or BEST_PRACTICE_VIOLATION importance."""
    from nwbinspector import Importance, inspect_nwbfile

    worst = {Importance.CRITICAL, Importance.BEST_PRACTICE_VIOLATION}
    return [f"{m.importance.name}: {m.check_function_name}: {m.message}"
            for m in inspect_nwbfile(nwbfile_path=str(path)) if m.importance in worst]


def _check_spikeinterface_reads(path, rec: SpikeRecording, fs: float) -> None:
    """SpikeInterface's reader finds the sampling frequency and the same spike trains (to one sample)."""
    sorting = se.read_nwb_sorting(str(path))
    assert sorting.get_sampling_frequency() == pytest.approx(fs)
    assert sorting.get_num_units() == rec.n_units
    for i, uid in enumerate(sorting.get_unit_ids()):
        frames = sorting.get_unit_spike_train(uid)
        np.testing.assert_allclose(frames / fs, rec.spike_times[i], atol=1.0 / fs)


def _simulated():
    data = SpikeRecording.from_spike_times([np.linspace(0.1, 9.0, 40), np.linspace(0.3, 8.0, 25)], t_stop=10.0)
    from organoid_sim.models import PoissonModel

    return PoissonModel(dt_ms=5.0).fit(data).simulate(5.0, seed=3)


def _evoked():
    rng = np.random.default_rng(5)
    trains = [np.sort(rng.uniform(0.0, 8.0, size=n)) for n in (30, 12, 50)]
    stim = StimEvents.from_columns([1.0, 2.5, 4.0], [0, 1, 2], [-2.0, 1.5, -1.0], [200.0, 100.0, 200.0], [2, 2, 2])
    return SpikeRecording.from_spike_times(trains, t_stop=8.0, electrode_ids=[0, 1, 2],
                                           positions=[[0, 0], [200, 0], [0, 200]], stim=stim,
                                           metadata={"model": "SpikingNetworkModel", "dt_ms": 0.5})


@pytest.mark.parametrize("kind", ["recorded", "simulated", "evoked"])
def test_every_file_we_write_passes_nwbinspector_and_loads_in_spikeinterface(kind, tmp_path):
    if kind == "recorded":
        if not AXION_H5.exists():
            pytest.skip("shared Axion recording not available")
        rec = organoid_sim.load(AXION_H5, well="B3")  # an Axion conversion: sampling rate unknown
        fs = 1.0 / DEFAULT_RESOLUTION_S
    elif kind == "simulated":
        rec = _simulated()
        fs = 1.0 / DEFAULT_RESOLUTION_S
    else:
        rec = _evoked()
        fs = 2000.0  # from the simulation step dt_ms = 0.5
    assert rec.sampling_rate is None
    path = organoid_sim.save(rec, tmp_path / f"{kind}.nwb")
    assert _bad_messages(path) == []
    _check_spikeinterface_reads(path, rec, fs)
    assert organoid_sim.load(path) == rec
    with pynwb.NWBHDF5IO(str(path), "r") as io:
        nwb = io.read()
        assert nwb.subject is not None and nwb.subject.sex == "U"
        assert nwb.units.resolution == pytest.approx(1.0 / fs)
        assert nwb.session_start_time.year > 1970
        if kind == "evoked":
            assert len(nwb.intervals["stimulation"]) == 3


def test_known_sampling_rate_gives_resolution_and_spikeinterface_frequency(tmp_path):
    rec = SpikeRecording.from_spike_times([[0.00005, 0.5, 1.25]], t_stop=2.0, sampling_rate=20_000.0)
    path = organoid_sim.save(rec, tmp_path / "fs.nwb")
    assert _bad_messages(path) == []
    _check_spikeinterface_reads(path, rec, 20_000.0)
    np.testing.assert_array_equal(se.read_nwb_sorting(str(path)).get_unit_spike_train(0), [1, 10_000, 25_000])


def test_session_start_rule_and_subject_options(tmp_path):
    rec = SpikeRecording.from_spike_times([[0.1, 0.2]], t_stop=1.0)
    before = datetime.datetime.now(UTC).replace(microsecond=0)
    path = organoid_sim.save(rec, tmp_path / "now.nwb")
    with pynwb.NWBHDF5IO(str(path), "r") as io:
        nwb = io.read()
        assert before <= nwb.session_start_time <= datetime.datetime.now(UTC)  # no metadata, no source: now
        assert nwb.subject.species.startswith("http://purl.obolibrary.org/obo/NCBITaxon_")
    start = datetime.datetime(2021, 3, 4, 5, 6, 7, tzinfo=UTC)
    dated = rec.with_metadata(session_start_time=start.isoformat(), species="Rattus norvegicus", well="D1")
    path = organoid_sim.save(dated, tmp_path / "dated.nwb", age="P12D", sex="M", subject_description="rat cortex")
    with pynwb.NWBHDF5IO(str(path), "r") as io:
        nwb = io.read()
        assert nwb.session_start_time == start
        s = nwb.subject
        assert (s.subject_id, s.species, s.age, s.sex, s.description) == ("D1", "Rattus norvegicus", "P12D", "M",
                                                                          "rat cortex")
    assert _bad_messages(path) == []
    src = tmp_path / "source.bin"
    src.write_bytes(b"x")
    stamp = datetime.datetime(2019, 6, 1, 12, 0, tzinfo=UTC).timestamp()
    import os

    os.utime(src, (stamp, stamp))
    path = organoid_sim.save(rec.with_metadata(source=str(src)), tmp_path / "from_file.nwb")
    with pynwb.NWBHDF5IO(str(path), "r") as io:
        assert io.read().session_start_time == datetime.datetime(2019, 6, 1, 12, 0, tzinfo=UTC)
    with pytest.raises(ValueError, match="session_start_time"):
        organoid_sim.save(rec, tmp_path / "bad.nwb", session_start_time="yesterday")


# ------------------------------------------------------------------------------ foreign files
def _write_nwb(nwb, path: Path) -> Path:
    with pynwb.NWBHDF5IO(str(path), "w") as io:
        io.write(nwb)
    return path


def _neuroconv_like(tmp_path, *, gaps=False, negative=False, units=True, main_channel=True):
    """An NWB file laid out as neuroconv/SpikeInterface write sorted units: an electrodes table with
    ``channel_name``, units that list several electrodes, ``main_channel_id``, ``unit_name``,
    ``Units.resolution`` = 1 / 20 kHz, written with pynwb."""
    nwb = pynwb.NWBFile(session_description="sorted", identifier="nc",
                        session_start_time=datetime.datetime(2023, 5, 1, tzinfo=UTC))
    dev = nwb.create_device(name="probe")
    grp = nwb.create_electrode_group(name="g0", description="shank", location="culture", device=dev)
    nwb.add_electrode_column(name="channel_name", description="channel name")
    for k in range(4):
        nwb.add_electrode(id=k, x=float(k * 20), y=0.0, z=0.0, location="culture", group=grp,
                          channel_name=f"ch{k + 10}")
    if units:
        nwb.units = pynwb.misc.Units(name="units", resolution=1 / 20_000.0, electrode_table=nwb.electrodes)
        nwb.add_unit_column(name="unit_name", description="unit name")
        if main_channel:
            nwb.add_unit_column(name="main_channel_id", description="main channel")
        off = -2.0 if negative else 0.0
        obs = [[5.0, 50.0], [60.0, 105.0]] if gaps else [[0.0 + off, 105.0]]
        for name, main, st in (("a", "ch12", [6.0, 7.5, 61.0]), ("b", "ch13", [10.0, 70.0]), ("c", "ch10", [80.0])):
            st = [t + off for t in st]
            extra = {"main_channel_id": main} if main_channel else {}
            nwb.add_unit(spike_times=st, electrodes=[0, 1, 2, 3], obs_intervals=obs, unit_name=name, **extra)
    return _write_nwb(nwb, tmp_path / "neuroconv.nwb")


def test_main_channel_id_and_resolution_of_a_neuroconv_file(tmp_path):
    rec = organoid_sim.load(_neuroconv_like(tmp_path))
    assert rec.unit_ids.tolist() == ["a", "b", "c"]
    assert rec.electrode_ids.tolist() == [2, 3, 0]  # ch12, ch13, ch10, not the first listed electrode
    np.testing.assert_array_equal(rec.positions[:, 0], [40.0, 60.0, 0.0])
    assert rec.sampling_rate == 20_000.0
    assert rec.metadata["obs_intervals"] == [[0.0, 105.0]]
    # without main_channel_id the first listed electrode is the documented fallback
    rec = organoid_sim.load(_neuroconv_like(tmp_path, main_channel=False))
    assert rec.electrode_ids.tolist() == [0, 0, 0]


def test_obs_intervals_with_gaps_are_kept_and_warned(tmp_path):
    with pytest.warns(ObservationGapWarning, match="10 s of gaps"):
        rec = organoid_sim.load(_neuroconv_like(tmp_path, gaps=True))
    assert rec.metadata["obs_intervals"] == [[5.0, 50.0], [60.0, 105.0]]
    assert (rec.t_start, rec.t_stop) == (5.0, 105.0)
    with pynwb.NWBHDF5IO(str(_neuroconv_like(tmp_path, gaps=True)), "r") as io:
        ref = io.read().units["obs_intervals"][0]
    np.testing.assert_array_equal(rec.metadata["obs_intervals"], ref)


def test_no_units_table_is_an_error(tmp_path):
    with pytest.raises(RecordingFormatError, match="no Units table"):
        organoid_sim.load(_neuroconv_like(tmp_path, units=False))


def test_negative_spike_times_are_shifted_with_the_offset_kept(tmp_path):
    path = _neuroconv_like(tmp_path, negative=True)
    with pytest.warns(UserWarning, match="shifted by 2 s"):
        rec = organoid_sim.load(path)
    assert rec.t_start == 0.0 and rec.metadata["time_offset_s"] == -2.0
    with pynwb.NWBHDF5IO(str(path), "r") as io:
        ref = io.read().units["spike_times"][0]
    np.testing.assert_allclose(rec.spike_times[0] + rec.metadata["time_offset_s"], ref)
