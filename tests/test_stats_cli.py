"""CLI: organoid-sim describe / compare on the real Axion file."""

from __future__ import annotations

import json

from organoid_sim.cli import main


def test_describe_prints_table_and_writes_json(div12_path, tmp_path, capsys):
    out = tmp_path / "d1.json"
    assert main(["describe", str(div12_path), "--well", "D1", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "network bursts" in text and "mean pairwise STTC" in text
    d = json.loads(out.read_text())
    assert d["scalars"]["n_spikes"] == 39399 and d["info"]["well"] == "D1"


def test_compare_two_wells(div12_path, tmp_path, capsys):
    out = tmp_path / "cmp.json"
    assert main(["compare", str(div12_path), str(div12_path), "--well-a", "D1", "--well-b", "D2",
                 "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "verdict:" in text
    d = json.loads(out.read_text())
    for k in ("rate_r", "burst_rate_rel_err", "sttc_matrix_r"):
        assert k in d["summary"]


def test_compare_names_the_flag_of_the_side_without_a_well(div12_path, capsys):
    assert main(["compare", str(div12_path), str(div12_path), "--well-a", "D1"]) == 2
    err = capsys.readouterr().err
    assert "--well-b" in err and "--well " not in err and "D2" in err


def test_missing_file_is_a_clear_error(tmp_path, capsys):
    assert main(["describe", str(tmp_path / "nope.h5")]) == 2
    assert "no such file" in capsys.readouterr().err


def test_compare_applies_the_detector_only_to_the_mea_nap_side(ngn2_path, tmp_path, capsys):
    """A recorded MEA-NAP file against a copy in NWB: ``--detector`` selects the .mat file's spikes
    and the NWB side is read without it (before, its reader refused the option)."""
    import organoid_sim

    copy = tmp_path / "thr4.nwb"
    organoid_sim.save(organoid_sim.load(ngn2_path, detector="thr4"), copy)
    assert main(["compare", str(ngn2_path), str(copy), "--detector", "thr4", "--json",
                 str(tmp_path / "c.json")]) == 0
    d = json.loads((tmp_path / "c.json").read_text())
    assert d["summary"]["rate_r"] > 0.999          # the same spikes on both sides
    assert main(["compare", str(ngn2_path), str(copy)]) == 2       # the .mat file still needs a detector
    assert "detector" in capsys.readouterr().err


def test_describe_json_of_a_nearly_silent_recording(tmp_path, capsys):
    """Three spikes: no avalanche bin can be chosen (NaN), which the JSON file says as null, as
    docs/stats.md promises, instead of refusing to write the file."""
    import numpy as np

    import organoid_sim

    src = tmp_path / "sparse.npz"
    organoid_sim.save(organoid_sim.SpikeRecording.from_spike_times([np.array([1.0])] * 3, t_start=0.0,
                                                                   t_stop=10.0), src)
    out = tmp_path / "d.json"
    assert main(["describe", str(src), "--json", str(out), "--full"]) == 0
    d = json.loads(out.read_text())
    assert d["params"]["avalanche_bin_ms"] is None and d["scalars"]["n_spikes"] == 3
