"""The two ground-truth cultures of ``bench_stimulation.py``: sessions, true responses and their halves.

``ours``: the virtual organoid of :mod:`organoid_sim.synthetic` (``data_samples/``): 64 electrodes,
calibration on a checkerboard half at 1.0 and 2.5 uA, true responses from 100 trials per
condition (window 2-50 ms). Its split-half ceiling compares two further independent 50-trial
measurements of the held-out conditions (cached in ``benchmarks/out/ours/``).

``second``: the Brian2 culture of ``benchmarks/cultures/second.py`` (48 electrodes, somatic Gaussian
activation, network-borne responses), generated once with ``.venv-bench`` (``make bench-env``) and
cached in ``benchmarks/out/second/``. Its truth is the held-out session (20 pulses per condition,
window 2-100 ms); the ceiling compares its two halves (alternate pulses of each condition).
"""

from __future__ import annotations

import json
import fcntl
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "out"
SECOND_WINDOW = (0.002, 0.100)


@dataclass
class Culture:
    """What the benchmark needs from a ground truth (times s, amplitudes uA)."""

    name: str
    spontaneous: object
    session: object
    truth: object                 # organoid_sim.synthetic.TrueResponses on (at least) the held-out conditions
    halves: tuple                 # two TrueResponses from disjoint halves of the truth's trials
    window: tuple
    calibration_electrodes: np.ndarray
    calibration_amplitudes: np.ndarray
    description: str
    held_electrodes: np.ndarray = None     # the held-out conditions (electrode, amplitude uA)
    held_amplitudes: np.ndarray = None


def held_out_conditions(truth, calib_electrodes, calib_amplitudes):
    """(electrodes, amplitudes uA) of the truth's conditions that the calibration never used."""
    e, a = np.meshgrid(truth.electrodes, truth.amplitudes_ua, indexing="ij")
    e, a = e.ravel(), a.ravel()
    keep = ~np.isin(e, calib_electrodes) | ~np.isin(np.round(a, 6), np.round(calib_amplitudes, 6))
    have = np.isfinite(truth.response_probability[..., 0]).ravel()
    return e[keep & have], a[keep & have]


def as_truth(resp, electrodes, amplitudes, phase_us, n_trials):
    """An ``EvokedResponses`` (by amplitude) laid out as ``TrueResponses`` [E, A, C] (NaN: not measured)."""
    from organoid_sim.synthetic import TrueResponses

    e_ix = {int(x): i for i, x in enumerate(electrodes)}
    a_ix = {round(float(x), 6): i for i, x in enumerate(amplitudes)}
    shape = (len(electrodes), len(amplitudes), len(resp.unit_ids))
    prob, lat = np.full(shape, np.nan), np.full(shape, np.nan)
    for g, (e, a) in enumerate(zip(resp.electrodes, resp.amplitudes)):
        i, j = e_ix[int(e)], a_ix[round(abs(float(a)), 6)]
        prob[i, j], lat[i, j] = resp.response_probability[g], resp.median_latency_s[g]
    return TrueResponses(np.asarray(electrodes, np.int64), np.asarray(amplitudes, float), float(phase_us),
                         resp.unit_ids, prob, lat, int(n_trials), tuple(resp.window))


def load_ours(samples: Path, progress: bool) -> Culture:
    """The virtual organoid's sample files, and (generated once, cached) two half-size truths."""
    import organoid_sim
    from organoid_sim.synthetic import OrganoidConfig, TrueResponses, VirtualOrganoid, load_true_responses
    from organoid_sim.synthetic import write_data_samples

    if not (samples / "true_responses.json").exists():
        print(f"{samples} has no sample files: generating them (a few minutes)", file=sys.stderr)
        write_data_samples(samples, seed=0, progress=progress)
    meta = json.loads((samples / "true_responses.json").read_text())
    truth = load_true_responses(samples / "true_responses.json")
    calib_e = np.asarray(meta["calibration_electrodes"], np.int64)
    calib_a = np.asarray(meta["calibration_amplitudes_uA"], float)
    cache = OUT / "ours" / "halves.json"
    if cache.exists():
        halves = tuple(TrueResponses.from_dict(d) for d in json.loads(cache.read_text()))
    else:
        print("measuring two independent half-size truths of the held-out conditions (cached)", file=sys.stderr)
        organoid = VirtualOrganoid(_organoid_config(meta["config"], OrganoidConfig), seed=int(meta["seed"]))
        n_half = truth.n_trials // 2
        held_b = np.setdiff1d(truth.electrodes, calib_e)
        unseen = np.setdiff1d(np.round(truth.amplitudes_ua, 6), np.round(calib_a, 6))
        halves = []
        for h in range(2):
            parts = [organoid.true_responses(electrodes=held_b, amplitudes_ua=truth.amplitudes_ua, n_trials=n_half,
                                             window=truth.window, phase_us=truth.phase_us, seed=1000 + 10 * h,
                                             progress=progress),
                     organoid.true_responses(electrodes=calib_e, amplitudes_ua=unseen, n_trials=n_half,
                                             window=truth.window, phase_us=truth.phase_us, seed=1001 + 10 * h,
                                             progress=progress)]
            halves.append(_merge_truths(truth, parts))
        cache.parent.mkdir(parents=True, exist_ok=True)
        from organoid_sim.atomic import atomic_write_text

        atomic_write_text(cache, json.dumps([x.to_dict() for x in halves]))
        halves = tuple(halves)
    he, ha = held_out_conditions(truth, calib_e, calib_a)
    return Culture("ours", organoid_sim.load(samples / "spontaneous.nwb"),
                   organoid_sim.load(samples / "stim_session.nwb"), truth, halves, tuple(truth.window),
                   calib_e, calib_a, "organoid_sim.synthetic virtual organoid (torch), data_samples/", he, ha)


