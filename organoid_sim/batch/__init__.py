"""Fit a whole plate, or a lab's archive, with one call: many (file, well) jobs on Dask.

::

    from organoid_sim.batch import fit_many

    results = fit_many(["plate_DIV12.h5"], "fits/", wells="all", evaluate=True)  # LocalCluster
    results = fit_many(paths, "fits/", client="tcp://scheduler:8786")           # any Dask cluster
    results = fit_many(paths, "fits/", client="serial")                         # in-process

Jobs are (file, well) pairs (:mod:`.jobs`); each writes ``out_dir/<file stem>/<well>/`` with the
model and ``result.json`` in one rename; finished jobs are skipped on a re-run; failures are
recorded and the others go on; the table ``results.csv``/``results.json`` is kept current
(:mod:`.results`); :mod:`.checks` judges evaluations against the fidelity bars.
"""

from .checks import BARS, fidelity_checks
from .jobs import NO_WELL, Job, job_seed, load_job_recording, plan_jobs, read_result, run_job
from .results import table_rows, write_tables
from .runner import SERIAL, fit_many

__all__ = ["fit_many", "SERIAL", "Job", "plan_jobs", "run_job", "job_seed", "read_result", "load_job_recording",
           "NO_WELL", "fidelity_checks", "BARS", "table_rows", "write_tables"]
