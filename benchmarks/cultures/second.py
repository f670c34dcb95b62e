"""A second ground-truth culture, written with Brian2 and sharing no code or physics with
``organoid_sim.synthetic``, for ``benchmarks/bench_stimulation.py --culture second``.

Network: 2,000 adaptive leaky integrate-and-fire neurons (80 % excitatory, current-based synapses
with a fast and a slow (NMDA-like, 60 ms) excitatory component, Tsodyks-Markram depression of the
excitatory synapses, spike-triggered adaptation of the excitatory cells), placed uniformly under a
6 x 8 electrode grid (175 um pitch), Gaussian distance-dependent connections (sigma 150 um, about
80 inputs per neuron) with distance-proportional conduction delays. Noise alone drives it; it
bursts every few seconds; bursts rise slowly (the slow excitation) and end by depression and
adaptation.

Stimulation physics (somatic, no axonal pathway): a biphasic pulse of ``I`` uA depolarises every
neuron by ``dv = V_GAIN * I * exp(-d^2 / (2 sigma(I)^2))`` with ``sigma(I) = SIGMA_UM * I^SIGMA_POWER``
(um): a Gaussian fall-off whose radius grows with the current. Neurons pushed over threshold fire
at once; the response of most channels is carried by the network (tens of ms), and depends on
whether the network is refractory after a burst.

Recording: each electrode is one multi-unit channel; a neuron at distance ``d`` um is detected
with probability ``exp(-d^2 / (2 * 25^2))`` (cut at 60 um); spikes within 2 ms of a pulse are
blanked (artefact).

Sessions (``--out`` folder, generic HDF5 layout of organoid_sim, written with h5py):

- ``spontaneous.h5``: ``--spontaneous-s`` s of spontaneous activity;
- ``calibration.h5``: electrode set A (checkerboard parity 0) at 1.0 and 2.5 uA, ``--calib-repeats``
  pulses per condition in random order, 0.7 +- 0.15 s apart;
- ``heldout.h5``: set B at 1.0, 1.5, 2.0, 2.5 uA and set A at the unseen 1.5, 2.0 uA,
  ``--truth-repeats`` pulses per condition: its responses are the truth (and its two halves give
  the split-half noise ceiling); simulated in ``--parts`` consecutive parts, each from its own
  warm-up (``--part k`` runs one, so the parts can run side by side);
- ``culture.json``: the configuration, seeds and electrode sets (written first).

Same seed, same files. Run with a Python that has brian2 >= 2.10 (``make bench-env``):
``.venv-bench/bin/python benchmarks/cultures/second.py --out benchmarks/out/second``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROWS, COLS, PITCH_UM = 6, 8, 175.0
N_NEURONS, FRAC_E = 2000, 0.8
MARGIN_UM = 100.0
CONN_SIGMA_UM, IN_DEGREE = 150.0, 80
V_GAIN_MV, SIGMA_UM, SIGMA_POWER = 30.0, 28.0, 0.7
DETECT_SIGMA_UM, DETECT_MAX_UM = 25.0, 60.0
BLANK_S = 0.002
PHASE_US = 200.0
CALIB_AMPS, TRUTH_AMPS = (1.0, 2.5), (1.0, 1.5, 2.0, 2.5)
INTERVAL_S, JITTER_S = 0.7, 0.15
DT_MS = 0.25
#: membrane noise (mV), mean drive above rest (mV), synaptic jumps (mV) and adaptation increment (mV)
NOISE_MV, DRIVE_MV = 4.0, 2.0
W_FAST_MV, W_SLOW_MV, W_INH_MV, U_DEP, TAU_REC_MS, ADAPT_MV = 4.0, 0.8, 5.0, 0.5, 800.0, 0.6
WARMUP_S = 3.0


def electrodes():
    """Electrode ids (row-major), x and y (um)."""
    r, c = np.divmod(np.arange(ROWS * COLS), COLS)
    return np.arange(ROWS * COLS), c * PITCH_UM, r * PITCH_UM


def anatomy(seed: int) -> dict:
    """Neuron positions, types, connections and delays (numpy, seeded)."""
    rng = np.random.default_rng([seed, 1])
    _, ex, ey = electrodes()
    xy = np.stack([rng.uniform(ex.min() - MARGIN_UM, ex.max() + MARGIN_UM, N_NEURONS),
                   rng.uniform(ey.min() - MARGIN_UM, ey.max() + MARGIN_UM, N_NEURONS)], 1)
    n_e = int(round(FRAC_E * N_NEURONS))
    d = np.sqrt(((xy[:, None] - xy[None]) ** 2).sum(-1))
    k = np.exp(-d ** 2 / (2 * CONN_SIGMA_UM ** 2))
    np.fill_diagonal(k, 0.0)
    p = k * (IN_DEGREE / k.sum(0, keepdims=True))          # column j: expected in-degree IN_DEGREE
    pre, post = np.nonzero(rng.random(p.shape) < np.clip(p, 0, 1))
    return {"xy": xy, "n_e": n_e, "pre": pre, "post": post, "dist": d[pre, post],
            "v_th_jitter": rng.normal(0.0, 1.0, N_NEURONS)}


def schedule(elec, amps, repeats: int, seed: int, start_s: float = 1.0):
    """Every electrode x amplitude ``repeats`` times in random order, INTERVAL_S +- JITTER_S s apart."""
    rng = np.random.default_rng([seed, 2])
    e, a = np.meshgrid(np.asarray(elec), np.asarray(amps, float), indexing="ij")
    cond = np.repeat(np.stack([e.ravel(), a.ravel()], 1), repeats, axis=0)
    cond = cond[rng.permutation(len(cond))]
    gaps = INTERVAL_S + rng.uniform(-JITTER_S, JITTER_S, len(cond))
    times = start_s + np.concatenate([[0.0], np.cumsum(gaps[:-1])])
    return np.round(times, 4), cond[:, 0].astype(np.int64), cond[:, 1]


def activation_mv(amp_ua: float, d_um: np.ndarray) -> np.ndarray:
    """Somatic depolarisation (mV) of a pulse of ``amp_ua`` uA at distance ``d_um`` um."""
    sigma = SIGMA_UM * amp_ua ** SIGMA_POWER
    return V_GAIN_MV * amp_ua * np.exp(-d_um ** 2 / (2 * sigma ** 2))


def simulate(anat: dict, duration_s: float, stim, seed: int, cache_dir: str):
    """Spikes (neuron index, time s) of ``duration_s`` s after a warm-up, with pulses ``stim``."""
    import brian2 as b2
    from brian2 import ms, mV

    # C++ standalone: one compiled program per session (per-step overhead is what costs in runtime mode)
    b2.prefs.logging.console_log_level = "WARNING"
    b2.device.reinit()
    b2.device.activate()
    b2.set_device("cpp_standalone", directory=cache_dir, build_on_run=False)
    b2.start_scope()
    b2.defaultclock.dt = DT_MS * ms
    b2.seed(seed)
    n_e = anat["n_e"]
    eqs = """
    dv/dt = (-(v - v_rest) + drive + ge + gn - gi - a) / tau_m + sigma * sqrt(2 / tau_m) * xi : volt (unless refractory)
    dge/dt = -ge / (5 * ms) : volt
    dgn/dt = -gn / (60 * ms) : volt
    dgi/dt = -gi / (10 * ms) : volt
    da/dt = -a / (1500 * ms) : volt
    v_th : volt (constant)
    b : volt (constant)
    """
    ns = {"v_rest": -65 * mV, "tau_m": 20 * ms, "sigma": NOISE_MV * mV, "drive": DRIVE_MV * mV}
    g = b2.NeuronGroup(N_NEURONS, eqs, threshold="v > v_th", reset="v = -60 * mV; a += b", refractory=2 * ms,
                       method="euler", namespace=ns)
    rng = np.random.default_rng([seed, 3])
    g.v = (-65 + 4 * rng.random(N_NEURONS)) * mV
    g.v_th = (-50 + 1.0 * anat["v_th_jitter"]) * mV
    g.b = np.where(np.arange(N_NEURONS) < n_e, ADAPT_MV, 0.0) * mV
    pre, post, dist = anat["pre"], anat["post"], anat["dist"]
    delay = 0.5 + dist / 300.0                                   # ms: 300 um/ms conduction
    is_e = pre < n_e
    syn_e = b2.Synapses(g, g, model="""dx/dt = (1 - x) / tau_rec : 1 (event-driven)""",
                        on_pre="ge_post += w_fast * x; gn_post += w_slow * x; x -= u_dep * x",
                        method="exact", namespace={"tau_rec": TAU_REC_MS * ms, "w_fast": W_FAST_MV * mV,
                                                   "w_slow": W_SLOW_MV * mV, "u_dep": U_DEP})
    syn_e.connect(i=pre[is_e], j=post[is_e])
    syn_e.x = 1.0
    syn_e.delay = delay[is_e] * ms
    syn_i = b2.Synapses(g, g, on_pre="gi_post += w_inh", namespace={"w_inh": W_INH_MV * mV})
    syn_i.connect(i=pre[~is_e], j=post[~is_e])
    syn_i.delay = delay[~is_e] * ms
    objs = [g, syn_e, syn_i]
    times, elec, amps = stim
    if len(times):
        _, ex, ey = electrodes()
        keys = sorted(set(zip(elec.tolist(), np.round(amps, 6).tolist())))
        src = {k: i for i, k in enumerate(keys)}
        idx = np.array([src[(int(e), round(float(x), 6))] for e, x in zip(elec, amps)])
        sg = b2.SpikeGeneratorGroup(len(keys), idx, (np.asarray(times) + WARMUP_S) * 1000 * ms)
        si, sj, sw = [], [], []
        for (e, amp), i in src.items():      # ("a" would clash with the adaptation variable in Brian's namespace)
            dv = activation_mv(amp, np.hypot(anat["xy"][:, 0] - ex[e], anat["xy"][:, 1] - ey[e]))
            on = np.nonzero(dv > 0.05)[0]
            si.append(np.full(len(on), i)), sj.append(on), sw.append(dv[on])
        syn_s = b2.Synapses(sg, g, model="w : volt", on_pre="v_post += w")
        syn_s.connect(i=np.concatenate(si), j=np.concatenate(sj))
        syn_s.w = np.concatenate(sw) * mV
        objs += [sg, syn_s]
    mon = b2.SpikeMonitor(g)
    net = b2.Network(*objs, mon)
    net.run((WARMUP_S + duration_s) * 1000 * ms, report="stdout" if sys.stdout.isatty() else None,
            report_period=30 * b2.second)
    b2.device.build(directory=cache_dir, compile=True, run=True, debug=False, clean=False)
    t = np.asarray(mon.t / b2.second) - WARMUP_S
    i = np.asarray(mon.i)
    keep = t >= 0
    return i[keep], t[keep]


def record(anat: dict, neuron, t, stim_times, seed: int):
    """Multi-unit channels: (channel index, time s) of detected, un-blanked spikes."""
    rng = np.random.default_rng([seed, 4])
    _, ex, ey = electrodes()
    d = np.hypot(anat["xy"][:, None, 0] - ex[None], anat["xy"][:, None, 1] - ey[None])    # [N, E]
    p = np.where(d <= DETECT_MAX_UM, np.exp(-d ** 2 / (2 * DETECT_SIGMA_UM ** 2)), 0.0)
    ni, ch = np.nonzero(p > 0)
    out_t, out_c = [], []
    order = np.argsort(neuron, kind="stable")
    starts = np.searchsorted(neuron[order], np.arange(N_NEURONS + 1))
    for n, c in zip(ni, ch):
        tt = t[order[starts[n]:starts[n + 1]]]
        tt = tt[rng.random(len(tt)) < p[n, c]]
        out_t.append(tt), out_c.append(np.full(len(tt), c))
    t_all = np.concatenate(out_t) if out_t else np.zeros(0)
    c_all = np.concatenate(out_c) if out_c else np.zeros(0, np.int64)
    t_all = t_all + rng.uniform(-2e-5, 2e-5, len(t_all))              # sub-step timing of detection
    if len(stim_times):
        st = np.sort(np.asarray(stim_times))
        k = np.searchsorted(st, t_all, side="right") - 1
        blanked = (k >= 0) & (t_all - st[np.clip(k, 0, None)] < BLANK_S)
        t_all, c_all = t_all[~blanked], c_all[~blanked]
    return c_all, t_all


def write_h5(path: Path, channel, t, duration_s: float, stim, metadata: dict) -> None:
    """The recording in organoid_sim's generic HDF5 layout (unit = electrode channel), atomically."""
    import h5py

    ids, ex, ey = electrodes()
    keep = (t >= 0) & (t < duration_s)
    order = np.lexsort((t[keep], channel[keep]))
    tt, cc = t[keep][order], channel[keep][order]
    tmp = path.with_name("." + path.name + ".tmp")
    with h5py.File(tmp, "w") as f:
        f.attrs["format"] = "organoid_sim.spikes"
        f.attrs["version"] = 1
        f.create_dataset("spike_times", data=tt.astype(np.float64))
        f.create_dataset("spike_units", data=ids[cc].astype(np.int64))
        f.create_dataset("unit_ids", data=ids.astype(np.int64))
        f.create_dataset("electrode_ids", data=ids.astype(np.int64))
        f.create_dataset("positions", data=np.stack([ex, ey], 1).astype(np.float64))
        f.create_dataset("electrodes/id", data=ids.astype(np.int64))
        f.create_dataset("electrodes/x", data=ex.astype(np.float64))
        f.create_dataset("electrodes/y", data=ey.astype(np.float64))
        times, elec, amps = stim
        if len(times):
            f.create_dataset("stim/time", data=np.asarray(times, np.float64))
            f.create_dataset("stim/electrode", data=np.asarray(elec, np.int64))
            f.create_dataset("stim/amplitude", data=-np.asarray(amps, np.float64))   # cathodic first
            f.create_dataset("stim/phase_us", data=np.full(len(times), PHASE_US))
            f.create_dataset("stim/n_phases", data=np.full(len(times), 2, np.int64))
        f.attrs["t_start"], f.attrs["t_stop"] = 0.0, float(duration_s)
        f.attrs["sampling_rate"] = 1000.0 / DT_MS
        f.attrs["amplitude_unit"] = "uA"
        f.attrs["metadata"] = json.dumps(metadata)
    os.replace(tmp, path)


