"""Shared by the example scripts: the bundled sample and a quickly fitted model.

The sample lives in ``data_samples/`` (written by ``python -m organoid_sim.synthetic --out
data_samples``): ``spontaneous.nwb``, ``stim_session.nwb`` and ``true_responses.json``. A missing
piece stops the example with a message saying how to make it; nothing is ever faked.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path

import organoid_sim

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "data_samples"

#: fit settings: (training seconds, SpikingNetworkModel fit options); quick keeps tests and CI short
FIT_QUICK = dict(seconds=60.0, options=dict(max_epochs=4, refine_steps=0, calibration_rounds=0))
FIT_FULL = dict(seconds=None, options=dict(max_epochs=20, refine_steps=20, refine_batch=8, calibration_rounds=1))


class ExampleError(SystemExit):
    """Stops an example with a one-line explanation (exit status 2)."""

    def __init__(self, message: str) -> None:
        print(f"error: {message}", file=sys.stderr)
        super().__init__(2)


@dataclass
class Sample:
    """The bundled virtual-organoid sample: spontaneous recording, calibration session, true responses."""

    spontaneous: organoid_sim.SpikeRecording
    session: organoid_sim.SpikeRecording | None
    truth: object | None   # organoid_sim.synthetic.TrueResponses
    folder: Path


def make_out(path: Path | str) -> Path:
    """Create the output folder ``path`` (with its parents); a path that cannot be one stops the example."""
    out = Path(path)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:   # an existing file, a file among the parents, no permission
        raise ExampleError(f"--out {out}: cannot be used as the output folder ({exc.strerror or exc})") from None
    return out


def load_sample(folder: Path | str | None = None) -> Sample:
    """Load ``data_samples/`` (or ``folder``); the spontaneous recording is required."""
    folder = Path(folder) if folder else SAMPLES
    spont = folder / "spontaneous.nwb"
    if not spont.exists():
        raise ExampleError(f"{spont} not found: the bundled sample is missing. Generate it with "
                           f"`python -m organoid_sim.synthetic --out {folder}` (a few minutes).")
    rec = organoid_sim.load(spont)
    session = organoid_sim.load(folder / "stim_session.nwb") if (folder / "stim_session.nwb").exists() else None
    truth = None
    if (folder / "true_responses.json").exists():
        from organoid_sim.synthetic import load_true_responses

        truth = load_true_responses(folder / "true_responses.json")
    return Sample(rec, session, truth, folder)


def fit_model(rec: organoid_sim.SpikeRecording, *, quick: bool, seed: int = 0, progress: bool = True):
    """A SpikingNetworkModel fitted to ``rec`` (quick: its first 60 s and few epochs); returns (model, seconds)."""
    from organoid_sim.models import SpikingNetworkModel

    settings = FIT_QUICK if quick else FIT_FULL
    if settings["seconds"] and rec.duration > settings["seconds"]:
        rec = rec.time_slice(rec.t_start, rec.t_start + settings["seconds"])
    t0 = time.perf_counter()
    model = SpikingNetworkModel(n_hidden=0, seed=seed, fit_seed=seed, progress=progress, **settings["options"]).fit(rec)
    return model, time.perf_counter() - t0


def get_model(model_dir: str | None, *, quick: bool, seed: int = 0, progress: bool = True):
    """Load a saved model from ``model_dir``, or fit one on the bundled sample."""
    if model_dir:
        if not Path(model_dir).is_dir():
            raise ExampleError(f"{model_dir}: not a model folder (write one with model.save(dir) or `make demo`)")
        from organoid_sim.model_files import ModelFileError

        try:
            return organoid_sim.load_model(model_dir)
        except (FileNotFoundError, ModelFileError) as exc:   # e.g. a folder without model.json
            raise ExampleError(str(exc)) from None
    model, _ = fit_model(load_sample().spontaneous, quick=quick, seed=seed, progress=progress)
    return model
