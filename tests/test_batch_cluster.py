"""organoid_sim.batch on a real Dask cluster: two local worker processes behind a scheduler address,
one worker killed while it runs a job; every well still ends with its model and result, identical
to the serial run, and a re-run skips every finished well."""

from __future__ import annotations

import json
import os
import signal
import threading
import time

import numpy as np
import pytest
from safetensors.numpy import load_file

from organoid_sim.batch import fit_many

from batch_plate import FAST, WELLS, shared_plate

distributed = pytest.importorskip("distributed")

#: result fields that depend on the run (timings, the machine), not on the job
RUN_FIELDS = {"wall_s", "cpu_s", "fit_s", "host", "skipped"}


@pytest.fixture(scope="module")
def plate_and_serial(tmp_path_factory):
    return shared_plate(tmp_path_factory)


def _kill_a_busy_worker(watcher, out_dir, timeout_s: float = 120.0):
    """Once a job has started (its temporary folder exists), kill a worker that holds a job; returns
    ``(address, keys it held)``."""
    t_end = time.monotonic() + timeout_s
    while time.monotonic() < t_end:
        started = list(out_dir.glob("plate/.*.tmp-*"))
        busy = {w: ks for w, ks in watcher.processing().items() if ks}
        if started and busy:
            addr, keys = next(iter(busy.items()))
            pid = watcher.run(os.getpid, workers=[addr])[addr]
            os.kill(pid, signal.SIGKILL)                              # as a node failure or the OOM killer would
            return addr, set(keys)
        time.sleep(0.05)
    raise AssertionError("no job started on the cluster")


def test_killed_worker_plate_equals_serial_and_rerun_skips(plate_and_serial, tmp_path):
    plate, serial_out, serial = plate_and_serial
    plate_out = tmp_path / "cluster"
    assert [r["status"] for r in serial] == ["ok"] * len(WELLS) + ["error"]   # C1 has no spikes

    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster, \
            distributed.Client(cluster) as watcher:
        box = {}
        run = threading.Thread(target=lambda: box.update(results=fit_many(
            [plate], plate_out, client=cluster.scheduler_address, progress=False, **FAST)))
        run.start()
        killed, held = _kill_a_busy_worker(watcher, plate_out)
        run.join(timeout=300)
        assert not run.is_alive()
        assert killed not in watcher.scheduler_info()["workers"]       # the worker really died
        assert held, "the killed worker held no job"
        results = box["results"]

    assert [r["well"] for r in results] == [*WELLS, "C1"]
    assert [r["status"] for r in results] == [r["status"] for r in serial], [r.get("error") for r in results]
    assert not list(plate_out.glob("plate/.*"))                       # the killed job's temporary folder is gone
    for s, p in zip(serial, results):
        assert {k: v for k, v in s.items() if k not in RUN_FIELDS} == {k: v for k, v in p.items() if k not in RUN_FIELDS}
        if s["status"] != "ok":
            continue
        ws, wp = (load_file(str(d / "plate" / s["well"] / "model" / "weights.safetensors"))
                  for d in (serial_out, plate_out))
        assert ws.keys() == wp.keys()
        for k in ws:
            np.testing.assert_array_equal(ws[k], wp[k], err_msg=f"{s['well']} {k}")

    stamps = {w: (plate_out / "plate" / w / "result.json").stat().st_mtime_ns for w in WELLS}
    again = fit_many([plate], plate_out, client="serial", progress=False, wells=",".join(WELLS), **FAST)
    assert all(r["skipped"] for r in again)                          # no cluster is even needed to skip them
    assert {w: (plate_out / "plate" / w / "result.json").stat().st_mtime_ns for w in WELLS} == stamps
    table = json.loads((plate_out / "results.json").read_text())["results"]
    assert [(r["well"], r["skipped"]) for r in table] == [(w, True) for w in WELLS]
