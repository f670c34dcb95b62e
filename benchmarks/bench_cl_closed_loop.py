"""Speed of a cl-sdk closed loop on a fitted model (accelerated mode) against real time and against
cl-sdk's own simulator, measured in one run.

The script is ``examples/cl_closed_loop.py`` (plain cl-sdk: every tick the detected spikes are read,
a spike on channel 18 triggers a pulse on channel 27, the session is recorded), run in the Python
3.12 venv ``.venv-cl`` (``make cl-env``) with ``CL_SDK_ACCELERATED_TIME=1``:

* ``model``: on a 16-channel model (16 units on CL1 channels, fitted here to 60 s of a known ground
  truth network and saved), through ``organoid_sim.cl:source``;
* ``cl_null``: the same script on a source that returns zero frames and no spikes (the reference:
  cl-sdk's own loop and recording overhead, the ceiling any source can reach on this machine);
* ``cl_random``: the same script on cl-sdk's built-in random source (its own simulator).

Figures: the loop's real-time factor (simulated seconds / wall seconds of the ``neurons.loop``, as
the script prints it), median over ``--rounds`` fresh processes; the CPU seconds of each whole run
(script, cl-sdk's producer and recording processes, start-up included); and the load average of
the machine (the box is shared: a loaded one runs everything slower). Skips with one line without
``.venv-cl``.

Run: ``python benchmarks/bench_cl_closed_loop.py [--seconds 30] [--ticks 100] [--rounds 3] [--json]``
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CL_PYTHON = ROOT / ".venv-cl" / "bin" / "python"
sys.path.insert(0, str(ROOT / "tests"))


def null_source():
    """cl-sdk data source of zero frames and no spikes (imported by cl-sdk's producer process)."""
    import numpy as np
    from cl.sim import DataSourceBatch, SimulatorDataSource, SimulatorDataSourceMetadata

    class Null(SimulatorDataSource):
        metadata = SimulatorDataSourceMetadata(channel_count=64, seekable=False)

        def read(self, from_timestamp, frame_count):
            return DataSourceBatch(frames=np.zeros((frame_count, 64), np.int16))

    return Null()


def _run(env_extra: dict, seconds: float, ticks: int, cwd: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CL_SDK_")}
    env.update({"CL_SDK_ACCELERATED_TIME": "1", "PYTHONPATH": f"{ROOT}:{ROOT / 'benchmarks'}", **env_extra})
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = subprocess.run([str(CL_PYTHON), str(ROOT / "examples" / "cl_closed_loop.py"), "--seconds", str(seconds),
                          "--ticks", str(ticks)], capture_output=True, text=True, env=env, cwd=cwd, timeout=900)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    m = re.search(r"(\d+) spikes, (\d+) stims .* loop ([\d.]+) s wall = ([\d.]+)x real time", out.stdout)
    if out.returncode or not m:
        err = (out.stderr.strip().splitlines() or ["?"])[-1]
        return {"ok": False, "error": err[-200:]}
    return {"ok": True, "spikes": int(m.group(1)), "stims": int(m.group(2)), "wall_s": float(m.group(3)),
            "x_real_time": seconds / float(m.group(3)), "cpu_s": cpu}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=30.0, help="simulated session length (s)")
    ap.add_argument("--ticks", type=int, default=100, help="loop ticks per second")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    if not CL_PYTHON.exists():
        print("bench_cl_closed_loop: no .venv-cl (Python 3.12 + cl-sdk; `make cl-env`): skipped")
        return
    import torch

    from cl_models import fitted

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        fitted(seed=0).save(tmp / "model")
        cases = {"model": {"CL_SDK_DATA_SOURCE": "organoid_sim.cl:source",
                           "CL_SDK_DATA_SOURCE_CONFIG": json.dumps({"model": str(tmp / "model"), "seed": 0})},
                 "cl_null": {"CL_SDK_DATA_SOURCE": "bench_cl_closed_loop:null_source"},
                 "cl_random": {"CL_SDK_RANDOM_SEED": "0", "CL_SDK_REPLAY_START_OFFSET": "0"}}
        res = {name: [] for name in cases}
        for r in range(args.rounds):
            for name, env in cases.items():
                res[name].append(_run(env, args.seconds, args.ticks, tmp))
    load = os.getloadavg()
    summary = {"seconds": args.seconds, "ticks_per_second": args.ticks, "load_average": load, "runs": res}
    for name, runs in res.items():
        ok = [x["x_real_time"] for x in runs if x["ok"]]
        summary[name] = statistics.median(ok) if ok else None
    if args.json:
        print(json.dumps(summary, indent=2))
        return
    print(f"closed loop, {args.seconds:g} s at {args.ticks} ticks/s, accelerated; load average "
          f"{load[0]:.1f} (2-core box)")
    for name, runs in res.items():
        cells = [f"{x['x_real_time']:.1f}x ({x['spikes']} spikes, {x['stims']} stims, {x['cpu_s']:.1f} CPU s)"
                 if x["ok"]
                 else f"failed: {x['error']}" for x in runs]
        med = summary[name]
        print(f"  {name:10s} median {med:.1f}x real time | " if med else f"  {name:10s} no run finished | ",
              "; ".join(cells))
    for ref in ("cl_null", "cl_random"):
        if summary["model"] and summary[ref]:
            print(f"  model / {ref} speed: {summary['model'] / summary[ref]:.2f}")


if __name__ == "__main__":
    main()