def _heldout_part(anat, stim, duration_s: float, part: int, n_parts: int, seed: int, out: Path, cache: str) -> None:
    """Part ``part`` of ``n_parts`` of the held-out session (consecutive pulses), simulated from its
    own warm-up and written to ``.heldout.part<k>.npz`` in session time."""
    path = out / f".heldout.part{part}.npz"
    if path.exists():
        return
    times, elec, amps = stim
    bounds = np.linspace(0, len(times), n_parts + 1).astype(int)
    sl = slice(bounds[part], bounds[part + 1])
    t_lo = 0.0 if part == 0 else float(times[sl][0]) - 0.5
    t_hi = duration_s if part == n_parts - 1 else float(times[bounds[part + 1]]) - 0.5
    t0 = time.perf_counter()
    local = (times[sl] - t_lo, elec[sl], amps[sl])
    neuron, t = simulate(anat, t_hi - t_lo, local, seed=seed * 1000 + 300 + part,
                         cache_dir=f"{cache}_part{part}")
    ch, tt = record(anat, neuron, t, local[0], seed=seed * 1000 + 400 + part)
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(tmp, channel=ch, t=tt + t_lo)
    os.replace(tmp, path)
    print(f"heldout part {part}: {t_hi - t_lo:.0f} s, {len(t) / (t_hi - t_lo) / N_NEURONS:.2f} Hz/neuron, "
          f"{time.perf_counter() - t0:.0f} s", flush=True)


