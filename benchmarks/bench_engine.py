"""Simulation speed of organoid-sim's engine against Brian2, NEST and snnTorch, measured in one run.

The network (the same for every simulator): ``N`` stochastic leaky integrate-and-fire neurons, one
exponential synaptic current (``tau_syn`` 5 ms, ``tau_mem`` 10 ms), random connectivity with fixed
in-degree 100 (the same synapse list for every simulator), 1 ms steps, about 2 Hz of escape-noise
(or, for simulators without it, noise-driven) firing, spikes recorded. One thread each, a fresh
process per run, the median of ``--rounds`` runs; us/step (wall time of the simulation loop over
steps; also its CPU time, which on a loaded machine is closer to what an idle one gives), real-time
factor (simulated / wall time) and the peak RSS of the process that simulates.

Columns:

* ``engine``: :class:`organoid_sim.engine.Simulator` on a saved model loaded with
  ``load_network`` (no torch in that process);
* ``model.run``: ``SpikingNetworkModel.run`` on the loaded model (torch imported, engine inside);
* ``brian2_cpp``: Brian2 ``cpp_standalone`` (simulation time from the binary; the build time is
  reported apart), ``brian2_cython``: Brian2 runtime with Cython code generation; both with the same
  escape-noise threshold ``rand() < 1 - exp(-r0 dt exp((v - theta) / delta_u))``;
* ``nest``: NEST ``gif_psc_exp`` (exponential escape noise, no adaptation), delay 1 ms;
* ``snntorch``: snnTorch ``RLeaky`` (dense ``N x N`` recurrent weights: skipped at 100,000 neurons,
  40 GB) driven by Bernoulli input spikes.

Brian2 and NEST run with ``--peer-python`` (a Python with the ``bench`` extra: Brian2 needs numpy >= 2.0 with
a Brian2 >= 2.10, which is Python >= 3.12 here, see ``make bench-env``); a peer that cannot be
imported or cannot run a size is skipped with the reason. ``--device cuda`` adds the torch step loop
on the GPU (``model.run(engine="torch")``); skipped cleanly without CUDA. Also measured: how the
engine's time grows with N and with the in-degree (10, 100, 1000 at 10,000 neurons).

Run: ``python benchmarks/bench_engine.py [--sizes 1000,10000,100000] [--rounds 3] [--peer-python PY]
[--peers brian2_cpp,brian2_cython,nest,snntorch] [--device cuda] [--json] [--out FILE]``
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DT_MS, TAU_M, TAU_S, RATE_HZ, THETA, DELTA_U, W_SD = 1.0, 10.0, 5.0, 2.0, 1.0, 0.3, 0.02
IN_DEGREE = 100
PEERS = ("brian2_cpp", "brian2_cython", "nest", "snntorch")
PEER_PYTHON = ("brian2_cpp", "brian2_cython", "nest")  # run with --peer-python; snnTorch with this Python


def synapses(n: int, in_degree: int, seed: int = 0):
    """``(pre, post, weight)`` of the benchmark network (fixed in-degree, threshold units)."""
    gen = np.random.default_rng(seed)
    k = min(in_degree, n - 1)
    post = np.repeat(np.arange(n), k)
    pre = gen.integers(0, n - 1, size=len(post))
    pre += pre >= post
    while True:  # redraw duplicate (pre, post) pairs: every neuron has k distinct inputs
        key = post.astype(np.int64) * n + pre
        order = np.argsort(key, kind="stable")
        dup = np.zeros(len(key), bool)
        dup[order[1:]] = key[order[1:]] == key[order[:-1]]
        if not dup.any():
            break
        r = gen.integers(0, n - 1, size=int(dup.sum()))
        pre[dup] = r + (r >= post[dup])
    return pre, post, gen.normal(0.0, W_SD, len(pre))


def bias() -> float:
    """Resting drive that gives RATE_HZ at rest: r0 exp((b - theta) / delta_u) = RATE_HZ, r0 = 10 Hz."""
    return THETA + DELTA_U * float(np.log(RATE_HZ / 10.0))


def peak_rss_mb() -> float:
    """Peak resident memory of this process (MB). ``VmHWM`` starts afresh at ``exec``, unlike
    ``ru_maxrss``, which a child inherits from the process that forked it."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


