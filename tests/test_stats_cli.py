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


def test_missing_file_is_a_clear_error(tmp_path, capsys):
    assert main(["describe", str(tmp_path / "nope.h5")]) == 2
    assert "no such file" in capsys.readouterr().err
