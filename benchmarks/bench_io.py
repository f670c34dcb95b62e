"""Benchmark: loading spike times from NWB, and chunked spike tensors over a long recording.

In one run:

1. writes a 1000-unit, 1,000,000-spike NWB file with ``organoid_sim.save`` (pynwb);
2. times loading all spike times (open file -> every unit's spike times in memory) with
   ``organoid_sim.load`` (h5py, ragged arrays in one read), with neo's ``NWBIO`` and with pynwb
   per-unit access (``nwbfile.units['spike_times'][i]`` for each unit), checks all three agree,
   and prints the speed ratios (targets: >= 10x neo, >= 3x pynwb);
3. measures our loader's peak Python/numpy memory with ``tracemalloc`` against the size of the
   spike arrays it returns (target <= 2x);
4. iterates ``rec.iter_chunks(bin_ms=1.0, chunk_s=10)`` over a 1-hour, 1000-unit, 2 Hz recording
   (7.2 M spikes) in a fresh subprocess and reports its peak resident memory (target < 1 GB;
   the full dense float32 tensor would be 14.4 GB).

Usage: ``python benchmarks/bench_io.py [--json] [--repeats 3] [--skip-neo]``; with ``--json`` the
last line printed is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np

N_UNITS = 1000
N_SPIKES = 1_000_000
DURATION_S = 1000.0


def make_recording(n_units: int, n_spikes: int, duration_s: float, seed: int = 0):
    """Poisson-like trains with log-normal rates, exactly ``n_spikes`` spikes in total."""
    from organoid_sim import Electrodes, SpikeRecording

    rng = np.random.default_rng(seed)
    weights = rng.lognormal(0.0, 1.0, n_units)
    counts = rng.multinomial(n_spikes, weights / weights.sum())
    units = np.repeat(np.arange(n_units), counts)
    times = rng.uniform(0.0, duration_s, n_spikes)
    side = int(np.ceil(np.sqrt(n_units)))
    ids = np.arange(n_units)
    layout = Electrodes(ids, (ids % side) * 17.5, (ids // side) * 17.5)
    return SpikeRecording.from_pairs(times, units, unit_ids=ids, t_start=0.0, t_stop=duration_s,
                                     electrode_ids=ids, electrodes=layout, sampling_rate=20_000.0)


def best_time(fn, repeats: int):
    """(best wall time in s, last result) over ``repeats`` calls."""
    best, out = np.inf, None
    for _ in range(repeats):
        gc.collect()
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def load_ours(path):
    import organoid_sim

    return organoid_sim.load(path, progress=False)


def load_neo(path):
    import neo

    block = neo.io.NWBIO(str(path), mode="r").read_all_blocks()[0]
    return [st.magnitude for st in block.segments[0].spiketrains]


def load_pynwb(path):
    from pynwb import NWBHDF5IO

    with NWBHDF5IO(str(path), "r") as io:
        units = io.read().units
        return [np.asarray(units["spike_times"][i]) for i in range(len(units))]


def peak_memory(fn):
    """Peak bytes allocated through Python/numpy while ``fn`` runs (tracemalloc), and its result."""
    gc.collect()
    tracemalloc.start()
    try:
        out = fn()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak, out


CHUNK_SCRIPT = r"""
import json, resource, sys, time, tracemalloc
import numpy as np, torch
torch.set_num_threads(1)
sys.path.insert(0, sys.argv[1])
from bench_io import make_recording
hours, units = float(sys.argv[2]), int(sys.argv[3])
rec = make_recording(units, int(3600 * hours * units * 2.0), 3600.0 * hours, seed=1)
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
tracemalloc.start()
t0 = time.perf_counter()
n_chunks = total = 0
for t, chunk in rec.iter_chunks(bin_ms=1.0, chunk_s=10):
    n_chunks += 1
    total += int(chunk.sum())
elapsed = time.perf_counter() - t0
_, traced = tracemalloc.get_traced_memory()
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps({"n_spikes": rec.n_spikes, "counted": total, "n_chunks": n_chunks, "seconds": elapsed,
                  "peak_rss_bytes": peak, "rss_before_iteration_bytes": base, "numpy_peak_bytes": traced,
                  "spike_array_bytes": rec.times.nbytes + rec.offsets.nbytes}))