# runs Brian2's standalone binary and writes its own peak RSS (kB) next to it
_WRAP = ("import os, sys\npid = os.fork()\nif pid == 0:\n    os.execv(sys.argv[1], sys.argv[1:])\n"
         "_, status, ru = os.wait4(pid, 0)\nopen('peak_rss_kb.txt', 'w').write(str(ru.ru_maxrss))\n"
         "sys.exit(os.waitstatus_to_exitcode(status))")


# ---------------------------------------------------------------------------- workers (fresh processes)
def work_engine(a) -> dict:
    from organoid_sim.engine import Simulator, load_network

    t0 = time.perf_counter()
    sim = Simulator(load_network(a.model_dir), seed=a.seed)
    setup = time.perf_counter() - t0
    sim.run(min(200, a.steps))                                        # compiled code from the cache
    t0, c0 = time.perf_counter(), time.process_time()
    ev = sim.run(a.steps)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {"wall_s": wall, "cpu_s": cpu, "setup_s": setup, "spikes": int(ev[:, 3].sum()),
            "torch": "torch" in sys.modules}


def work_model(a) -> dict:
    import torch

    from organoid_sim import load_model

    torch.set_num_threads(1)
    m = load_model(a.model_dir)
    engine = "auto"
    if a.device != "cpu":
        m.to(a.device)
        engine = "torch"
    m.run(min(200, a.steps), seed=a.seed, engine=engine)             # set-up (and GPU warm-up)
    if a.device != "cpu":
        torch.cuda.synchronize()
    t0, c0 = time.perf_counter(), time.process_time()
    ev, _, _ = m.run(a.steps, seed=a.seed + 1, engine=engine)
    if a.device != "cpu":
        torch.cuda.synchronize()
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {"wall_s": wall, "cpu_s": cpu, "spikes": int(ev[:, 3].sum())}


def work_brian2(a, standalone: bool) -> dict:
    import brian2 as b2

    b2.prefs.codegen.target = "cython"
    b2.prefs.devices.cpp_standalone.openmp_threads = 0
    if standalone:
        b2.set_device("cpp_standalone", directory=a.build_dir, build_on_run=False)
        b2.prefs.devices.cpp_standalone.run_cmd_unix = [sys.executable, "-c", _WRAP, "./main"]
    b2.defaultclock.dt = DT_MS * b2.ms
    pre, post, wts = synapses(a.n, a.in_degree)
    eqs = "dv/dt = (I - v) / tau_m : 1\ndI/dt = -I / tau_s : 1"
    g = b2.NeuronGroup(a.n, eqs, method="exact", reset="v -= theta",
                       threshold="rand() < -expm1(-r0 * dt * exp((b + v - theta) / du))",
                       namespace=dict(tau_m=TAU_M * b2.ms, tau_s=TAU_S * b2.ms, theta=THETA, du=DELTA_U,
                                      b=bias(), r0=10.0 * b2.Hz))
    s = b2.Synapses(g, g, "w : 1", on_pre="I_post += w")
    s.connect(i=pre, j=post)
    s.w = wts
    mon = b2.SpikeMonitor(g)
    t_sim = a.steps * DT_MS * b2.ms
    if standalone:
        b2.run(t_sim)
        t0 = time.perf_counter()
        b2.device.build(directory=a.build_dir, compile=True, run=True)
        total = time.perf_counter() - t0
        wall = float(b2.device._last_run_time)               # the simulation loop inside the binary
        rss = int(Path(a.build_dir, "peak_rss_kb.txt").read_text()) / 1024.0
        return {"wall_s": wall, "build_s": total - wall, "spikes": int(mon.num_spikes), "rss_mb": rss}
    b2.run(min(200, a.steps) * DT_MS * b2.ms)                  # code generation and compilation
    n0 = int(mon.num_spikes)
    t0, c0 = time.perf_counter(), time.process_time()
    b2.run(t_sim)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {"wall_s": wall, "cpu_s": cpu, "spikes": int(mon.num_spikes) - n0}


