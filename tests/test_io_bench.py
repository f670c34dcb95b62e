"""The I/O benchmark script runs end to end (tiny sizes; the real figures come from running it)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_io.py"


@pytest.mark.slow
def test_bench_io_runs_and_prints_json():
    out = subprocess.run([sys.executable, str(BENCH), "--json", "--repeats", "1", "--units", "20", "--spikes",
                          "2000", "--chunk-hours", "0.01"], capture_output=True, text=True, check=True, timeout=300)
    res = json.loads(out.stdout.strip().splitlines()[-1])
    assert res["n_units"] == 20 and res["n_spikes"] == 2000
    assert res["chunks"]["counted"] == res["chunks"]["n_spikes"]  # every spike lands in one chunk
    assert set(res["targets_met"]) == {"neo_10x", "pynwb_3x", "memory_2x", "chunks_under_1gb"}