def _organoid_config(d: dict, cls):
    """``OrganoidConfig`` from its ``to_dict`` form."""
    from organoid_sim.synthetic import NetworkConfig, PhysicsConfig, RecordingConfig

    return cls(rows=d["rows"], cols=d["cols"], pitch_um=d["pitch_um"], warmup_s=d["warmup_s"],
               network=NetworkConfig(**d["network"]), physics=PhysicsConfig(**d["physics"]),
               recording=RecordingConfig(**d["recording"]))


def _merge_truths(like, parts):
    """One ``TrueResponses`` on ``like``'s grid from truths measured on parts of it."""
    from organoid_sim.synthetic import TrueResponses

    prob = np.full_like(like.response_probability, np.nan)
    lat = np.full_like(like.median_latency_s, np.nan)
    e_ix = {int(x): i for i, x in enumerate(like.electrodes)}
    a_ix = {round(float(x), 6): i for i, x in enumerate(like.amplitudes_ua)}
    for p in parts:
        for i, e in enumerate(p.electrodes):
            for j, a in enumerate(p.amplitudes_ua):
                prob[e_ix[int(e)], a_ix[round(float(a), 6)]] = p.response_probability[i, j]
                lat[e_ix[int(e)], a_ix[round(float(a), 6)]] = p.median_latency_s[i, j]
    return TrueResponses(like.electrodes, like.amplitudes_ua, like.phase_us, like.unit_ids, prob, lat,
                         parts[0].n_trials, like.window)


def bench_python() -> str:
    """The interpreter with brian2 (``SECOND_CULTURE_PYTHON``, else ``.venv-bench/bin/python`` of this checkout)."""
    return os.environ.get("SECOND_CULTURE_PYTHON", str(ROOT / ".venv-bench" / "bin" / "python"))


#: files of a culture folder (:func:`load_folder`), each a recording organoid-sim reads
FOLDER_FILES = ("culture.json", "spontaneous.h5", "calibration.h5")
#: keys ``culture.json`` must hold (:func:`load_folder`)
FOLDER_KEYS = ("calibration_electrodes", "heldout_electrodes", "calibration_amplitudes_uA", "truth_amplitudes_uA",
               "heldout_amplitudes_on_calibration_electrodes_uA", "phase_us", "truth_repeats")


def load_second(folder: Path, seed: int = 0, with_truth: bool = True) -> Culture:
    """The Brian2 culture's sessions (generated once with ``bench_python()``, then cached);
    ``with_truth=False``: without the held-out session (truth and halves None)."""
    if not all((folder / f).exists() for f in FOLDER_FILES) or (with_truth and not (folder / "heldout.h5").exists()):
        py = bench_python()
        if not Path(py).exists():
            raise SystemExit(f"{folder} has no second-culture files and {py} does not exist: run `make bench-env` "
                             "(Python 3.12 + brian2) or set SECOND_CULTURE_PYTHON")
        print(f"generating the second culture with {py} into {folder} (several minutes, cached)", file=sys.stderr)
        _generate_second(py, folder, seed)
    return load_folder(folder, "second", with_truth, what="Brian2 culture (benchmarks/cultures/second.py)")


