"""organoid_sim.batch in-process: job planning, seeds, a job equals the single fit, failures,
resume, the results table, the CLI and the plate overview."""

from __future__ import annotations

import contextlib
import csv
import json
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file

import organoid_sim
from organoid_sim.batch import BARS, Job, fidelity_checks, fit_many, job_seed, load_job_recording, plan_jobs
from organoid_sim.cli import main
from organoid_sim.models import SpikingNetworkModel

from batch_plate import FAST, WELLS, shared_plate
from conftest import ROOT

ALL = [*WELLS, "C1"]


@pytest.fixture(scope="module")
def plate(tmp_path_factory):
    return shared_plate(tmp_path_factory)[0]


@pytest.fixture(scope="module")
def serial(tmp_path_factory):
    return shared_plate(tmp_path_factory)[1:]


def weights(job_dir):
    return load_file(str(job_dir / "model" / "weights.safetensors"))


def test_plan_jobs_wells_and_errors(plate, tmp_path):
    jobs = plan_jobs([plate])
    assert [j.well for j in jobs] == organoid_sim.list_wells(plate) == ALL
    assert [j.name for j in plan_jobs(plate, wells="A2,A1")] == ["plate/A2", "plate/A1"]
    assert [j.name for j in plan_jobs(plate, wells="A2, ,A1,")] == ["plate/A2", "plate/A1"]   # stray commas
    assert len(plan_jobs([plate, plate])) == len(ALL)              # duplicates removed
    with pytest.raises(ValueError, match=r"plate\.h5.*Z9.*wells: A1, A2, B1, C1"):
        plan_jobs(plate, wells=["A1", "Z9"])
    with pytest.raises(FileNotFoundError, match="nope.h5"):
        plan_jobs(tmp_path / "nope.h5")
    other = tmp_path / "plate.h5"
    other.write_bytes(plate.read_bytes())
    with pytest.raises(ValueError, match="share the name 'plate'"):
        plan_jobs([plate, other])
    # a file without wells is one job, in the folder NO_WELL
    single = tmp_path / "single.npz"
    organoid_sim.save(organoid_sim.load(plate, well="A1"), single)
    (job,) = plan_jobs(single)
    assert job.well is None and job.name == "single/recording"


def test_job_seeds():
    assert job_seed(7, "/a/p.h5", "A1") == 7                       # default: the base seed itself
    d = {(p, w): job_seed(7, p, w, derive=True) for p in ("/a/p.h5", "/a/q.h5") for w in ("A1", "B2")}
    assert len(set(d.values())) == 4 and all(0 <= s < 2**31 for s in d.values())
    assert job_seed(7, "/elsewhere/p.h5", "A1", derive=True) == d[("/a/p.h5", "A1")]   # by file name only
    assert job_seed(8, "/a/p.h5", "A1", derive=True) != d[("/a/p.h5", "A1")]


def test_job_equals_the_single_fit(plate, serial):
    """A plate job's model is the model of fitting that well alone through the public API."""
    out, results = serial
    job = Job(str(plate.resolve()), "A2", 0)
    rec = load_job_recording(job)
    assert rec.t_start == pytest.approx(float(organoid_sim.load(plate, well="A2").times.min()))
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        model = SpikingNetworkModel(seed=0, fit_seed=0, progress=False, **FAST).fit(rec)
    finally:
        torch.set_num_threads(before)
    model.save(out / "_direct" / "model")
    ref, got = weights(out / "_direct"), weights(out / "plate" / "A2")
    assert ref.keys() == got.keys() and len(ref) > 3
    for k in ref:
        np.testing.assert_array_equal(ref[k], got[k], err_msg=k)
    r = next(r for r in results if r["well"] == "A2")
    assert not any("deprecated" in w for w in r["warnings"])      # options reached the estimator where it takes them
    assert r["n_spikes"] == rec.n_spikes and r["n_units"] == rec.n_units == 6
    metrics = model.provenance_["metrics"]
    assert r["val_bits"] == pytest.approx(metrics.get("final_val_bits", metrics["best_val_bits"]))
    # the job's self-check is the fit's own (same seed, same simulation)
    exp, got = model.provenance_["self_check"], r["in_sample"]
    assert got["passed"] == exp["passed"] and got["seed"] == exp["seed"] and got["missed"] == exp["missed"]
    for k, v in exp["figures"].items():     # NaN is stored as null in the job's JSON
        assert (got["figures"][k] is None and not np.isfinite(v)) or got["figures"][k] == pytest.approx(v, rel=1e-12)


