"""Runs the cl-sdk tests (tests/test_cl_sdk_scripts.py) in the Python 3.12 venv ``.venv-cl`` that
``make cl-env`` builds, on a model fitted here and saved, with model.stimulate()'s evoked response
(the torch model) as the reference. Skips with one line when there is no ``.venv-cl``."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
from cl_models import fitted, response_probability

from organoid_sim.events import StimEvents

ROOT = Path(__file__).resolve().parents[1]
CL_PYTHON = ROOT / ".venv-cl" / "bin" / "python"
pytestmark = pytest.mark.usefixtures("one_thread")


def _reference(model, path: Path, duration_s: float = 40.0) -> None:
    """model.stimulate() with 4 pulses/s on channel 27 (1 uA, 160 us): response probabilities."""
    times = 0.25 + 0.25 * np.arange(int(duration_s * 4) - 2)
    chans = [27, 26, 9]
    ev = StimEvents.from_columns(times, 27, -1.0, 160.0, 2)
    p, base = [], []
    for seed in (0, 1):
        rec = model.stimulate(ev, seed=seed)
        t = np.concatenate(rec.spike_times)
        ch = np.repeat(rec.electrode_ids, [len(x) for x in rec.spike_times])
        p.append(response_probability(times, t, ch, chans))
        base.append(response_probability(times - 0.1, t, ch, chans))
    path.write_text(json.dumps({"channels": chans, "probability": np.mean(p, 0).tolist(),
                                "baseline": np.mean(base, 0).tolist(), "n_pulses": 2 * len(times),
                                "duration_s": duration_s}))


def test_cl_sdk_scripts_on_a_fitted_model(tmp_path):
    if not CL_PYTHON.exists():
        pytest.skip("no .venv-cl (Python 3.12 + cl-sdk; `make cl-env` builds it where pyenv has 3.12): "
                    "cl-sdk tests skipped")
    model = fitted(seed=0)
    model.save(tmp_path / "model")
    _reference(model, tmp_path / "reference.json")
    env = {**os.environ, "ORGANOID_SIM_CL_MODEL": str(tmp_path / "model"),
           "ORGANOID_SIM_CL_REFERENCE": str(tmp_path / "reference.json"), "PYTHONPATH": str(ROOT)}
    for key in ("CL_SDK_DATA_SOURCE", "CL_SDK_DATA_SOURCE_CONFIG", "CL_SDK_ACCELERATED_TIME"):
        env.pop(key, None)
    out = subprocess.run([str(CL_PYTHON), "-m", "pytest", "-q", "-p", "no:cacheprovider", "-s",
                          str(ROOT / "tests" / "test_cl_sdk_scripts.py")],
                         capture_output=True, text=True, env=env, cwd=tmp_path, timeout=540)
    tail = (out.stdout + out.stderr)[-6000:]
    assert out.returncode == 0, tail
    assert " passed" in out.stdout and "skipped" not in out.stdout.splitlines()[-1], tail
