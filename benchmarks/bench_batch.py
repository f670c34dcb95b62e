"""Benchmark: fitting a plate with ``organoid_sim.batch.fit_many``, serial against a local Dask cluster.

In one run, on the first N wells of a plate in file order (default: every well of the DIV12 plate,
``../shared/data/real/CO_20140212_MW1007-51_DIV12_00_001.h5``, 47 wells):

1. serial (``client="serial"``: every job in this process, one after the other): wall time of the
   whole run, wall and CPU seconds of each job;
2. a ``LocalCluster`` of ``--workers`` processes (one thread each) for each plate size of
   ``--sizes`` (the first n wells; the largest is N): wall time including the cluster's start, so
   the cost per well as wells grow shows the fixed cost being shared out;
3. the speed-up (serial wall time / cluster wall time for the same N wells) and a check that every
   cluster model equals its serial model bit for bit.

``--fast`` uses cheap fitting options (``max_epochs=10, refine_steps=10, refine_batch=8,
calibration_rounds=2``) instead of the defaults; the figures measure the batch machinery, not fit
quality. Each job runs torch on one thread.

Usage: ``python benchmarks/bench_batch.py [--plate P] [--wells N|all] [--workers 2] [--sizes 2,4]
[--fast] [--hidden H] [--json]``; with ``--json`` the last line printed is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DIV12 = ROOT.parent / "shared" / "data" / "real" / "CO_20140212_MW1007-51_DIV12_00_001.h5"
FAST = dict(max_epochs=10, refine_steps=10, refine_batch=8, calibration_rounds=2)


def _same_models(a: Path, b: Path, results) -> bool:
    from safetensors.numpy import load_file

    for r in results:
        if r["status"] != "ok":
            continue
        wa, wb = (load_file(str(d / r["job"] / "model" / "weights.safetensors")) for d in (a, b))
        if wa.keys() != wb.keys() or any(not np.array_equal(wa[k], wb[k]) for k in wa):
            return False
    return True


def run(plate: Path, n_wells: int | None, workers: int, sizes: list[int], options: dict) -> dict:
    import organoid_sim
    from organoid_sim.batch import fit_many

    wells = organoid_sim.list_wells(plate)
    wells = wells if n_wells is None else wells[:n_wells]
    sizes = sorted({min(s, len(wells)) for s in sizes} | {len(wells)})
    out = {"plate": plate.name, "wells": wells, "workers": workers, "options": options, "cpu_count": os.cpu_count(),
           "load_average_start": os.getloadavg()}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        t0 = time.perf_counter()
        serial = fit_many([plate], tmp / "serial", client="serial", wells=wells, **options)
        out["serial_wall_s"] = time.perf_counter() - t0
        out["serial_jobs"] = [{k: r.get(k) for k in ("well", "status", "wall_s", "cpu_s", "val_bits", "n_spikes")}
                              for r in serial]
        out["cluster"] = []
        for n in sizes:
            t0 = time.perf_counter()
            res = fit_many([plate], tmp / f"cluster{n}", workers=workers, wells=wells[:n], **options)
            wall = time.perf_counter() - t0
            out["cluster"].append({"n_wells": n, "wall_s": wall, "s_per_well": wall / n,
                                   "ok": sum(r["status"] == "ok" for r in res)})
        biggest = tmp / f"cluster{len(wells)}"
        out["identical_models"] = _same_models(tmp / "serial", biggest, serial)
    cpu = [j["cpu_s"] for j in out["serial_jobs"] if j["cpu_s"] is not None]
    out["serial_s_per_well"] = out["serial_wall_s"] / len(wells)
    out["serial_cpu_s_per_well_median"] = float(np.median(cpu)) if cpu else None
    out["speedup"] = out["serial_wall_s"] / out["cluster"][-1]["wall_s"]
    out["load_average_end"] = os.getloadavg()
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--plate", type=Path, default=DIV12)
    ap.add_argument("--wells", default="all", help="number of wells (first in file order) or 'all'")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--sizes", default="2,4", help="extra plate sizes for the cluster runs (the largest is --wells)")
    ap.add_argument("--fast", action="store_true", help="cheap fitting options (see the module docstring)")
    ap.add_argument("--hidden", type=int, default=None, help="hidden neurons (default: the estimator's)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    if not args.plate.exists():
        print(f"plate not found: {args.plate}", file=sys.stderr)
        return 2
    n = None if args.wells == "all" else int(args.wells)
    options = {**(FAST if args.fast else {}), **({} if args.hidden is None else {"n_hidden": args.hidden})}
    res = run(args.plate, n, args.workers, [int(s) for s in args.sizes.split(",") if s], options)
    print(f"{res['plate']}: {len(res['wells'])} wells, options {res['options'] or 'defaults'}, "
          f"{res['cpu_count']} CPUs, load average {res['load_average_start'][0]:.1f} at the start, "
          f"{res['load_average_end'][0]:.1f} at the end")
    print(f"{'run':<22}{'wells':>6}{'wall s':>10}{'s / well':>10}")
    print(f"{'serial':<22}{len(res['wells']):>6}{res['serial_wall_s']:>10.1f}{res['serial_s_per_well']:>10.1f}")
    for c in res["cluster"]:
        print(f"{str(res['workers']) + ' workers':<22}{c['n_wells']:>6}{c['wall_s']:>10.1f}{c['s_per_well']:>10.1f}")
    print(f"speed-up on {len(res['wells'])} wells: {res['speedup']:.2f}x; median CPU s per well (serial) "
          f"{res['serial_cpu_s_per_well_median']:.1f}; cluster models identical to serial: {res['identical_models']}")
    if args.json:
        print(json.dumps(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
