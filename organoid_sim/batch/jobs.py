"""One fitting job: a (file, well) pair, its seed, its output folder and the function that runs it.

A job's folder ``out_dir/<file stem>/<well>/`` holds ``model/`` (the saved model), ``result.json``
(status, figures, error) and any figures. It is built in a hidden temporary folder beside it and
renamed into place, so a folder under its final name is always complete, whatever interrupts the
job (an error, Ctrl-C, a worker killed by the cluster). A rerun replaces an earlier folder by
renames only (the old one aside, the new one in, then the old one removed), so an interrupted rerun
leaves the old complete folder or the new one; :func:`clean_partial` puts back an old folder that
a worker killed between the two renames left aside.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import inspect
import json
import math
import os
import shutil
import socket
import time
import traceback
import uuid
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

from ..atomic import atomic_write_text

__all__ = ["Job", "plan_jobs", "run_job", "job_seed", "read_result", "split_options", "NO_WELL",
           "RESULT_JSON", "MODEL_DIR", "clean_partial", "same_job", "load_job_recording"]

#: folder name of the job of a file that holds a single recording (no wells)
NO_WELL = "recording"
RESULT_JSON = "result.json"
MODEL_DIR = "model"
_TMP_MARK = ".tmp-"
#: an earlier job folder renamed aside while its replacement is renamed in
_OLD_MARK = ".old-"


@dataclass(frozen=True)
class Job:
    """A fitting job: ``path`` (recording file), ``well`` (None for a file without wells), ``seed``.

    ``name`` is the output sub-folder, ``<file stem>/<well>``.
    """

    path: str
    well: str | None
    seed: int

    @property
    def name(self) -> str:
        """Output sub-folder, relative to the output directory (``"<stem>/<well>"``)."""
        return f"{Path(self.path).stem}/{self.well or NO_WELL}"

    @property
    def label(self) -> str:
        """Short text for progress lines: ``"<file name> <well>"``."""
        return f"{Path(self.path).name} {self.well or ''}".strip()


def job_seed(seed: int, path: str, well: str | None, derive: bool = False) -> int:
    """The seed of one job.

    Parameters
    ----------
    seed : int
        Base seed of the run.
    path : str
        Recording file; only its name (not its folder) enters a derived seed, so moving the
        files keeps the seeds.
    well : str or None
        Well of the job.
    derive : bool
        False: every job uses ``seed`` itself, so a job's model equals a single fit of that well
        with ``seed``. True: a 31-bit seed from SHA-256 of ``(seed, file name, well)``, a different
        random stream for every culture.

    Returns
    -------
    int
        The job's seed.
    """
    if not derive:
        return int(seed)
    digest = hashlib.sha256(f"{int(seed)}/{Path(path).name}/{well or ''}".encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF


def _wells_of(path: str, wells) -> list[str | None]:
    from ..io import list_wells

    available = list_wells(path)
    if not available:   # a file with a single recording (NWB, MEA-NAP .mat, ...)
        return [None]
    if wells is None or wells == "all":
        return list(available)
    # "A1," or "A1, ,B2": empty names are separators, not wells
    asked = [w.strip() for w in wells.split(",") if w.strip()] if isinstance(wells, str) else [str(w) for w in wells]
    missing = [w for w in asked if w not in available]
    if missing:
        raise ValueError(f"{path}: well(s) {', '.join(missing)} not in the file; wells: {', '.join(available)}")
    return asked


def plan_jobs(sources, wells="all", seed: int = 0, derive_seeds: bool = False) -> list[Job]:
    """The jobs of ``sources``: every requested well of every file, in file order.

    Parameters
    ----------
    sources : str, path or list of them
        Recording files (any format :func:`organoid_sim.load` reads). A file with wells (Axion
        plate, MaxTwo) gives one job per well, a file without wells one job.
    wells : "all", str or list of str
        ``"all"`` (default) or the wells to fit, e.g. ``"A1,B2"`` or ``["A1", "B2"]``; applies to
        every file that has wells (each must hold them all).
    seed : int
        Base seed (see :func:`job_seed`).
    derive_seeds : bool
        Give every job its own seed derived from ``(seed, file name, well)``.

    Returns
    -------
    list of Job
        One job per (file, well), duplicates removed.

    Raises
    ------
    FileNotFoundError
        A source does not exist.
    ValueError
        Two files share a stem (their output folders would collide), or a requested well is missing.
    """
    if isinstance(sources, (str, os.PathLike)):
        sources = [sources]
    jobs, stems = [], {}
    for src in sources:
        if not Path(src).is_file():
            raise FileNotFoundError(f"{src}: no such recording file")
        path = str(Path(src).resolve())   # workers may run elsewhere: absolute paths on a shared disk
        stem = Path(path).stem
        if stems.setdefault(stem, path) != path:
            raise ValueError(f"{path} and {stems[stem]} share the name {stem!r}: their output folders would "
                             "collide; fit them into different output directories")
        for well in _wells_of(path, wells):
            jobs.append(Job(path, well, job_seed(seed, path, well, derive_seeds)))
    return list(dict.fromkeys(jobs))


def split_options(options: dict) -> tuple[dict, dict]:
    """Split fitting options into the network's constructor arguments and ``fit`` arguments.

    An option the constructor of :class:`~organoid_sim.models.SpikingNetworkModel` takes goes
    there, the rest to ``fit``; so options reach the estimator wherever it accepts them.

    Parameters
    ----------
    options : dict
        Option name -> value.

    Returns
    -------
    (dict, dict)
        ``(model_options, fit_options)``.
    """
    from ..models import SpikingNetworkModel

    init = inspect.signature(SpikingNetworkModel.__init__).parameters
    model = {k: v for k, v in options.items() if k in init and k != "self"}
    return model, {k: v for k, v in options.items() if k not in model}


def _clean_json(o):
    if isinstance(o, float) and not math.isfinite(o):
        return None
    if isinstance(o, dict):
        return {str(k): _clean_json(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_clean_json(v) for v in o]
    if hasattr(o, "item") and callable(o.item):   # numpy / torch scalars
        return _clean_json(o.item())
    return o


def write_json(path: Path, doc: dict) -> None:
    """Write ``doc`` as JSON atomically (NaN and infinities as null)."""
    atomic_write_text(path, json.dumps(_clean_json(doc), indent=2, default=str) + "\n")


def read_result(job_dir: Path) -> dict | None:
    """The ``result.json`` of a job folder, or None when there is none (or it cannot be read)."""
    try:
        return json.loads((Path(job_dir) / RESULT_JSON).read_text())
    except (OSError, ValueError):
        return None


@contextlib.contextmanager
def _job_folder(final: Path) -> Iterator[Path]:
    """A hidden temporary folder that replaces ``final`` on success and is removed on any error.

    An earlier ``final`` (a failed or differently configured attempt) is renamed aside, the new
    folder renamed in, and only then the old one removed; when the new one does not get in, the old
    one is renamed back. ``final`` is thus at every moment the old complete folder or the new one
    (a process killed between the two renames leaves the old one aside for :func:`clean_partial`).
    """
    final.parent.mkdir(parents=True, exist_ok=True)
    tag = uuid.uuid4().hex[:12]
    tmp = final.parent / f".{final.name}{_TMP_MARK}{tag}"
    aside = final.parent / f".{final.name}{_OLD_MARK}{tag}"
    tmp.mkdir()
    try:
        yield tmp
        if final.exists():
            os.rename(final, aside)
        os.rename(tmp, final)
    except BaseException:
        if aside.exists() and not final.exists():
            os.rename(aside, final)       # the new folder never got in: the old one goes back
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        if final.exists():
            shutil.rmtree(aside, ignore_errors=True)


def clean_partial(out_dir, jobs=None) -> int:
    """Remove the temporary folders of jobs that never finished (a killed worker leaves its own),
    and put back an earlier job folder that a worker killed while replacing it left aside (the job
    folder missing); other folders left aside are removed.

    Only the folders of ``jobs`` (default: every job) are touched, so runs over
    different wells of one output directory (e.g. the tasks of a SLURM array) leave each other
    alone. Call it only while none of ``jobs`` runs. Returns how many were removed or put back.
    """
    out_dir = Path(out_dir)
    # names escaped: a stem like "p[1]" is no pattern (it matched the folder "p1" of another file)
    prefixes = ["*/.*"] if jobs is None else [
        f"{glob.escape(str(Path(j.name).parent))}/.{glob.escape(Path(j.name).name)}" for j in jobs]
    n = 0
    for prefix in prefixes:
        for old in sorted(out_dir.glob(prefix + _OLD_MARK + "*")):
            if old.is_dir():
                final = old.parent / old.name[1:].rsplit(_OLD_MARK, 1)[0]
                if final.exists():
                    shutil.rmtree(old, ignore_errors=True)
                else:
                    os.rename(old, final)
                n += 1
        for tmp in out_dir.glob(prefix + _TMP_MARK + "*"):
            if tmp.is_dir():
                shutil.rmtree(tmp, ignore_errors=True)
                n += 1
    return n


@contextlib.contextmanager
def _torch_threads(n: int | None) -> Iterator[None]:
    """Run with ``n`` torch threads (a fixed count keeps float sums identical in and out of workers)."""
    if n is None:
        yield
        return
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _provenance(model) -> dict:
    # fitted state is `provenance_` on scikit-learn-shaped estimators, `provenance` before
    return getattr(model, "provenance_", None) or getattr(model, "provenance", None) or {}


def _fit_figures(model) -> dict:
    prov = _provenance(model)
    m = prov.get("metrics", {})
    return {"val_bits": m.get("final_val_bits", m.get("best_val_bits")), "fit_s": m.get("fit_s"),
            "uncoupled": m.get("uncoupled"), "refinement_rejected": m.get("refinement_rejected"),
            "in_sample": prov.get("self_check")}   # the fit's self-check (None with self_check=False)


def _network_options(job: Job, options: dict) -> tuple[dict, dict]:
    """``(constructor, fit)`` arguments of the job's network: the job's seed for the model and its
    fitting, no progress bar, then the user's options."""
    from ..models import SpikingNetworkModel

    init = inspect.signature(SpikingNetworkModel.__init__).parameters
    opts = {"seed": job.seed, "progress": False, **options}
    if "fit_seed" in init:   # fitting options live in the constructor
        opts.setdefault("fit_seed", job.seed)
    model_opts, fit_opts = split_options(opts)
    if "max_epochs" not in init:   # fitting options (and the fit's seed) are arguments of fit
        fit_opts.setdefault("seed", job.seed)
    return model_opts, fit_opts