def config(seed: int, args) -> dict:
    """Everything that defines the culture and its sessions (written to culture.json)."""
    return {"simulator": "brian2", "seed": seed, "rows": ROWS, "cols": COLS, "pitch_um": PITCH_UM,
            "n_neurons": N_NEURONS, "frac_excitatory": FRAC_E, "connection_sigma_um": CONN_SIGMA_UM,
            "in_degree": IN_DEGREE, "activation": {"v_gain_mv_per_ua": V_GAIN_MV, "sigma_um": SIGMA_UM,
                                                   "sigma_power": SIGMA_POWER},
            "detection_sigma_um": DETECT_SIGMA_UM, "blank_s": BLANK_S, "dt_ms": DT_MS, "phase_us": PHASE_US,
            "interval_s": INTERVAL_S, "jitter_s": JITTER_S, "spontaneous_s": args.spontaneous_s,
            "calib_repeats": args.calib_repeats, "truth_repeats": args.truth_repeats}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "out" / "second"))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--spontaneous-s", type=float, default=150.0)
    ap.add_argument("--calib-repeats", type=int, default=10)
    ap.add_argument("--truth-repeats", type=int, default=20)
    ap.add_argument("--only", choices=("spontaneous", "calibration", "heldout"), default=None,
                    help="write one session only (quick looks)")
    ap.add_argument("--parts", type=int, default=2, help="the held-out session is simulated in this many "
                    "consecutive parts, each after its own warm-up (they can run side by side)")
    ap.add_argument("--config-only", action="store_true", help="write culture.json (the design) and stop")
    ap.add_argument("--part", type=int, default=None, help="simulate only this part of the held-out session")
    a = ap.parse_args(argv)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    cache = str(out / ".brian_cache")
    anat = anatomy(a.seed)
    ids = electrodes()[0]
    r, c = np.divmod(ids, COLS)
    set_a, set_b = ids[(r + c) % 2 == 0], ids[(r + c) % 2 == 1]
    cfg = config(a.seed, a)
    sessions = {
        "spontaneous": (a.spontaneous_s, (np.zeros(0), np.zeros(0, np.int64), np.zeros(0))),
        "calibration": None, "heldout": None}
    cal = schedule(set_a, CALIB_AMPS, a.calib_repeats, a.seed + 10)
    sessions["calibration"] = (float(cal[0][-1]) + 1.0, cal)
    tb = schedule(set_b, TRUTH_AMPS, a.truth_repeats, a.seed + 20)
    unseen = tuple(x for x in TRUTH_AMPS if x not in CALIB_AMPS)
    ta = schedule(set_a, unseen, a.truth_repeats, a.seed + 30)
    # one held-out session: both schedules interleaved in random order
    tim = np.concatenate([tb[1], ta[1]]), np.concatenate([tb[2], ta[2]])
    perm = np.random.default_rng([a.seed, 5]).permutation(len(tim[0]))
    n = len(perm)
    gaps = INTERVAL_S + np.random.default_rng([a.seed, 6]).uniform(-JITTER_S, JITTER_S, n)
    times = np.round(1.0 + np.concatenate([[0.0], np.cumsum(gaps[:-1])]), 4)
    held = (times, tim[0][perm], tim[1][perm])
    sessions["heldout"] = (float(times[-1]) + 1.0, held)
    cfg["heldout_parts"] = a.parts
    doc = {**cfg, "calibration_electrodes": set_a.tolist(), "heldout_electrodes": set_b.tolist(),
           "calibration_amplitudes_uA": list(CALIB_AMPS), "truth_amplitudes_uA": list(TRUTH_AMPS),
           "heldout_amplitudes_on_calibration_electrodes_uA": list(unseen)}
    tmp = out / ".culture.json.tmp"
    tmp.write_text(json.dumps(doc, indent=1))
    os.replace(tmp, out / "culture.json")          # the design: written first, so it is known before the sessions
    if a.config_only:
        return
    for k, (name, (dur, stim)) in enumerate(sessions.items()):
        if (a.only and name != a.only) or (a.part is not None and name != "heldout"):
            continue
        md = {"source": "benchmarks/cultures/second.py", "culture": "second", "session": name, **cfg}
        if (out / f"{name}.h5").exists():
            continue
        t0 = time.perf_counter()
        if name == "heldout":
            parts = [a.part] if a.part is not None else range(a.parts)
            for p in parts:
                _heldout_part(anat, stim, dur, p, a.parts, a.seed, out, cache)
            if all((out / f".heldout.part{p}.npz").exists() for p in range(a.parts)):
                got = [np.load(out / f".heldout.part{p}.npz") for p in range(a.parts)]
                ch, tt = np.concatenate([g["channel"] for g in got]), np.concatenate([g["t"] for g in got])
                write_h5(out / "heldout.h5", ch, tt, dur, stim, md)
                print(f"heldout: {len(tt)} channel spikes in {a.parts} parts", flush=True)
            continue
        neuron, t = simulate(anat, dur, stim, seed=a.seed * 1000 + 100 + k, cache_dir=cache)
        ch, tt = record(anat, neuron, t, stim[0], seed=a.seed * 1000 + 200 + k)
        write_h5(out / f"{name}.h5", ch, tt, dur, stim, md)
        print(f"{name}: {dur:.0f} s, {len(t)} neuron spikes ({len(t) / dur / N_NEURONS:.2f} Hz/neuron), "
              f"{len(tt)} channel spikes, {time.perf_counter() - t0:.0f} s", flush=True)


if __name__ == "__main__":
    main()
