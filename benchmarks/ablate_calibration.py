"""Ablation of the rate calibration on tune-plate wells (never on validation plates).

Per well (the ``plates.py`` sample of the tune plates, ``--wells`` a subset): the network is fitted
once without calibration (teacher-forced stage and refinement with the defaults, on the first
75 %), then each calibration arm starts from those parameters; per arm: the in-sample figures
(free-running simulation against the fitting window, two simulation seeds) and the held-out ones
(4x the held-out duration against the last 25 %), judged on the bars.

Run: ``python benchmarks/ablate_calibration.py --wells CO_2014:B4,ON_20130814:C6 --jobs 2 --out x.json``
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

ARMS = {"keep_best_5x": dict(rounds=6, duration_s=90.0, gain=0.4, unit_gain=0.4, average_from=None),
        "split_avg_8x": dict(rounds=8, duration_s=60.0, gain=0.4, unit_gain=1.0, average_from=0.5),
        "split_avg_8x_g07": dict(rounds=8, duration_s=60.0, gain=0.7, unit_gain=1.0, average_from=0.5)}


def one_well(path: str, well: str, seed: int = 0) -> dict:
    """Fit once without calibration, then every arm; figures per arm."""
    import organoid_sim
    from organoid_sim.evaluation import _figures, held_out_bars
    from organoid_sim.fit.calibrate import calibrate_rates
    from organoid_sim.fit.self_check import in_sample_check, judge
    from organoid_sim.models import SpikingNetworkModel
    from organoid_sim.models.network import DEFAULT_N_HIDDEN
    from plates import _init_worker

    _init_worker()
    rec = organoid_sim.load(path, well=well).trim_silence()
    train, held = rec.split(0.75)
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        base = SpikingNetworkModel(seed=seed, n_hidden=DEFAULT_N_HIDDEN, progress=False, fit_seed=seed,
                                   calibration_rounds=0, self_check=False).fit(train)
    out = {"plate": Path(path).name, "well": well, "fit_s": time.perf_counter() - t0, "arms": {}}
    counts = base.observation.prepare(base._binned(train))
    for name, opts in ARMS.items():
        m = copy.deepcopy(base)
        t1 = time.perf_counter()
        cal = calibrate_rates(m, counts, seed=seed, progress=False, **opts)
        arm = {"calibrate_s": time.perf_counter() - t1, **cal}
        for s in (11, 12):
            chk = in_sample_check(m, train, seed=seed + s)
            arm[f"in_sample_{s}"] = chk["figures"]
            arm[f"in_sample_{s}_passed"] = chk["passed"]
        sim = m.simulate(4 * held.duration, seed=seed, t_start=held.t_start, n_parallel=8, burn_in_s=5.0)
        fig = _figures(held, sim)
        arm["held_out"] = fig
        arm["held_out_passed"] = judge(fig, held_out_bars(), floor=_figures(held, train))
        arm["bits_per_spike"] = m.score(held)
        out["arms"][name] = arm
    return out


def main(argv=None) -> int:
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    import numpy as np
    from plates import _init_worker, sample_wells, split_plates

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--wells-per-plate", type=int, default=2)
    ap.add_argument("--wells", default="", help="PLATE_PREFIX:WELL,... subset of the tune sample")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    only = {tuple(x.split(":")) for x in args.wells.split(",") if x}
    jobs = []
    for p in split_plates()["tune"]:
        wells, _ = sample_wells(p, args.wells_per_plate, args.seed)
        jobs += [(str(p), w) for w in wells if not only or any(p.name.startswith(a) and w == b for a, b in only)]
    print("wells:", [(Path(p).name[:22], w) for p, w in jobs], flush=True)
    with ProcessPoolExecutor(max_workers=args.jobs, mp_context=mp.get_context("spawn"), initializer=_init_worker) as ex:
        runs = list(ex.map(one_well, [p for p, _ in jobs], [w for _, w in jobs]))
    for name in ARMS:
        ins = [all(r["arms"][name][f"in_sample_{s}_passed"].values()) for r in runs for s in (11, 12)]
        rate = [r["arms"][name][f"in_sample_{s}"]["rate_median_rel_err"] for r in runs for s in (11, 12)]
        held = [all(r["arms"][name]["held_out_passed"].values()) for r in runs]
        per_bar = {k: float(np.mean([r["arms"][name][f"in_sample_{s}_passed"][k] for r in runs for s in (11, 12)]))
                   for k in runs[0]["arms"][name]["in_sample_11_passed"]}
        print(f"{name:<18} in-sample all bars {np.mean(ins):.2f} {per_bar}; median in-sample rate error "
              f"{np.median(rate):.3f}; held-out (no bits bar) {np.mean(held):.2f}")
    for r in runs:
        print(r["plate"][:22], r["well"], {n: round(a["in_sample_11"]["rate_median_rel_err"], 3) for n, a in r["arms"].items()},
              {n: round(a["in_sample_12"]["rate_median_rel_err"], 3) for n, a in r["arms"].items()})
    if args.out:
        Path(args.out).write_text(json.dumps(runs, indent=1, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
