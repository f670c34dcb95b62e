"""`fit_many`: fit (and evaluate) many (file, well) jobs on Dask, or serially in-process."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

from .jobs import (RESULT_JSON, Job, _job_folder, clean_partial, plan_jobs, read_result, run_job, same_job,
                   write_json)
from .results import write_tables

__all__ = ["fit_many", "SERIAL"]

#: ``client=SERIAL`` runs every job in this process, one after the other
SERIAL = "serial"


def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:   # not on Linux
        return os.cpu_count() or 1


def _open_client(client, workers: int | None):
    """``(client, to_close)``: the Dask client to submit to and what this run must close afterwards."""
    import dask
    from distributed import Client, LocalCluster

    if client is None:
        # one process per core, one thread each: a fit is single-threaded torch and NumPy work
        # (Dask's nanny already sets OMP/MKL/OpenBLAS threads to 1 in its workers; numba's too.) Its
        # MALLOC_TRIM_THRESHOLD_ is left out: it fixes glibc's mmap threshold, and a fit's many large
        # temporary arrays then cost about twice the CPU time (14 against 25-29 CPU s for a DIV12 well)
        environ = {k: v for k, v in dask.config.get("distributed.nanny.pre-spawn-environ", {}).items()
                   if k != "MALLOC_TRIM_THRESHOLD_"}
        with dask.config.set({"distributed.nanny.pre-spawn-environ": environ}):
            cluster = LocalCluster(n_workers=int(workers or _cpu_count()), threads_per_worker=1, processes=True,
                                   dashboard_address=":0", env={"NUMBA_NUM_THREADS": "1"})
        c = Client(cluster)
        return c, [c, cluster]
    if isinstance(client, str):
        c = Client(client)
        return c, [c]
    if isinstance(client, Client):
        return client, []
    raise TypeError(f"client must be None, 'serial', a scheduler address or a distributed.Client, "
                    f"got {type(client).__name__}")


def _figures_line(result: dict) -> str:
    if result.get("status") != "ok":
        err = result.get("error") or {}
        return f"failed, {err.get('type')}: {err.get('message')}"
    parts = []
    if result.get("val_bits") is not None:
        parts.append(f"{result['val_bits']:.3f} bits/spike (validation)")
    net = (result.get("evaluation") or {}).get("network") or {}
    if net.get("bits_per_spike") is not None:
        parts.append(f"held-out {net['bits_per_spike']:.3f} bits/spike")
    if result.get("passed") is not None:
        parts.append("checks passed" if result["passed"] else "checks missed: " + ", ".join(
            k for k, v in (result.get("checks") or {}).items() if v is False))
    if result.get("wall_s") is not None:
        parts.append(f"{result['wall_s']:.1f} s")
    return ", ".join(parts)


def _record_failure(job: Job, out_dir: Path, exc: BaseException, settings: dict) -> dict:
    """Write the result of a job that never returned (e.g. its workers kept dying)."""
    result = {"job": job.name, "file": job.path, "well": job.well, "seed": job.seed, **settings,
              "status": "error", "error": {"type": type(exc).__name__, "message": str(exc)}}
    with _job_folder(out_dir / job.name) as folder:
        write_json(folder / RESULT_JSON, result)
    return result


class _Progress:
    """The bar over jobs, a line of figures per finished job, and the results table kept current."""

    def __init__(self, out_dir: Path, jobs: list[Job], done: dict, progress: bool) -> None:
        from tqdm.auto import tqdm

        self.out_dir, self.jobs, self.results = out_dir, jobs, dict(done)
        self.bar = tqdm(total=len(jobs), initial=len(done), desc="fit-plate", unit="job", disable=not progress)
        self.show = progress
        if done and progress:
            self.bar.write(f"{len(done)} of {len(jobs)} jobs already finished in {out_dir}: skipped")
        write_tables(out_dir, self.ordered())

    def ordered(self) -> list[dict]:
        return [self.results[j] for j in self.jobs if j in self.results]

    def add(self, job: Job, result: dict) -> None:
        self.results[job] = {**result, "skipped": False}
        write_tables(self.out_dir, self.ordered())
        if self.show:
            self.bar.write(f"{job.label}: {_figures_line(result)}")
        self.bar.set_postfix_str(f"{job.label} {result.get('status')}", refresh=False)
        self.bar.update(1)

    def close(self) -> None:
        self.bar.close()


def _run_serial(todo: list[Job], out_dir: Path, kwargs: dict, prog: _Progress) -> None:
    for job in todo:
        prog.add(job, run_job(job, out_dir, **kwargs))


def _run_dask(todo: list[Job], out_dir: Path, kwargs: dict, prog: _Progress, client, workers, settings) -> None:
    from distributed import as_completed

    c, to_close = _open_client(client, workers)
    owned_cluster = client is None
    futures = {}
    try:
        for job in todo:
            # pure=False: a job writes files, so the scheduler must never skip it as already computed
            futures[c.submit(run_job, job, out_dir, pure=False, key=f"fit-{job.name}-{os.urandom(4).hex()}",
                             **kwargs)] = job
        for fut in as_completed(futures):
            job = futures[fut]
            try:
                result = fut.result()
            except Exception as exc:   # e.g. KilledWorker: the job took down every worker that tried it
                result = _record_failure(job, out_dir, exc, settings)
            prog.add(job, result)
        finished = True
    except BaseException:
        finished = False
        c.cancel(list(futures))
        raise
    finally:
        for obj in to_close:
            obj.close()
        # every job of this run has ended, or the workers are gone with our cluster: what a killed
        # worker left half-written is an orphan (on a shared cluster, a cancelled job may still run)
        if finished or owned_cluster:
            clean_partial(out_dir, todo)


def fit_many(sources, out_dir, client=None, *, wells="all", workers: int | None = None, seed: int = 0,
             derive_seeds: bool = False, evaluate: bool = False, split: float = 0.75, trim_silence: bool = True,
             figures: Callable | None = None, progress: bool = True, torch_threads: int | None = 1,
             **options) -> list[dict]:
    """Fit a spiking network model to every (file, well) of ``sources``, on Dask or serially.

    Each job writes ``out_dir/<file stem>/<well>/`` (``model/`` and ``result.json``) in one
    rename, so a job folder is either complete or absent. A finished job (``result.json`` with
    status ``"ok"`` and the same file, well, seed and options) is skipped on a re-run, so an
    interrupted run resumes; a failed job records its error (type, message, traceback) and the
    others go on; a job whose worker dies is re-run by the scheduler on another worker.
    ``out_dir/results.json`` and ``results.csv`` hold every result and are rewritten (atomically)
    as jobs finish.

    Parameters
    ----------
    sources : str, path or list of them
        Recording files; files with wells (Axion plates, MaxTwo) give one job per well.
    out_dir : str or path
        Output directory (created). On a cluster it must be a folder every worker can write.
    client : None, "serial", str or distributed.Client
        None: a :class:`distributed.LocalCluster` with ``workers`` processes (default: one per
        core) of one thread each, closed afterwards. ``"serial"``: every job in this process, one
        after the other (the same job function, hence the same models). A scheduler address
        (``"tcp://host:8786"``) or a ``Client`` (e.g. of a ``dask_jobqueue.SLURMCluster``) runs on
        that cluster.
    wells : "all", str or list of str
        Wells to fit in files with wells (default all), e.g. ``"A1,B2"``.
    workers : int, optional
        Worker processes of the local cluster; ``0`` runs serially.
    seed : int
        Base seed. By default every job uses it, so a job's model equals the single fit
        ``SpikingNetworkModel(seed=seed, ...).fit(recording, seed=seed, ...)`` of that well.
    derive_seeds : bool
        Give each job its own seed from ``(seed, file name, well)`` instead
        (:func:`~organoid_sim.batch.jobs.job_seed`).
    evaluate : bool
        Also judge each well with :func:`organoid_sim.evaluate` (fits on the first ``split``,
        judges on the rest; costs about two more network fits per well) and
        :func:`~organoid_sim.batch.checks.fidelity_checks`.
    split : float
        Fitting fraction of the evaluation.
    trim_silence : bool
        Cut each recording to its first..last spike (a plate's clock starts before its wells' spikes).
    figures : callable, optional
        Writes per-well figures into the job folder (see :func:`~organoid_sim.batch.jobs.run_job`).
    progress : bool
        A tqdm bar over jobs and a line of figures per finished job.
    torch_threads : int or None
        Torch threads of each job (default 1).
    **options
        Options of the network: constructor arguments of
        :class:`~organoid_sim.models.SpikingNetworkModel` (``n_hidden``, ``dt_ms``, ...) and
        arguments of its ``fit`` (``max_epochs``, ``refine_steps``, ``restarts``, ...).

    Returns
    -------
    list of dict
        One result per job, in job order (see :func:`~organoid_sim.batch.jobs.run_job`), each with
        ``skipped`` (True when it came from an earlier run).
    """
    if workers is not None and workers < 0:   # a local cluster without workers would wait for ever
        raise ValueError(f"workers must be >= 0 (0 runs serially), got {workers}")
    out_dir = Path(out_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    jobs = plan_jobs(sources, wells=wells, seed=seed, derive_seeds=derive_seeds)
    serial = client == SERIAL or (client is None and workers == 0)
    clean_partial(out_dir, jobs)   # left by an earlier run that was killed (no job of this run has started)
    done = {}
    for job in jobs:
        old = read_result(out_dir / job.name)
        if same_job(old, job, options, evaluate, split, trim_silence):
            done[job] = {**old, "skipped": True}
    todo = [j for j in jobs if j not in done]
    kwargs = dict(options=options, evaluate=evaluate, split=split, trim_silence=trim_silence, figures=figures,
                  torch_threads=torch_threads)
    settings = {"options": options, "evaluate": evaluate, "split": split, "trim_silence": trim_silence}
    prog = _Progress(out_dir, jobs, done, progress)
    try:
        if todo and serial:
            _run_serial(todo, out_dir, kwargs, prog)
        elif todo:
            _run_dask(todo, out_dir, kwargs, prog, client, workers, settings)
    finally:
        prog.close()
    return prog.ordered()