"""


def chunk_benchmark(hours: float = 1.0, units: int = 1000) -> dict:
    """Run the chunked-iteration measurement in a fresh process so its peak RSS is its own."""
    out = subprocess.run([sys.executable, "-c", CHUNK_SCRIPT, str(Path(__file__).resolve().parent), str(hours),
                          str(units)], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None) -> dict:
    import torch

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    parser.add_argument("--repeats", type=int, default=3, help="timing repeats (best is kept)")
    parser.add_argument("--skip-neo", action="store_true", help="leave out neo (slowest reader)")
    parser.add_argument("--units", type=int, default=N_UNITS, help=f"units in the NWB file (default {N_UNITS})")
    parser.add_argument("--spikes", type=int, default=N_SPIKES, help=f"spikes in the NWB file (default {N_SPIKES})")
    parser.add_argument("--chunk-hours", type=float, default=1.0,
                        help="length of the 2 Hz recording for iter_chunks, hours (default 1)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    import organoid_sim

    rec = make_recording(args.units, args.spikes, DURATION_S)
    res: dict = {"n_units": rec.n_units, "n_spikes": rec.n_spikes, "cpu_count": os.cpu_count()}
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "bench.nwb"
        t0 = time.perf_counter()
        organoid_sim.save(rec, path)
        res["write_nwb_s"] = time.perf_counter() - t0
        res["file_mb"] = path.stat().st_size / 1e6

        res["ours_s"], ours = best_time(lambda: load_ours(path), args.repeats)
        assert ours == rec, ours.differences(rec)
        res["pynwb_per_unit_s"], per_unit = best_time(lambda: load_pynwb(path), max(1, args.repeats - 1))
        assert all(np.array_equal(a, b) for a, b in zip(per_unit, rec.spike_times))
        if not args.skip_neo:
            res["neo_nwbio_s"], trains = best_time(lambda: load_neo(path), 1)
            assert all(np.array_equal(a, b) for a, b in zip(trains, rec.spike_times))
            res["speedup_vs_neo"] = res["neo_nwbio_s"] / res["ours_s"]
        res["speedup_vs_pynwb"] = res["pynwb_per_unit_s"] / res["ours_s"]

        peak, loaded = peak_memory(lambda: load_ours(path))
        arrays = loaded.times.nbytes + loaded.offsets.nbytes
        res.update(ours_peak_bytes=peak, spike_array_bytes=arrays, memory_ratio=peak / arrays)
        del loaded, ours
    res["chunks"] = chunk_benchmark(args.chunk_hours, args.units)
    res["chunks"]["peak_rss_gb"] = res["chunks"]["peak_rss_bytes"] / 1e9
    res["targets_met"] = {
        "neo_10x": res.get("speedup_vs_neo", float("nan")) >= 10,
        "pynwb_3x": res["speedup_vs_pynwb"] >= 3,
        "memory_2x": res["memory_ratio"] <= 2,
        "chunks_under_1gb": res["chunks"]["peak_rss_bytes"] < 1e9,
    }

    print(f"NWB file: {res['n_units']} units, {res['n_spikes']:,} spikes, {res['file_mb']:.1f} MB "
          f"(written in {res['write_nwb_s']:.2f} s)")
    print(f"load spike times  organoid_sim {res['ours_s'] * 1e3:8.1f} ms")
    print(f"                  pynwb/unit   {res['pynwb_per_unit_s'] * 1e3:8.1f} ms   "
          f"ours is {res['speedup_vs_pynwb']:.1f}x faster (target >= 3x)")
    if "neo_nwbio_s" in res:
        print(f"                  neo NWBIO    {res['neo_nwbio_s'] * 1e3:8.1f} ms   "
              f"ours is {res['speedup_vs_neo']:.1f}x faster (target >= 10x)")
    print(f"peak memory of our load: {res['ours_peak_bytes'] / 1e6:.1f} MB for {arrays / 1e6:.1f} MB of spike "
          f"arrays = {res['memory_ratio']:.2f}x (target <= 2x)")
    c = res["chunks"]
    print(f"iter_chunks(1 ms, 10 s) over {args.chunk_hours:g} h x {args.units} units x 2 Hz ({c['n_spikes']:,} spikes, {c['n_chunks']} chunks): "
          f"{c['seconds']:.1f} s, peak RSS {c['peak_rss_gb']:.2f} GB (target < 1 GB)")
    if args.json:
        print(json.dumps(res))
    return res


if __name__ == "__main__":
    main()
