"""Fitting and simulation benchmark of organoid-sim's models.

1. Per dataset (DIV12 wells D1, A5, F2 and the NGN2 file, detector thr4): ``organoid_sim.evaluate``
   (fit on the first 75 %, judge on the last 25 %) - fit times and, per model, held-out bits/spike,
   rate_r, rate_median_rel_err, burst_rate_rel_err, burst_duration_rel_err, corr_matrix_r, next to the
   recording's own noise floor (first 75 % vs last 25 %).
2. Free-running simulation of 1000 neurons at 1 ms steps: SpikingNetworkModel vs snnTorch ``RLeaky``
   (1000 all-to-all recurrent LIF neurons), side by side on the same CPU, same thread count.
3. On a CUDA device: 10,000 neurons, real-time factor (skipped without CUDA).

Run: ``python benchmarks/bench_fit.py [--datasets D1,A5,F2,NGN2] [--seeds 0,1,2] [--skip-eval] [--json]``
(with several seeds the tables show the median over seeds and the JSON holds every seed).

Plate mode: ``python benchmarks/bench_fit.py --plates tune|validation|FILE1,FILE2 --wells-per-plate K
--seed S [--jobs 2] [--json] [--out result.json]`` fits single wells of whole Axion plates with the
defaults and judges them on the bars (:mod:`plates`, next to this file, holds the split, the
eligibility rule, the sample and the bars).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DATA = ROOT.parent / "shared" / "data" / "real"
DIV12 = DATA / "CO_20140212_MW1007-51_DIV12_00_001.h5"
NGN2 = DATA / "NGN2_20230208_P1_DIV14_A2_OutputData.mat"
FIGS = ("bits_per_spike", "rate_r", "rate_median_rel_err", "burst_rate_rel_err", "burst_duration_rel_err",
        "corr_matrix_r")


def load_dataset(name: str):
    import organoid_sim

    if name == "NGN2":
        return organoid_sim.load(NGN2, detector="thr4")
    return organoid_sim.load(DIV12, well=name)


def bench_evaluate(names, seeds=(0,)) -> dict:
    """``organoid_sim.evaluate`` per dataset and seed; with several seeds, also the median of
    each figure over seeds (free-running statistics of a bursting network vary from seed to seed)."""
    import organoid_sim

    out = {}
    for name in names:
        rec = load_dataset(name)
        runs = {}
        for seed in seeds:
            t0 = time.perf_counter()
            rep = organoid_sim.evaluate(rec, split=0.75, seed=seed)
            d = rep.to_dict()
            d["wall_s"] = time.perf_counter() - t0
            runs[seed] = d
            print(f"\n== {name}, seed {seed}: {rec!r}\n{rep}\nfit times (s): "
                  + ", ".join(f"{k} {v:.1f}" for k, v in rep.timings.items()), flush=True)
        d = dict(runs[seeds[0]])
        if len(seeds) > 1:
            d["per_seed"] = runs
            for row in ("network", "glm", "poisson", "recording"):
                d[row] = {f: float(np.nanmedian([runs[k][row][f] for k in seeds])) if any(
                    np.isfinite(runs[k][row][f]) for k in seeds) else float("nan") for f in FIGS}
            d["timings_s"] = {k: float(np.median([runs[s]["timings_s"][k] for s in seeds])) for k in d["timings_s"]}
        out[name] = d
    return out


def _random_network(n: int, dt_ms: float, device: str):
    from organoid_sim import SpikeRecording
    from organoid_sim.models import SpikingNetworkModel

    m = SpikingNetworkModel(n_hidden=0, dt_ms=dt_ms, tau_syn_ms=(5.0,), seed=0)
    xy = np.random.default_rng(0).random((n, 2)) * 2000.0
    tmpl = SpikeRecording.from_spike_times([np.array([0.5])] * n, t_start=0.0, t_stop=1.0,
                                           electrode_ids=np.arange(n), positions=xy)
    m.attach_recording(tmpl)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        m.weight.copy_((torch.rand(m.weight.shape, generator=g) < 0.1) * torch.randn(m.weight.shape, generator=g) * 0.05)
        m.bias.fill_(0.5)  # ~ 2 Hz per neuron
    return m.to(device)


def bench_vs_snntorch(n: int = 1000, steps: int = 2000, threads: int = 1, repeats: int = 3) -> dict:
    """Seconds per 1 ms step of ours (event-driven, stochastic) and of snnTorch RLeaky (dense).

    The two are timed alternately ``repeats`` times (a shared CPU's load hits both alike); the
    medians are reported and their ratio is the speedup.
    """
    import snntorch as snn

    torch.set_num_threads(threads)
    model = _random_network(n, 1.0, "cpu")
    model.run(200, seed=0)  # warm-up
    rleaky = snn.RLeaky(beta=0.9, linear_features=n, all_to_all=True)
    spk, mem = rleaky.reset_mem()
    x = torch.rand(steps, n) * 0.2
    ours, ref = [], []
    with torch.no_grad():
        for k in range(200):
            spk, mem = rleaky(x[k], spk, mem)
        for r in range(repeats):
            t0 = time.perf_counter()
            events, _, _ = model.run(steps, seed=1 + r)
            ours.append((time.perf_counter() - t0) / steps)
            t0 = time.perf_counter()
            for k in range(steps):
                spk, mem = rleaky(x[k], spk, mem)
            ref.append((time.perf_counter() - t0) / steps)
    rate = float(events[:, 3].sum()) / (n * steps * 1e-3) if len(events) else 0.0
    ours_s, ref_s = float(np.median(ours)), float(np.median(ref))
    return {"n_neurons": n, "steps": steps, "threads": threads, "repeats": repeats, "ours_s_per_step": ours_s,
            "snntorch_rleaky_s_per_step": ref_s, "speedup": ref_s / ours_s, "ours_rate_hz": rate,
            "ours_runs_s_per_step": ours, "snntorch_runs_s_per_step": ref}


def bench_gpu(n: int = 10000, seconds: float = 10.0) -> dict:
    """Real-time factor (simulated s per wall s) of ``n`` neurons at 1 ms on CUDA."""
    if not torch.cuda.is_available():
        return {"skipped": "no CUDA device"}
    model = _random_network(n, 1.0, "cuda")
    model.run(500, seed=0)
    torch.cuda.synchronize()
    steps = int(seconds * 1000)
    t0 = time.perf_counter()
    model.run(steps, seed=1)
    torch.cuda.synchronize()
    wall = time.perf_counter() - t0
    return {"n_neurons": n, "simulated_s": seconds, "wall_s": wall, "real_time_factor": seconds / wall}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--plates", default=None,
                    help="plate mode: 'tune', 'validation' or comma-separated plate files (names in "
                         "../shared/data/real/plates/ or paths)")
    ap.add_argument("--wells-per-plate", type=int, default=4, help="plate mode: wells sampled per plate")
    ap.add_argument("--seed", type=int, default=0, help="plate mode: seed of the sample and of every fit")
    ap.add_argument("--wells", default=None, help="plate mode: only these sampled wells, PLATE_PREFIX:WELL,...")
    ap.add_argument("--calibration-arms", default=None,
                    help="plate mode: JSON {name: calibrate_rates options, with \"fit\": {FitConfig fields of the "
                         "guarded calibration} optional}; refinement once per well, every arm after it")
    ap.add_argument("--jobs", type=int, default=1, help="plate mode: fits run side by side (1 thread each)")
    ap.add_argument("--out", default=None, help="plate mode: also write the JSON result to this file")
    ap.add_argument("--fit-options", default=None, help="plate mode: JSON dict of network fit options")
    ap.add_argument("--network-options", default=None, help="plate mode: JSON dict of network options")
    ap.add_argument("--datasets", default="D1,A5,F2,NGN2")
    ap.add_argument("--skip-eval", action="store_true", help="only the simulation-speed parts")
    ap.add_argument("--steps", type=int, default=2000, help="steps for the snnTorch comparison")
    ap.add_argument("--json", action="store_true", help="print one JSON document at the end")
    ap.add_argument("--seeds", default="0", help="comma-separated seeds of evaluate; tables show the median")
    args = ap.parse_args(argv)
    if args.plates:
        from plates import run_arms, run_plates

        return run_arms(args) if args.calibration_arms else run_plates(args)
    result = {"machine": {"torch": torch.__version__, "cpu_threads_available": torch.get_num_threads()}}
    if not args.skip_eval:
        seeds = tuple(int(x) for x in args.seeds.split(",") if x)
        result["evaluate"] = bench_evaluate([d for d in args.datasets.split(",") if d], seeds)
        print(f"\nper-dataset table (network row first, recording = noise floor; median over seeds {seeds}):")
        print(f"{'dataset':<6}{'row':<10}" + "".join(f"{f:>24}" for f in FIGS) + f"{'fit_s':>10}")
        for name, d in result["evaluate"].items():
            for row in ("network", "glm", "poisson", "recording"):
                fit_s = d["timings_s"].get(f"{row}_fit", float("nan"))
                print(f"{name:<6}{row:<10}" + "".join(f"{d[row][f]:>24.3f}" for f in FIGS) + f"{fit_s:>10.1f}")
    sim = bench_vs_snntorch(steps=args.steps)
    result["simulation_vs_snntorch"] = sim
    print(f"\n1000 neurons, 1 ms steps, {sim['threads']} thread(s): ours {sim['ours_s_per_step'] * 1e6:.1f} us/step, "
          f"snnTorch RLeaky {sim['snntorch_rleaky_s_per_step'] * 1e6:.1f} us/step -> {sim['speedup']:.2f}x "
          f"(medians of {sim['repeats']} alternating runs; our neurons fire at {sim['ours_rate_hz']:.2f} Hz)")
    result["gpu_10k"] = bench_gpu()
    print(f"GPU 10,000 neurons: {result['gpu_10k']}")
    if args.json:
        print(json.dumps(result, indent=1, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
