"""docs/cluster.md's SLURM snippet: the part before its marker runs and makes the batch script it
promises (the rest needs a SLURM cluster)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[1] / "docs" / "cluster.md"
MARKER = "# ---- needs a SLURM cluster from here on"


def _slurm_snippet() -> str:
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)
    (block,) = [b for b in blocks if "SLURMCluster(" in b]
    assert MARKER in block, "the untested part of the snippet must stay marked"
    return block.split(MARKER)[0]


def test_slurm_snippet_generates_the_documented_job_script():
    pytest.importorskip("dask_jobqueue")
    ns: dict = {}
    exec(compile(_slurm_snippet(), str(DOC), "exec"), ns)   # noqa: S102 - our own documentation
    try:
        script = ns["script"]
    finally:
        ns["cluster"].close()
    for line in ("#SBATCH -p cpu", "#SBATCH -A mylab", "#SBATCH --cpus-per-task=4", "#SBATCH -t 02:00:00",
                 "source ~/organoid-sim/.venv/bin/activate"):
        assert line in script
    # four worker processes of one thread each, pointed at the cluster's scheduler
    worker = next(line for line in script.splitlines() if "dask_worker" in line or "dask worker" in line)
    assert "--nworkers 4" in worker and "--nthreads 1" in worker
    assert re.search(r"tcp://[\d.]+:\d+", worker)