def work_nest(a) -> dict:
    import nest

    if hasattr(nest, "VerbosityLevel"):
        nest.verbosity = nest.VerbosityLevel.ERROR
    else:
        nest.set_verbosity("M_ERROR")
    nest.ResetKernel()
    nest.SetKernelStatus({"resolution": DT_MS, "local_num_threads": 1, "rng_seed": a.seed + 1})
    # gif_psc_exp: lambda = lambda_0 exp((V - V_T) / Delta_V); V in mV with theta = 10 mV
    mv = 10.0
    params = {"C_m": 250.0, "g_L": 25.0, "E_L": 0.0, "V_reset": 0.0, "t_ref": 0.0, "Delta_V": DELTA_U * mv,
              "V_T_star": mv, "lambda_0": 10.0, "tau_syn_ex": TAU_S, "tau_syn_in": TAU_S,
              "q_sfa": [], "tau_sfa": [], "q_stc": [], "tau_stc": [], "V_m": 0.0}
    g = nest.Create("gif_psc_exp", a.n, params=params)
    g.I_e = bias() * mv * 25.0                                      # b (threshold units) as a current, pA
    pre, post, w = synapses(a.n, a.in_degree)
    ids = np.asarray(g.tolist())
    # a weight of w threshold units is a current jump of w * theta * g_L (pA): tau_m V' = -V + I / g_L
    # is then the engine's membrane in mV; the subtractive reset is a reset to 0 here (V_reset)
    nest.Connect(ids[pre], ids[post], conn_spec="one_to_one",
                 syn_spec={"weight": w * mv * 25.0, "delay": np.full(len(w), DT_MS)})
    rec = nest.Create("spike_recorder")
    nest.Connect(g, rec)
    nest.Simulate(min(200, a.steps) * DT_MS)
    n0 = rec.n_events
    t0, c0 = time.perf_counter(), time.process_time()
    nest.Simulate(a.steps * DT_MS)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {"wall_s": wall, "cpu_s": cpu, "spikes": int(rec.n_events - n0)}


def work_snntorch(a) -> dict:
    import snntorch as snn
    import torch

    torch.set_num_threads(1)
    torch.manual_seed(a.seed)
    pre, post, w = synapses(a.n, a.in_degree)
    lif = snn.RLeaky(beta=float(np.exp(-DT_MS / TAU_M)), linear_features=a.n, threshold=THETA,
                     reset_mechanism="subtract")
    with torch.no_grad():
        lif.recurrent.weight.zero_()
        lif.recurrent.weight[torch.as_tensor(post), torch.as_tensor(pre)] = torch.as_tensor(w, dtype=torch.float32)
        lif.recurrent.bias.zero_()
    p_in = RATE_HZ * DT_MS / 1000.0

    def loop(steps):
        spk, mem = lif.init_rleaky()
        n_spk = 0
        with torch.no_grad():
            for _ in range(steps):
                x = (torch.rand(a.n) < p_in).float() * 1.5 * THETA     # input spikes: ~2 Hz of drive
                spk, mem = lif(x, spk, mem)
                n_spk += int(spk.sum())
        return n_spk

    loop(min(50, a.steps))
    t0, c0 = time.perf_counter(), time.process_time()
    n_spk = loop(a.steps)
    return {"wall_s": time.perf_counter() - t0, "cpu_s": time.process_time() - c0, "spikes": n_spk}


def worker(a) -> None:
    fn = {"engine": work_engine, "model": work_model, "brian2_cpp": lambda a: work_brian2(a, True),
          "brian2_cython": lambda a: work_brian2(a, False), "nest": work_nest, "snntorch": work_snntorch}[a.worker]
    out = fn(a)
    out.setdefault("rss_mb", peak_rss_mb())
    print("RESULT " + json.dumps(out), flush=True)


# ---------------------------------------------------------------------------- the driver
def save_model(n: int, in_degree: int, directory: Path) -> Path:
    """The benchmark network as a saved sparse SpikingNetworkModel (weights from :func:`synapses`)."""
    import torch

    from organoid_sim.models import SpikingNetworkModel

    m = SpikingNetworkModel(n_recorded=n, in_degree=in_degree, dt_ms=DT_MS, tau_mem_ms=TAU_M, tau_syn_ms=(TAU_S,),
                            delta_u=DELTA_U, max_rate_hz=None, seed=0)
    pre, post, w = synapses(n, in_degree)
    with torch.no_grad():
        m.syn_pre = torch.as_tensor(pre.astype(np.int32))
        m.syn_post = torch.as_tensor(post.astype(np.int32))
        m.weight = torch.nn.Parameter(torch.as_tensor(w[None], dtype=torch.float32))
        m.bias.fill_(bias())
        m.beta_raw.fill_(-30.0)                                        # no adaptation, as the peers
    m.layout = {"unit_ids": list(range(n)), "electrode_ids": [0] * n, "positions": [[0.0, 0.0]] * n,
                "electrodes": {"ids": [0], "x": [0.0], "y": [0.0]}}
    return m.save(directory)


