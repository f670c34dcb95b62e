"""Axion spike-list CSV reader, checked against an independent parse (pandas) of the public example
and against files the tests write."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

import organoid_sim
from organoid_sim import stats
from organoid_sim.io import RecordingFormatError, axion_csv

EXAMPLE = (Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "real" / "axion_csv"
           / "exampleRecording_1012016_plate1_DIV3_spike_list.csv.gz")
HEADER = "Investigator,,Time (s),Electrode,Amplitude(mV)\n"


@pytest.fixture(scope="module")
def reference():
    """The example's spikes parsed with pandas (columns 3-5), independent of our reader."""
    if not EXAMPLE.exists():
        pytest.skip("shared Axion CSV example not available")
    pd = pytest.importorskip("pandas")
    df = pd.read_csv(EXAMPLE, usecols=[2, 3, 4], header=0, names=["t", "e", "a"]).dropna(subset=["e"])
    df["well"] = df["e"].str.split("_").str[0]
    return df


def test_example_loads_per_well_with_positions_rate_and_settings(reference):
    assert organoid_sim.io.detect_format(EXAMPLE) == "axion_csv"
    wells = organoid_sim.list_wells(EXAMPLE)
    assert sorted(wells) == sorted(reference["well"].unique()) and len(wells) == 20
    rec, amps = axion_csv.read_amplitudes(EXAMPLE, well="D3")
    ref = reference[reference["well"] == "D3"]
    assert rec.n_spikes == len(ref)
    for uid in rec.unit_ids.tolist():
        mine = ref[ref["e"] == uid]
        np.testing.assert_array_equal(rec[uid], np.sort(mine["t"].to_numpy()))
    # amplitudes aligned with rec.times: the same (time, electrode) pairs carry the same amplitude
    got = sorted(zip(rec.times.tolist(), np.repeat(rec.unit_ids, rec.spike_counts).tolist(), amps.tolist()))
    want = sorted(zip(ref["t"].tolist(), ref["e"].tolist(), ref["a"].tolist()))
    assert got == want
    assert rec.sampling_rate == 12_500.0
    assert rec.metadata["plate"] == "Maestro 48-Well (Transparent)" and rec.metadata["well"] == "D3"
    assert rec.metadata["session_start_time"] == "2015-08-17T16:11:00"
    assert rec.metadata["axion_settings"]["Spike Detector Settings"]["Method"] == "Adaptive Threshold Crossing"
    i = int(rec.index_of("D3_41")[0])  # column 4, row 1 at the 48-well pitch (350 um)
    assert rec.electrode_ids[i] == 41 and rec.positions[i].tolist() == [1050.0, 0.0]
    assert rec.t_stop == pytest.approx(reference["t"].max())  # the plate's last spike


def test_multi_well_needs_a_choice_and_describe_refuses_the_plate(reference):
    with pytest.raises(RecordingFormatError, match="holds 20 wells"):
        organoid_sim.load(EXAMPLE)
    plate = organoid_sim.load(EXAMPLE, well="all")
    assert plate.n_spikes == len(reference) and len(plate.metadata["wells"]) == 20
    assert len(np.unique(plate.electrode_ids)) == plate.n_units
    with pytest.raises(ValueError, match="20 wells"):
        stats.describe(plate)
    with pytest.warns(UserWarning, match="20 wells"):
        stats.describe(plate.time_slice(0, 5.0), allow_multi_well=True)


def test_a_converted_well_passes_nwbinspector_with_its_start_time(reference, tmp_path):
    nwbinspector = pytest.importorskip("nwbinspector")
    pynwb = pytest.importorskip("pynwb")
    rec = organoid_sim.load(EXAMPLE, well="E6")
    path = organoid_sim.save(rec, tmp_path / "e6.nwb")
    bad = [m for m in nwbinspector.inspect_nwbfile(nwbfile_path=str(path))
           if m.importance.name in ("CRITICAL", "BEST_PRACTICE_VIOLATION")]
    assert bad == []
    with pynwb.NWBHDF5IO(str(path), "r") as io:
        nwb = io.read()
        assert nwb.session_start_time.isoformat().startswith("2015-08-17T16:11")
        assert nwb.units.resolution == pytest.approx(1 / 12_500.0)


# ------------------------------------------------------------------------------ files the tests write
def _write(path: Path, body: str, plate: str = "Maestro 48-Well", compress: bool = False) -> Path:
    text = (HEADER + "Maestro Settings,,0.5,A1_11,0.05\n"
            f"   Sampling Frequency,12.5 kHz,0.25,A1_23,-0.1\n   Plate Type,{plate},,,\n" + body)
    if compress:
        with gzip.open(path, "wt", encoding="utf-8") as fh:
            fh.write(text)
    else:
        path.write_text(text)
    return path


def test_written_files_plain_and_gzip_agree(tmp_path, capsys):
    body = ",,0.75,A1_11,0.07\n,,1.5,A1_23,\n"
    plain = organoid_sim.load(_write(tmp_path / "spikes.txt", body))  # detected from content, not the name
    packed = organoid_sim.load(_write(tmp_path / "spikes.csv.gz", body, compress=True))
    assert plain.metadata.pop("source") != packed.metadata.pop("source")
    assert plain.replace(metadata={}) == packed.replace(metadata={})
    assert plain.unit_ids.tolist() == ["A1_11", "A1_23"]
    np.testing.assert_array_equal(plain["A1_11"], [0.5, 0.75])
    assert plain.sampling_rate == 12_500.0 and plain.metadata["well"] == "A1"
    np.testing.assert_array_equal(plain.positions, [[0.0, 0.0], [350.0, 700.0]])
    assert organoid_sim.load(tmp_path / "spikes.csv.gz", progress=True) == packed
    assert "reading spikes.csv.gz" in capsys.readouterr().err  # the tqdm bar
    _, amps = axion_csv.read_amplitudes(tmp_path / "spikes.txt")
    np.testing.assert_array_equal(amps, [0.05, 0.07, -0.1, np.nan])


def test_plate_pitch_table_and_override(tmp_path):
    assert axion_csv.plate_pitch_um("CytoView MEA 12-Well") == 200.0
    assert axion_csv.plate_pitch_um("Maestro 48-Well (Transparent)") == 350.0
    unknown = organoid_sim.load(_write(tmp_path / "u.csv", "", plate="Custom plate"))
    assert np.isnan(unknown.positions).all() and unknown.metadata["pitch_um"] is None
    given = organoid_sim.load(tmp_path / "u.csv", pitch_um=100.0)
    np.testing.assert_array_equal(given.positions, [[0.0, 0.0], [100.0, 200.0]])


@pytest.mark.parametrize("row, line", [(",,abc,A1_11,0.1\n", 5), (",,0.9,A1,0.1\n", 5), (",,0.9,A1_11,x\n", 5),
                                       (",,1.0,A1_11,0.1\n,,-1,A1_11,0.1\n", 6)])
def test_malformed_rows_name_file_and_line(tmp_path, row, line):
    path = _write(tmp_path / "bad.csv", row)
    with pytest.raises(RecordingFormatError, match=rf"bad\.csv, dataset 'line {line}'"):
        organoid_sim.load(path)


def test_well_information_footer_ends_the_spikes_and_unknown_well_is_named(tmp_path):
    path = _write(tmp_path / "f.csv", ",,0.9,A1_11,0.1\nWell Information,,,,\nWell,A1,A2,,\n")
    assert organoid_sim.load(path).n_spikes == 3
    with pytest.raises(RecordingFormatError, match="well 'B2' has no spikes"):
        organoid_sim.load(path, well="B2")
