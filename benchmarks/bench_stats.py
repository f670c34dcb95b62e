"""Benchmark: all-pairs STTC of organoid_sim.stats.sttc vs elephant's per-pair STTC.

1. 200 units x 600 s at 2 Hz (Poisson): our all-pairs matrix vs elephant's
   ``spike_time_tiling_coefficient`` on every pair, timed in the same run, values compared.
2. 1000 units x 1 h at 2 Hz: our time alone (elephant would take hours).

``--quick`` shrinks both cases (for a smoke test); ``--json`` prints the figures as the last line.
Elephant is timed on all 20,100 upper-triangle pairs (diagonal included; about 5 minutes) and every
value compared with ours; ``--pairs N`` times a random sample of N pairs instead and extrapolates.
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import numpy as np
import quantities as pq
import torch
from elephant.spike_train_correlation import spike_time_tiling_coefficient

from organoid_sim import SpikeRecording
from organoid_sim.stats import sttc


def poisson_recording(n_units: int, duration_s: float, rate_hz: float, seed: int) -> SpikeRecording:
    """Homogeneous Poisson trains, times quantised to 1/20 kHz like a real acquisition system."""
    rng = np.random.default_rng(seed)
    trains = [np.unique(np.round(rng.uniform(0, duration_s, rng.poisson(rate_hz * duration_s)) * 2e4) / 2e4)
              for _ in range(n_units)]
    return SpikeRecording.from_spike_times(trains, t_start=0.0, t_stop=duration_s)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true", help="print a JSON line with the figures last")
    ap.add_argument("--quick", action="store_true", help="small sizes (smoke test)")
    ap.add_argument("--pairs", type=int, default=0, help="elephant pairs to time (random sample; 0 = all)")
    ap.add_argument("--dt", type=float, default=0.01, help="STTC window in seconds")
    args = ap.parse_args()
    torch.set_num_threads(2)
    n1, d1, n2, d2 = (40, 120.0, 100, 300.0) if args.quick else (200, 600.0, 1000, 3600.0)

    rec = poisson_recording(n1, d1, 2.0, seed=0)
    t = time.perf_counter()
    ours = sttc(rec, dt=args.dt)
    t_ours = time.perf_counter() - t
    trains = rec.to_neo()
    iu, ju = np.triu_indices(n1)
    rng = np.random.default_rng(1)
    pick = np.arange(len(iu)) if args.pairs <= 0 or args.pairs >= len(iu) else rng.choice(len(iu), args.pairs, replace=False)
    t = time.perf_counter()
    ref = np.array([spike_time_tiling_coefficient(trains[iu[k]], trains[ju[k]], dt=args.dt * pq.s) for k in pick])
    t_el_sample = time.perf_counter() - t
    t_el = t_el_sample * len(iu) / len(pick)  # elephant needs one call per pair: extrapolate linearly
    mine = ours[iu[pick], ju[pick]]
    max_rel = float(np.max(np.abs(mine - ref) / np.maximum(np.abs(ref), 1e-300)))

    big = poisson_recording(n2, d2, 2.0, seed=2)
    t = time.perf_counter()
    m_big = sttc(big, dt=args.dt)
    t_big = time.perf_counter() - t

    res = {
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(), "threads": torch.get_num_threads(),
        "case1": f"{n1} units x {d1:g} s at 2 Hz ({rec.n_spikes:,} spikes)", "dt_s": args.dt,
        "ours_all_pairs_s": round(t_ours, 4), "elephant_pairs_timed": int(len(pick)),
        "elephant_all_pairs_s": round(t_el, 2), "elephant_extrapolated": bool(len(pick) < len(iu)),
        "speedup": round(t_el / t_ours, 1),
        "max_rel_diff_vs_elephant": max_rel, "identical_to_1e-9": bool(max_rel <= 1e-9),
        "case2": f"{n2} units x {d2:g} s at 2 Hz ({big.n_spikes:,} spikes)", "ours_big_s": round(t_big, 2),
        "big_finite": bool(np.isfinite(m_big).all()),
    }
    print(f"STTC dt={args.dt} s, {res['case1']}:")
    print(f"  organoid_sim all {len(iu):,} pairs: {t_ours:.3f} s")
    if len(pick) < len(iu):
        print(f"  elephant {len(pick):,} sampled pairs: {t_el_sample:.2f} s -> all pairs ~{t_el:.1f} s (extrapolated)")
    else:
        print(f"  elephant all {len(iu):,} pairs, one call each: {t_el:.1f} s")
    print(f"  speed-up {res['speedup']}x, max relative difference {max_rel:.2e}")
    print(f"STTC {res['case2']}: organoid_sim {t_big:.2f} s")
    if args.json:
        print(json.dumps(res))


if __name__ == "__main__":
    main()