def launch(kind: str, n: int, steps: int, args, model_dir: Path | None, python: str, in_degree: int = IN_DEGREE,
           device: str = "cpu", build_dir: Path | None = None) -> dict:
    """One run in a fresh process; ``{"error": ...}`` when it fails."""
    cmd = [python, str(Path(__file__).resolve()), "--worker", kind, "--n", str(n), "--steps", str(steps),
           "--in-degree", str(in_degree), "--device", device, "--seed", "0"]
    if model_dir is not None:
        cmd += ["--model-dir", str(model_dir)]
    if build_dir is not None:
        cmd += ["--build-dir", str(build_dir)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
           "NUMBA_NUM_THREADS": "1", "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=args.timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {args.timeout} s"}
    for line in p.stdout.splitlines()[::-1]:
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    tail = (p.stderr or p.stdout).strip().splitlines()[-1:] or ["no output"]
    return {"error": f"exit {p.returncode}: {tail[0][:300]}"}


def measure(kind, n, steps, args, model_dir, python, **kw) -> dict:
    """Median over ``args.rounds`` fresh processes (the first error skips the rest)."""
    runs = []
    for _ in range(args.rounds):
        r = launch(kind, n, steps, args, model_dir, python, **kw)
        if "error" in r:
            return r
        runs.append(r)
    us = statistics.median(r["wall_s"] / steps * 1e6 for r in runs)
    out = {"us_per_step": us, "realtime_x": DT_MS * 1e3 / us, "rss_mb": max(r["rss_mb"] for r in runs),
           "rate_hz": statistics.median(r["spikes"] / n / (steps * DT_MS / 1000.0) for r in runs), "steps": steps,
           "rounds": len(runs)}
    if "cpu_s" in runs[0]:  # CPU time of the loop: on a loaded machine, closer to what an idle one gives
        out["cpu_us_per_step"] = statistics.median(r["cpu_s"] / steps * 1e6 for r in runs)
    if "setup_s" in runs[0]:
        out["setup_s"] = statistics.median(r["setup_s"] for r in runs)
    if "build_s" in runs[0]:  # the first build is the fresh one; later rounds reuse its objects
        out["build_s"] = runs[0]["build_s"]
    if "torch" in runs[0]:
        out["torch_imported"] = any(r["torch"] for r in runs)
    return out


