"""``organoid-sim info`` and ``organoid-sim convert`` (called through the CLI entry point)."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

import organoid_sim
from organoid_sim.cli import main


def _json_out(capsys, argv) -> dict:
    assert main(argv) == 0
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_info_lists_wells_then_describes_one(div12_path, capsys):
    listing = _json_out(capsys, ["info", str(div12_path), "--json"])
    assert listing["format"] == "axion" and len(listing["wells"]) == 47
    info = _json_out(capsys, ["info", str(div12_path), "--well", "D1", "--json"])
    assert info["units"] == 16 and info["spikes"] == 39_399 and info["electrodes"] == 16
    with h5py.File(div12_path, "r") as f:  # independent: count and rate straight from the file
        names = np.array([n.decode() for n in f["names"][()]])
        counts = f["sCount"][()][np.char.startswith(names, "D1_")]
        t_stop = f["spikes"][()].max()
    assert info["mean_rate_hz"] == pytest.approx(counts.mean() / t_stop)
    assert main(["info", str(div12_path), "--well", "D1"]) == 0
    text = capsys.readouterr().out
    assert "39,399" in text and "axion" in text


def test_info_lists_the_wells_of_an_axion_csv_plate(capsys):
    """An Axion spike-list CSV holds a whole plate like the .h5 export: 'info' lists its wells
    instead of failing with 'choose one with --well'."""
    import csv
    import gzip
    from pathlib import Path

    from conftest import SHARED

    path = SHARED / "real" / "axion_csv" / "exampleRecording_1012016_plate1_DIV3_spike_list.csv.gz"
    if not path.exists():
        pytest.skip(f"shared data file not found: {path}")
    with gzip.open(path, "rt") as fh:   # independent: the well prefix of every spike's electrode
        wells = {row[3].split("_")[0] for row in csv.reader(fh) if len(row) > 3 and "_" in row[3]}
    listing = _json_out(capsys, ["info", str(path), "--json"])
    assert listing["format"] == "axion_csv" and sorted(listing["wells"]) == sorted(wells) and len(wells) > 1
    info = _json_out(capsys, ["info", str(path), "--well", "B2", "--json"])
    assert info["well"] == "B2" and sorted(info["wells"]) == sorted(wells)
    assert Path(info["source"]).name == path.name


def test_info_asks_for_a_detector(ngn2_path, capsys):
    listing = _json_out(capsys, ["info", str(ngn2_path), "--json"])
    assert listing["detectors"] == ["bior1p5", "thr4", "thr5"]
    info = _json_out(capsys, ["info", str(ngn2_path), "--detector", "thr5", "--json"])
    assert info["spikes"] == 1_417 and info["sampling_rate_hz"] == 12_500.0


def test_convert_round_trips_through_every_writer(ngn2_path, tmp_path, capsys):
    original = organoid_sim.load(ngn2_path, detector="thr4")
    for ext in (".nwb", ".h5", ".npz", ".csv"):
        out = tmp_path / f"ngn2{ext}"
        assert main(["convert", str(ngn2_path), str(out), "--detector", "thr4", "--no-progress"]) == 0
        assert organoid_sim.load(out) == original
    info = _json_out(capsys, ["info", str(tmp_path / "ngn2.nwb"), "--json"])
    assert info["format"] == "nwb" and info["origin_format"] == "meanap"


def test_cli_errors_are_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.h5"
    bad.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\x00" * 50)
    assert main(["info", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "bad.h5" in err and "Traceback" not in err
    assert main(["convert", str(bad), str(tmp_path / "x.xyz")]) == 2
    assert "unknown output extension" in capsys.readouterr().err
