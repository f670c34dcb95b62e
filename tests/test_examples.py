"""The example scripts run end to end in their --quick form (on the bundled sample in data_samples/)."""

from __future__ import annotations

import json
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest

import organoid_sim
from organoid_sim.stimulation import CL1, Protocol

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
SAMPLES = ROOT / "data_samples"

pytestmark = pytest.mark.skipif(not (SAMPLES / "spontaneous.nwb").exists(),
                                reason="bundled sample data_samples/ not generated")


def _run(script: str, *args: str) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, str(EXAMPLES / script), *args, "--no-progress"], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("demo")
    proc = _run("demo.py", "--quick", "--out", str(out))
    assert f"report written: {out / 'report.html'}" in proc.stdout
    return out, proc.stdout


@pytest.fixture(scope="module")
def demo_out(demo_run) -> Path:
    return demo_run[0]


def test_demo_prints_its_headline_figures_and_every_output(demo_run):
    out, stdout = demo_run
    summary = json.loads((out / "summary.json").read_text())
    assert f"{summary['checks_passed']}/{summary['checks']} checks pass" in stdout
    assert f"response-probability r = {summary['response_probability_r']:.2f}" in stdout
    written = [p for p in out.rglob("*") if p.is_file()]
    assert len(written) >= 8
    for p in written:
        assert str(p.resolve()) in stdout, p
    assert Protocol.load(out / "probe.yaml").device == "cl1"


class _Images(HTMLParser):
    def __init__(self):
        super().__init__()
        self.n_img = self.n_table = 0

    def handle_starttag(self, tag, attrs):
        self.n_img += tag == "img" and dict(attrs).get("src", "").startswith("data:image/png;base64,")
        self.n_table += tag == "table"


def test_demo_quick_writes_a_report(demo_out):
    parser = _Images()
    parser.feed((demo_out / "report.html").read_text())
    assert parser.n_img >= 3 and parser.n_table >= 2
    assert {"raster.png", "comparison.png", "probe_psth.png"} <= {p.name for p in (demo_out / "figures").iterdir()}
    # the probing protocol is a valid CL1 protocol and the evoked recording carries its pulses
    protocol = Protocol.load(demo_out / "probe.yaml")
    CL1.validate(protocol)
    evoked = organoid_sim.load(demo_out / "evoked.nwb")
    summary = json.loads((demo_out / "summary.json").read_text())
    assert len(evoked.stim) == summary["n_trials"] * len(protocol.to_events())
    assert organoid_sim.load_model(demo_out / "model").n_recorded == evoked.n_units


def test_stimulation_experiment_quick(demo_out, tmp_path):
    proc = _run("stimulation_experiment.py", "--quick", "--model", str(demo_out / "model"), "--out", str(tmp_path))
    curves = json.loads((tmp_path / "curves.json").read_text())
    assert len(curves["curves"]) == 4 and "P(response)" in proc.stdout
    for name in ("amplitude_sweep.yaml", "evoked.nwb", "stim_io_curve.png", "stim_psth.png"):
        assert (tmp_path / name).stat().st_size > 0
    for p in tmp_path.iterdir():   # every file written is named (curves.json was not)
        assert str(p) in proc.stdout, p
    evoked = organoid_sim.load(tmp_path / "evoked.nwb")
    assert len(evoked.stim) == curves["n_pulses"] == 5 * len(Protocol.load(tmp_path / "amplitude_sweep.yaml").to_events())


def test_pong_quick(demo_out):
    proc = _run("pong.py", "--quick", "--model", str(demo_out / "model"), "--json")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    game = result["model"]
    assert game["hits"] + game["misses"] >= 1 and game["pulses"] > 0
    assert result["random_paddle"]["decoder"] == "random"


def _fails(script: str, *args: str) -> str:
    proc = subprocess.run([sys.executable, str(EXAMPLES / script), *args, "--no-progress"], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 2, proc.stderr[-3000:]
    (line,) = proc.stderr.strip().splitlines()   # one line, no traceback
    assert line.startswith("error: ")
    return line


def test_examples_refuse_bad_input_in_one_line(tmp_path):
    """An --out that is a file (or lies under one) and a folder that holds no saved model were tracebacks."""
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    assert str(a_file) in _fails("demo.py", "--quick", "--out", str(a_file))
    assert "cannot be used as the output folder" in _fails("stimulation_experiment.py", "--quick", "--out",
                                                           str(a_file / "sub"))
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "model.json missing" in _fails("pong.py", "--quick", "--model", str(empty))
    assert "model.json missing" in _fails("stimulation_experiment.py", "--quick", "--model", str(empty),
                                          "--out", str(tmp_path / "out"))



@pytest.mark.parametrize("script", ["demo.py", "stimulation_experiment.py", "pong.py"])
def test_help_documents_every_option(script):
    """--seed, --no-progress (and stimulation_experiment's --out) were listed in --help with no text."""
    import os
    import re

    proc = subprocess.run([sys.executable, str(EXAMPLES / script), "--help"], cwd=ROOT, capture_output=True,
                          text=True, timeout=600, env={**os.environ, "COLUMNS": "300"})
    options = [re.split(r"\s{2,}", line.strip()) for line in proc.stdout.splitlines() if line.startswith("  -")]
    assert len(options) >= 5
    for option in options:
        assert len(option) == 2 and option[1], (script, option)   # the option, then its help text


@pytest.mark.parametrize("kept_prior", [True, False])
def test_demo_report_calibration_table_says_what_the_model_kept(kept_prior):
    """With the prior kept, the report's table showed the prior's values under "calibrated" and its caption
    (loss 0.1196 -> 0.1196) left out the calibrated coupling's loss that the printed line gives."""
    import html
    from types import SimpleNamespace

    import numpy as np

    sys.path.insert(0, str(EXAMPLES))
    try:
        import demo
    finally:
        sys.path.remove(str(EXAMPLES))
    from organoid_sim.report import Report

    prior, calibrated = {"gain": 3.0}, {"gain": 2.5}
    result = SimpleNamespace(before=prior, after=prior if kept_prior else calibrated, loss_before=0.1196,
                             loss_after=0.1196 if kept_prior else 0.1, loss_calibrated=0.1551 if kept_prior else 0.1,
                             kept_prior=kept_prior, n_evaluations=36, check=None)
    stim = type("Stim", (), {"electrode": np.array([1, 3]), "__len__": lambda self: 2})()
    session = SimpleNamespace(stim=stim)
    rep = Report("t")
    demo._section_calibration(rep, result, session)
    text = html.unescape(rep.to_html())
    line = demo._loss_line(result)   # what the demo prints after "[4/5] calibrated the coupling on ... pulses:"
    assert f"<caption>{line} (36 evaluations)</caption>" in text
    if kept_prior:
        assert "the calibrated coupling's 0.1551" in line
        assert "<th>kept (the prior)</th>" in text and "<th>calibrated</th>" not in text
    else:
        assert line == "loss 0.1196 -> 0.1000" and "<th>calibrated</th>" in text