def load_job_recording(job: Job, trim_silence: bool = True):
    """The recording of ``job`` (cut to its first..last spike unless ``trim_silence=False``)."""
    from ..io import load

    rec = load(job.path, well=job.well, progress=False)
    return rec.trim_silence() if trim_silence else rec


def _fit_and_save(job: Job, folder: Path, options: dict, evaluate: bool, split: float, trim_silence: bool,
                  figures: Callable | None, base: dict) -> dict:
    from ..evaluation import evaluate as evaluate_recording   # batch sits above evaluation
    from ..models import SpikingNetworkModel

    rec = load_job_recording(job, trim_silence)
    model_opts, fit_opts = _network_options(job, options)
    model = SpikingNetworkModel(**model_opts)
    with warnings.catch_warnings(record=True) as caught:   # kept in the result, not printed by every worker
        warnings.simplefilter("always")
        model.fit(rec, **fit_opts)
    model.save(folder / MODEL_DIR)
    out = {"n_units": int(rec.n_units), "n_spikes": int(rec.n_spikes), "t_start": float(rec.t_start),
           "t_stop": float(rec.t_stop), "duration_s": float(rec.duration), **_fit_figures(model),
           "warnings": [str(w.message) for w in caught]}
    if evaluate:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")   # the evaluation's notes say what its fits warned about
            # the same network as the saved one (evaluate's own default has hidden neurons)
            report = evaluate_recording(
                rec, split=split, seed=job.seed, trim_silence=False,
                network_options={"n_hidden": model.n_hidden, **model_opts},
                fit_options={k: v for k, v in fit_opts.items() if k not in ("seed", "progress")})
        out["evaluation"] = _clean_json(report.to_dict())
        from .checks import fidelity_checks

        out["checks"] = fidelity_checks(out["evaluation"])
        judged = [v for v in out["checks"].values() if v is not None]
        out["passed"] = bool(all(judged)) if judged else None
    if figures is not None:
        try:
            # the job's identity too: the report names the file and well, its raster uses the job's seed
            drawn = {**base, "status": "ok", **out}
            out["figures"] = [str(p) for p in (figures(folder, rec, model, drawn) or [])]
        except Exception as exc:   # the model and its figures are saved; a drawing problem is only noted
            out["warnings"].append(f"figures failed: {type(exc).__name__}: {exc}")
    return out