def steps_for(kind: str, n: int, args) -> int:
    """Enough steps for a stable figure without letting the slow peers take minutes."""
    base = args.steps or {1000: 20000, 10000: 5000}.get(n, 2000)
    if kind == "snntorch":
        return max(100, min(base, 2_000_000_000 // (n * n)))     # dense N x N product per step
    if kind == "brian2_cython" or kind == "nest":
        return max(500, base // 2)
    return base


def peer_available(kind: str, python: str) -> str | None:
    mod = {"brian2_cpp": "brian2", "brian2_cython": "brian2", "nest": "nest", "snntorch": "snntorch"}[kind]
    p = subprocess.run([python, "-c", f"import {mod}"], capture_output=True, text=True)
    if p.returncode:
        last = (p.stderr.strip().splitlines() or ["import failed"])[-1]
        return f"{mod} not importable with {python}: {last[:200]}"
    return None


def fmt_row(name: str, r: dict) -> str:
    if "error" in r or "skipped" in r:
        return f"| {name} | skipped: {r.get('skipped') or r.get('error')} |"
    extra = f", build {r['build_s']:.1f} s" if "build_s" in r else ""
    cpu = f"{r['cpu_us_per_step']:,.1f}" if "cpu_us_per_step" in r else "-"
    return (f"| {name} | {r['us_per_step']:,.1f} | {cpu} | {r['realtime_x']:.2f}x | {r['rss_mb']:,.0f} MB | "
            f"{r['rate_hz']:.2f} Hz{extra} |")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="1000,10000,100000", help="network sizes N, comma-separated")
    ap.add_argument("--rounds", type=int, default=3, help="fresh processes per measurement (median)")
    ap.add_argument("--steps", type=int, default=0, help="steps per run (default by size)")
    ap.add_argument("--peer-python", default=sys.executable, help="Python with the bench extra (Brian2, NEST)")
    ap.add_argument("--peers", default=",".join(PEERS), help="peers to run, comma-separated ('' for none)")
    ap.add_argument("--device", default="cpu", help="'cuda' adds the torch step loop on the GPU")
    ap.add_argument("--no-growth", action="store_true", help="skip the in-degree sweep")
    ap.add_argument("--timeout", type=float, default=900.0, help="seconds per run before it counts as failed")
    ap.add_argument("--json", action="store_true", help="print a JSON object as the last line")
    ap.add_argument("--out", help="also write the JSON to this file")
    # worker mode (internal)
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--n", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--in-degree", type=int, default=IN_DEGREE, help=argparse.SUPPRESS)
    ap.add_argument("--model-dir", help=argparse.SUPPRESS)
    ap.add_argument("--build-dir", help=argparse.SUPPRESS)
    ap.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.worker:
        worker(a)
        return 0

    sizes = [int(s) for s in a.sizes.split(",") if s]
    peers = [p for p in a.peers.split(",") if p]
    unknown = set(peers) - set(PEERS)
    if unknown:
        ap.error(f"unknown peers {sorted(unknown)}; choose from {PEERS}")
    load = os.getloadavg()[0]
    info = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "cpus": os.cpu_count(),
            "load_1min": load, "machine": " ".join(os.uname()[i] for i in (0, 4)), "in_degree": IN_DEGREE,
            "dt_ms": DT_MS, "rounds": a.rounds}
    print(f"# bench_engine {info['date']}, {info['cpus']} CPUs, load {load:.1f}, one thread per run, "
          f"median of {a.rounds} fresh processes", flush=True)
    skip = {p: peer_available(p, a.peer_python if p in PEER_PYTHON else sys.executable) for p in peers}
    results: dict = {"info": info, "sizes": {}, "growth_in_degree": {}}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for n in sizes:
            model_dir = save_model(n, IN_DEGREE, tmp / f"net{n}")
            row = {}
            print(f"\n## N = {n:,}, in-degree {IN_DEGREE}\n| simulator | us/step | CPU us/step | real time | "
                  "peak RSS | rate |\n|---|---|---|---|---|---|", flush=True)
            for kind in ("engine", "model", *peers):
                if kind in skip and skip[kind]:
                    row[kind] = {"skipped": skip[kind]}
                elif kind == "snntorch" and n > 20000:
                    row[kind] = {"skipped": f"dense {n} x {n} recurrent weights ({n * n * 4 / 1e9:.0f} GB)"}
                else:
                    python = a.peer_python if kind in PEER_PYTHON else sys.executable
                    row[kind] = measure(kind, n, steps_for(kind, n, a), a, model_dir, python,
                                        build_dir=tmp / f"b2_{n}" if kind == "brian2_cpp" else None)
                print(fmt_row(kind, row[kind]), flush=True)
            if a.device != "cpu":
                row["model_" + a.device] = cuda_row(n, a, model_dir)
                print(fmt_row("model.run " + a.device, row["model_" + a.device]), flush=True)
            results["sizes"][n] = row
        if not a.no_growth:
            n = 10000
            print(f"\n## engine growth with in-degree, N = {n:,}\n| in-degree | us/step | CPU us/step | real time | "
                  "peak RSS | rate |\n|---|---|---|---|---|---|", flush=True)
            for k in (10, 100, 1000):
                d = save_model(n, k, tmp / f"deg{k}")
                r = measure("engine", n, steps_for("engine", n, a), a, d, sys.executable, in_degree=k)
                results["growth_in_degree"][k] = r
                print(fmt_row(str(k), r), flush=True)
    ratios = {}
    for n, row in results["sizes"].items():
        e = row.get("engine", {})
        for p in peers:
            if "us_per_step" in e and "us_per_step" in row.get(p, {}):
                ratios[f"{p}/engine@{n}"] = row[p]["us_per_step"] / e["us_per_step"]
    results["speedup_vs_peers"] = ratios
    if ratios:
        print("\nspeed-up of the engine (peer us/step / engine us/step): "
              + ", ".join(f"{k} {v:.1f}x" for k, v in ratios.items()))
    text = json.dumps(results, default=str)
    if a.out:
        Path(a.out).write_text(text)
    if a.json:
        print(text)
    return 0


def cuda_row(n: int, a, model_dir: Path) -> dict:
    """The torch step loop on the GPU (skipped without CUDA)."""
    probe = subprocess.run([sys.executable, "-c", "import torch; print(torch.cuda.is_available())"],
                           capture_output=True, text=True)
    if probe.stdout.strip() != "True":
        return {"skipped": f"no CUDA device ({a.device} requested)"}
    if n > 20000:
        return {"skipped": "the torch step loop forms the dense N x N weight matrix"}
    return measure("model", n, 2000, a, model_dir, sys.executable, device=a.device)


if __name__ == "__main__":
    sys.exit(main())