def load_folder(folder: Path, name: str | None = None, with_truth: bool = True, what: str | None = None) -> Culture:
    """A ground-truth culture written as a folder, by any simulator: ``spontaneous.h5``,
    ``calibration.h5`` and ``heldout.h5`` (recordings with their stimulation, in any format
    organoid-sim reads under these names) and ``culture.json`` naming the design: the
    ``calibration_electrodes`` (set A, stimulated in the calibration session at
    ``calibration_amplitudes_uA``), the ``heldout_electrodes`` (set B, stimulated only in the
    held-out session, at every ``truth_amplitudes_uA``), the
    ``heldout_amplitudes_on_calibration_electrodes_uA`` (set A in the held-out session),
    ``phase_us``, ``truth_repeats`` (pulses per held-out condition), optionally ``window_s`` (the
    response window, s; default 2-100 ms) and ``seed``; ``what`` names the simulator in the
    description (default: ``culture.json``'s ``simulator``). The held-out session's responses are the
    truth; its halves alternate the pulses of each condition."""
    import organoid_sim
    from organoid_sim import stats

    folder = Path(folder)
    missing = [f for f in (*FOLDER_FILES, *(("heldout.h5",) if with_truth else ())) if not (folder / f).exists()]
    if missing:
        raise SystemExit(f"{folder}: a culture folder needs {', '.join(FOLDER_FILES)} and heldout.h5; missing "
                         f"{', '.join(missing)}")
    meta = json.loads((folder / "culture.json").read_text())
    absent = [k for k in FOLDER_KEYS if k not in meta]
    if absent:
        raise SystemExit(f"{folder / 'culture.json'}: missing keys {', '.join(absent)}")
    window = tuple(float(x) for x in meta.get("window_s", SECOND_WINDOW))
    amps = np.asarray(meta["truth_amplitudes_uA"], float)
    unseen = np.asarray(meta["heldout_amplitudes_on_calibration_electrodes_uA"], float)
    set_a, set_b = (np.asarray(meta[k], np.int64) for k in ("calibration_electrodes", "heldout_electrodes"))
    he = np.concatenate([np.repeat(set_b, len(amps)), np.repeat(set_a, len(unseen))])
    ha = np.concatenate([np.tile(amps, len(set_b)), np.tile(unseen, len(set_a))])
    truth = halves = None
    if with_truth:
        held = organoid_sim.load(folder / "heldout.h5")
        elec = np.asarray(held.electrodes.ids, np.int64)
        truth = as_truth(stats.evoked_responses(held, window=window, by_amplitude=True), elec, amps,
                         meta["phase_us"], meta["truth_repeats"])
        halves = tuple(as_truth(stats.evoked_responses(held, window=window, by_amplitude=True, stim=part),
                                elec, amps, meta["phase_us"], meta["truth_repeats"] // 2)
                       for part in split_pulses(held.stim))
    name = name or folder.name
    what = what or meta.get("simulator", "a culture folder")
    return Culture(name, organoid_sim.load(folder / "spontaneous.h5"), organoid_sim.load(folder / "calibration.h5"),
                   truth, halves, window, set_a, np.asarray(meta["calibration_amplitudes_uA"], float),
                   f"{what} (seed {meta.get('seed', '?')}), {folder}", he, ha)


def _generate_second(py: str, folder: Path, seed: int) -> None:
    """Run ``benchmarks/cultures/second.py`` into ``folder`` under an exclusive lock
    (``folder.lock``): two benchmark runs started side by side used to build Brian2's code in one
    cache at once and fail; now the second waits, and finds the culture made (the script skips
    the sessions already written, each written atomically, so an interrupted run resumes)."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder.parent / f"{folder.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            subprocess.run([py, str(ROOT / "benchmarks" / "cultures" / "second.py"), "--out", str(folder),
                            "--seed", str(seed)], check=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def split_pulses(stim):
    """Two halves of ``stim``: alternate pulses of each (electrode, amplitude) condition, in time order."""
    keys = np.stack([stim.electrode.astype(float), stim.amplitude], 1)
    _, group = np.unique(keys, axis=0, return_inverse=True)
    group = group.ravel()
    order = np.argsort(stim.time, kind="stable")
    rank = np.zeros(len(stim), np.int64)
    seen: dict[int, int] = {}
    for k in order:
        rank[k] = seen.get(int(group[k]), 0)
        seen[int(group[k])] = rank[k] + 1
    return stim.take(rank % 2 == 0), stim.take(rank % 2 == 1)


def load_culture(name: str, samples: Path, progress: bool, with_truth: bool = True, folder: Path | None = None) -> Culture:
    """``ours`` or ``second`` (``with_truth=False``: the second culture without its held-out session);
    with ``folder``, that culture folder (:func:`load_folder`) whatever ``name`` says."""
    if folder is not None:
        return load_folder(Path(folder), with_truth=with_truth)
    if name == "ours":
        return load_ours(samples, progress)
    if name == "second":
        return load_second(OUT / "second", with_truth=with_truth)
    raise SystemExit(f"--culture must be ours or second, got {name!r}")