def test_failed_job_is_recorded_and_the_others_go_on(serial):
    out, results = serial
    by = {r["well"]: r for r in results}
    assert [by[w]["status"] for w in WELLS] == ["ok"] * len(WELLS)
    bad = by["C1"]                                  # a well whose channels have no spikes
    assert bad["status"] == "error" and bad["error"]["type"] == "ValueError"
    assert "without spikes" in bad["error"]["message"]
    assert json.loads((out / "plate" / "C1" / "result.json").read_text())["status"] == "error"
    assert not (out / "plate" / "C1" / "model").exists()
    assert not list(out.glob("plate/.*"))          # no temporary folders left


def test_results_table_matches_the_job_results(serial):
    out, results = serial
    with open(out / "results.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["well"] for r in rows] == ALL
    on_disk = {r["well"]: json.loads((out / r["job"] / "result.json").read_text()) for r in rows}
    for row in rows:
        disk = on_disk[row["well"]]
        assert row["status"] == disk["status"]
        if disk["status"] == "ok":
            assert float(row["val_bits"]) == pytest.approx(disk["val_bits"], rel=1e-12)
            assert row["in_sample_passed"] == str(all(disk["in_sample"]["passed"].values()))
            assert int(row["n_spikes"]) == disk["n_spikes"]
        else:
            assert row["error"].startswith("ValueError: ")
    assert [r["well"] for r in json.loads((out / "results.json").read_text())["results"]] == ALL


def test_rerun_skips_finished_jobs_and_refits_changed_ones(plate, serial, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(serial[0], out)
    stamp = {w: (out / "plate" / w / "result.json").stat().st_mtime_ns for w in WELLS}
    again = fit_many([plate], out, client="serial", progress=False, **FAST)
    assert [r["skipped"] for r in again] == [True] * len(WELLS) + [False]   # the failed well is tried again
    assert {w: (out / "plate" / w / "result.json").stat().st_mtime_ns for w in WELLS} == stamp
    changed = fit_many([plate], out, client="serial", progress=False, wells="A1", **{**FAST, "max_epochs": 2})
    assert not changed[0]["skipped"] and changed[0]["options"]["max_epochs"] == 2


def test_interrupt_leaves_no_partial_job_folder(plate, tmp_path, monkeypatch):
    def interrupted(self, *a, **k):
        (tmp_path / "started").touch()
        raise KeyboardInterrupt

    monkeypatch.setattr(SpikingNetworkModel, "fit", interrupted)
    with pytest.raises(KeyboardInterrupt):
        fit_many([plate], tmp_path / "out", client="serial", progress=False, wells="A1", **FAST)
    assert (tmp_path / "started").exists()
    assert list((tmp_path / "out" / "plate").iterdir()) == []      # neither the job folder nor its temporary one


def test_clean_partial_touches_only_its_own_jobs_folders(tmp_path):
    """A file stem with glob characters: its jobs' temporary folders are removed and another file's
    running job is left alone (``p[1]`` was read as a pattern matching ``p1``, the other way round)."""
    from organoid_sim.batch.jobs import clean_partial

    mine, other = tmp_path / "p[1]" / ".A1.tmp-0123456789ab", tmp_path / "p1" / ".A1.tmp-0123456789ab"
    for d in (mine, other):
        d.mkdir(parents=True)
    assert clean_partial(tmp_path, [Job(str(tmp_path / "p[1].h5"), "A1", 0)]) == 1
    assert not mine.exists() and other.exists()


def _tree(folder) -> dict:
    """Every file under ``folder`` (relative name -> text); empty when the folder is missing."""
    return {str(p.relative_to(folder)): p.read_text() for p in sorted(folder.rglob("*")) if p.is_file()}


def _job_content(folder, tag: str) -> None:
    (folder / "model").mkdir()
    for name in ("model/weights.safetensors", "model/model.json", "result.json"):
        (folder / name).write_text(f"{tag} {name}")


@pytest.mark.parametrize("where", ["first rename", "second rename", "removal"])
def test_a_rerun_interrupted_while_replacing_a_job_folder_leaves_the_old_or_the_new_one(tmp_path, monkeypatch,
                                                                                         where):
    """Ctrl-C at a rename of the swap, or half-way through removing a folder: the job folder holds
    every file of the old run or every file of the new one, before and after ``clean_partial``."""
    from organoid_sim.batch.jobs import _job_folder, clean_partial

    final = tmp_path / "plate" / "A1"
    with _job_folder(final) as folder:
        _job_content(folder, "old")
    old = _tree(final)
    real_rename, real_rmtree, calls = os.rename, shutil.rmtree, []

    def rename(src, dst):
        calls.append(src)
        if where == {1: "first rename", 2: "second rename"}.get(len(calls)):
            raise KeyboardInterrupt
        return real_rename(src, dst)

    def rmtree(path, *args, **kwargs):     # the first removal stops after one file
        monkeypatch.setattr(shutil, "rmtree", real_rmtree)
        next(p for p in sorted(path.rglob("*")) if p.is_file()).unlink()
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "rename", rename)
    if where == "removal":
        monkeypatch.setattr(shutil, "rmtree", rmtree)
    with contextlib.suppress(KeyboardInterrupt):
        with _job_folder(final) as folder:
            _job_content(folder, "new")
    monkeypatch.undo()
    with _job_folder(tmp_path / "new") as folder:
        _job_content(folder, "new")
    new = _tree(tmp_path / "new")
    assert _tree(final) in (old, new)
    clean_partial(tmp_path, [Job(str(tmp_path / "plate.h5"), "A1", 0)])
    assert _tree(final) in (old, new) and [p.name for p in final.parent.iterdir()] == ["A1"]


@pytest.mark.parametrize("kill_at", [1, 2])
def test_a_worker_killed_while_replacing_a_job_folder_leaves_a_whole_one_after_clean_partial(tmp_path, kill_at):
    """A process killed (no handler runs) at the first or second rename of the swap: after
    ``clean_partial`` the job folder is the old run's or the new one's, whole, and nothing hidden
    is left (killed between the two renames, the old one is put back)."""
    from organoid_sim.batch.jobs import _job_folder, clean_partial

    final = tmp_path / "plate" / "A1"
    with _job_folder(final) as folder:
        _job_content(folder, "old")
    old = _tree(final)
    code = f"""
import os
from pathlib import Path
from organoid_sim.batch.jobs import _job_folder
real, calls = os.rename, []
def rename(src, dst):
    calls.append(src)
    if len(calls) == {kill_at}:
        os._exit(9)
    return real(src, dst)
os.rename = rename
with _job_folder(Path({str(final)!r})) as folder:
    (folder / "result.json").write_text("new")
"""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    subprocess.run([sys.executable, "-c", code], env=env, check=False, timeout=120)
    clean_partial(tmp_path, [Job(str(tmp_path / "plate.h5"), "A1", 0)])
    assert _tree(final) in (old, {"result.json": "new"}) and [p.name for p in final.parent.iterdir()] == ["A1"]


def test_fidelity_checks_against_the_bars():
    good = {"network": {"bits_per_spike": 0.5, "rate_r": 0.95, "rate_median_rel_err": 0.1, "corr_matrix_r": 0.8,
                        "burst_rate_rel_err": -0.2, "burst_duration_rel_err": 0.24},
            "glm": {"bits_per_spike": 0.4}}
    assert all(fidelity_checks(good).values()) and len(fidelity_checks(good)) == len(BARS) + 1
    bad = {"network": {**good["network"], "burst_rate_rel_err": -0.3, "corr_matrix_r": None},
           "glm": {"bits_per_spike": 0.6}}
    c = fidelity_checks(bad)
    assert c["|burst_rate_rel_err| <= 0.25"] is False and c["network >= GLM"] is False
    assert c["corr_matrix_r >= 0.7"] is None and c["rate_r >= 0.9"] is True


def _cli(plate, out, *extra):
    return main(["fit-plate", str(plate), "--wells", "A1,C1", "--out", str(out), "--workers", "0",
                 "--max-epochs", "2", "--refine-steps", "1", "--no-progress", *extra])


def test_cli_fit_plate_serial_with_reports(plate, tmp_path, capsys):
    out = tmp_path / "cli"
    assert _cli(plate, out) == 1                    # C1 fails, and says so
    text = capsys.readouterr().out
    assert "1 of 2 jobs ok" in text and "failed plate/C1: ValueError" in text
    res = {r["well"]: r for r in json.loads((out / "results.json").read_text())["results"]}
    assert res["A1"]["status"] == "ok" and res["A1"]["figures"] == ["report.html"]
    assert res["A1"]["options"]["max_epochs"] == 2 and "passed" not in res["A1"]
    report = (out / "plate" / "A1" / "report.html").read_text()
    assert report.count("data:image/png;base64") == 2
    assert "<title>plate.h5 A1</title>" in report                  # was "None": the report had no file or well
    page = (out / "plate.html").read_text()
    assert page.count('href="plate/A1/report.html"') == 3 and page.count('href="plate/C1/result.json"') == 3
    assert re.search(r'background:#d9d9de"[^>]*><a href="plate/A1/report.html">A1<br/>\u2014', page)  # not evaluated
    assert _cli(plate, out) == 1 and "(1 skipped as already finished)" in capsys.readouterr().out


def test_figures_get_the_job_they_draw(plate, tmp_path):
    """``figures`` sees the job's file, well, seed and status (it saw only the fit's figures: the
    well's report.html was titled "None", and its simulated raster used seed 0 whatever the job's)."""
    seen = []

    def figures(folder, rec, model, result):
        seen.append({k: result.get(k) for k in ("file", "well", "seed", "status")})
        return []

    fit_many([plate], tmp_path / "out", client="serial", progress=False, wells="A1", seed=5, derive_seeds=True,
             figures=figures, max_epochs=1, refine_steps=0, n_hidden=0)
    assert seen == [{"file": str(plate.resolve()), "well": "A1", "seed": job_seed(5, "plate.h5", "A1", derive=True),
                     "status": "ok"}]


@pytest.mark.slow
def test_cli_fit_plate_evaluate(plate, tmp_path):
    out = tmp_path / "cli"
    _cli(plate, out, "--evaluate", "--no-figures")
    a1 = json.loads((out / "plate" / "A1" / "result.json").read_text())
    assert a1["status"] == "ok" and set(a1["evaluation"]) >= {"poisson", "glm", "network", "recording"}
    assert a1["checks"] == fidelity_checks(a1["evaluation"])
    assert a1["passed"] == all(v for v in a1["checks"].values() if v is not None)
    colour = {True: "#7bc47f", False: "#e8746b"}[a1["passed"]]
    assert re.search(rf'background:{colour}"[^>]*><a href="plate/A1/result.json">A1', (out / "plate.html").read_text())


def test_plate_overview_grid_colours_and_links(tmp_path):
    from organoid_sim.report import plate_overview

    def res(well, passed=None, bits=None, status="ok", in_sample=None):
        r = {"job": f"p/{well}", "file": "/x/p.h5", "well": well, "status": status, "val_bits": bits,
             "passed": passed, "figures": ["report.html"] if status == "ok" else [],
             "in_sample": None if in_sample is None else {"passed": {"rate_median_rel_err": True,
                                                                      "corr_matrix_r": in_sample}}}
        if status != "ok":
            r["error"] = {"type": "ValueError", "message": "no spikes"}
        return r

    results = [res("A1", True, 2.0, in_sample=False), res("A2", False, -1.0, in_sample=True), res("B2", None, 0.0),
               res("B1", status="error")]
    page = plate_overview(results, tmp_path / "plate.html").read_text()
    grids = re.findall(r'<table class="plate">.*?</table>', page, flags=re.S)
    assert len(grids) == 3
    checks, in_sample, bits = ([re.findall(r'<td(?: style="background:(#[0-9a-f]{6})")?', row) for row in
                                re.findall(r"<tr>(.*?)</tr>", g)] for g in grids)
    # rows A, B x columns 1, 2 in plate order, whatever the order of the results
    assert checks == [["#7bc47f", "#e8746b"], ["#555555", "#d9d9de"]]
    assert in_sample == [["#e8746b", "#7bc47f"], ["#555555", "#d9d9de"]]    # every in-sample bar, or none checked
    blue, red, white = bits[0][0], bits[0][1], bits[1][1]
    assert int(blue[5:7], 16) > int(blue[1:3], 16) and int(red[1:3], 16) > int(red[5:7], 16)
    assert max(abs(int(white[k:k + 2], 16) - int(white[1:3], 16)) for k in (3, 5)) < 40   # ~neutral at 0
    assert 'href="p/A1/report.html"' in page and 'href="p/B1/result.json"' in page and "no spikes" in page


def test_plate_overview_shows_every_maxtwo_well(tmp_path):
    """MaxTwo wells are named well000..well005: no plate row letter, so one row in run order with
    every well in it (well000 used to be read as row 'WELL', column 0, and fell off the grid)."""
    from organoid_sim.report import plate_overview

    wells = [f"well{k:03d}" for k in range(3)]
    results = [{"job": f"p/{w}", "file": "/x/p.raw.h5", "well": w, "status": "ok", "val_bits": 0.1 * k,
                "figures": []} for k, w in enumerate(wells)]
    page = plate_overview(results, tmp_path / "plate.html").read_text()
    for w in wells:
        assert page.count(f'href="p/{w}/result.json">{w}<br/>') == 3   # in each of the three grids


def test_cli_fit_plate_errors_are_one_line(plate, tmp_path, capsys):
    assert main(["fit-plate", str(tmp_path / "none.h5"), "--out", str(tmp_path)]) == 2
    assert main(["fit-plate", str(plate), "--out", str(tmp_path), "--scheduler", "tcp://x:1", "--workers", "2"]) == 2
    assert main(["fit-plate", str(plate), "--out", str(tmp_path), "--wells", "Z9", "--workers", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3 and "none.h5" in err[0] and "--workers" in err[1] and "Z9" in err[2]


def test_a_well_report_shows_the_fit_s_self_check(serial):
    from organoid_sim.fit.self_check import IN_SAMPLE_BARS
    from organoid_sim.report import well_report

    out, results = serial
    r = next(r for r in results if r["well"] == "A2")
    page = well_report(r, {}).to_html()
    assert "In-sample self-check" in page
    for b in IN_SAMPLE_BARS:
        assert b.label in page
    assert page.count(">missed<") == sum(not v for v in r["in_sample"]["passed"].values())


def test_negative_worker_count_is_refused(tmp_path, capsys):
    """A local cluster of -1 workers has no worker: the run used to wait for ever."""
    plate = tmp_path / "rec.npz"
    organoid_sim.save(organoid_sim.SpikeRecording.from_spike_times([np.array([1.0, 2.0])] * 2, t_start=0.0,
                                                                   t_stop=3.0), plate)
    with pytest.raises(SystemExit) as exc:
        main(["fit-plate", str(plate), "--out", str(tmp_path / "cli"), "--workers", "-1", "--no-progress"])
    assert exc.value.code == 2 and "--workers" in capsys.readouterr().err
    with pytest.raises(ValueError, match="workers"):
        fit_many([plate], tmp_path / "api", workers=-1, progress=False, **FAST)