def run_job(job: Job, out_dir, options: dict | None = None, *, evaluate: bool = False, split: float = 0.75,
            trim_silence: bool = True, figures: Callable | None = None, torch_threads: int | None = 1) -> dict:
    """Fit (and optionally evaluate) one job and write its folder; the same function runs in
    workers and in serial mode.

    Parameters
    ----------
    job : Job
        What to fit.
    out_dir : str or path
        Output directory; the job writes ``out_dir/<job.name>/`` (``model/``, ``result.json``).
    options : dict, optional
        Network options: constructor arguments of :class:`SpikingNetworkModel` and arguments of
        its ``fit`` (split by :func:`split_options`), e.g. ``{"n_hidden": 8, "max_epochs": 30}``.
    evaluate : bool
        Also run :func:`organoid_sim.evaluate` (its own fits on the first ``split``, judged on the
        rest) and judge it with :func:`~organoid_sim.batch.checks.fidelity_checks`.
    split : float
        Fitting fraction of the evaluation.
    trim_silence : bool
        Cut the recording to its first..last spike before fitting (default True).
    figures : callable, optional
        ``figures(folder, recording, model, result) -> list of paths`` writes per-well figures into
        the job's folder before it is renamed into place (the CLI passes one that writes
        ``report.html``); must be importable by name in the workers.
    torch_threads : int or None
        Torch threads during the job (default 1: one job per core; also makes the job's floating-point
        sums the same in a worker and in-process).

    Returns
    -------
    dict
        The result written to ``result.json``: ``status`` (``"ok"`` or ``"error"``), ``job``,
        ``file``, ``well``, ``seed``, ``options``, the fit's figures (``val_bits`` held-out
        bits/spike of the fit's validation part, ``fit_s`` s, ...), ``evaluation`` and
        ``checks``/``passed`` with ``evaluate``, ``error`` (``type``, ``message``, ``traceback``) on
        failure, ``wall_s`` and ``cpu_s`` (wall-clock and CPU seconds of the job), ``host``.
    """
    options = dict(options or {})
    final = Path(out_dir) / job.name
    base = {"job": job.name, "file": job.path, "well": job.well, "seed": job.seed,
            "options": _clean_json(options), "evaluate": bool(evaluate), "split": split,
            "trim_silence": bool(trim_silence)}
    t0, c0 = time.perf_counter(), time.process_time()
    with _job_folder(final) as folder, _torch_threads(torch_threads):
        try:
            result = {**base, "status": "ok", **_fit_and_save(job, folder, options, evaluate, split, trim_silence,
                                                              figures, base)}
        except Exception as exc:   # a failed job records why; the others go on (Ctrl-C still stops all)
            shutil.rmtree(folder / MODEL_DIR, ignore_errors=True)
            result = {**base, "status": "error",
                      "error": {"type": type(exc).__name__, "message": str(exc),
                                "traceback": traceback.format_exc(limit=8)}}
        result.update(wall_s=time.perf_counter() - t0, cpu_s=time.process_time() - c0, host=socket.gethostname())
        result = _clean_json(result)
        write_json(folder / RESULT_JSON, result)
    return result


def same_job(result: dict | None, job: Job, options: dict, evaluate: bool, split: float,
             trim_silence: bool) -> bool:
    """Whether a stored ``result`` is a finished run of this job with these settings (then it is skipped).

    A run with ``evaluate`` also covers a later run without it; the file is compared by name (its
    folder may have moved).
    """
    if not result or result.get("status") != "ok":
        return False
    if Path(str(result.get("file"))).name != Path(job.path).name or result.get("well") != job.well:
        return False
    if result.get("seed") != job.seed or result.get("options") != _clean_json(dict(options)):
        return False
    if result.get("trim_silence") != bool(trim_silence):
        return False
    if evaluate:
        return bool(result.get("evaluate")) and result.get("split") == split
    return True
