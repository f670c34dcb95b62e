"""Repeated trials of one protocol on a fitted model: independent seeds, one recording per trial.

A trial is one ``model.stimulate(protocol, seed=s)`` run from the model's resting state; trial ``k``
gets the ``k``-th seed drawn from ``numpy.random.SeedSequence(seed)``, so the same ``seed`` gives the
same trials on the same device, and trial ``k`` does not depend on how many trials are run.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..events import StimEvents
from ..recording import SpikeRecording
from .protocol import as_events


def trial_seeds(seed: int, n_trials: int) -> list[int]:
    """``n_trials`` independent integer seeds derived from ``seed`` (``SeedSequence.spawn``)."""
    if n_trials < 1:
        raise ValueError(f"n_trials must be >= 1, got {n_trials}")
    children = np.random.SeedSequence(int(seed)).spawn(int(n_trials))
    return [int(c.generate_state(1, dtype=np.uint32)[0]) for c in children]


def run_trials(model: Any, protocol, n_trials: int, seed: int = 0, *, device_profile=None,
               progress: bool = True, **stimulate_kwargs) -> list[SpikeRecording]:
    """Run ``protocol`` ``n_trials`` times on ``model`` with independent seeds.

    ``protocol``: a :class:`~organoid_sim.stimulation.Protocol`, any object with ``to_events()`` and
    ``duration_s`` (seconds), or a bare ``StimEvents``. ``device_profile`` (optional) validates the
    protocol first. Extra keyword arguments go to ``model.stimulate``. Returns one
    :class:`SpikeRecording` per trial, each spanning ``[0, duration_s]`` s with the events in ``stim``
    and ``metadata["trial"]`` / ``metadata["trial_seed"]`` set. Ctrl-C stops between trials and
    returns nothing half-written (the exception propagates).
    """
    if not hasattr(model, "stimulate"):
        raise TypeError(f"{type(model).__name__} has no stimulate(protocol, seed=...) method; "
                        "use a SpikingNetworkModel (organoid_sim.models)")
    if device_profile is not None:
        if isinstance(protocol, StimEvents):
            raise ValueError("device_profile validation needs a Protocol, not bare StimEvents")
        device_profile.validate(protocol)
    as_events(protocol)  # fail early on an object that is not a protocol
    seeds = trial_seeds(seed, n_trials)
    out = []
    for k, s in enumerate(_progress(seeds, progress, "trials")):
        rec = model.stimulate(protocol, seed=s, **stimulate_kwargs)
        out.append(rec.with_metadata(trial=k, trial_seed=s))
    return out


def concat_trials(trials: list[SpikeRecording]) -> SpikeRecording:
    """Join trial recordings end to end (each shifted to start where the previous one stopped), so
    evoked-response statistics pool every trial; ``metadata["trial_starts_s"]`` lists the starts (s)."""
    if not trials:
        raise ValueError("concat_trials needs at least one trial recording")
    starts = np.concatenate([[trials[0].t_start],
                             trials[0].t_start + np.cumsum([t.duration for t in trials[:-1]])])
    joined = trials[0].concat(*trials[1:])
    md = {k: v for k, v in joined.metadata.items() if k not in ("trial", "trial_seed")}
    return joined.replace(metadata={**md, "n_trials": len(trials), "trial_starts_s": starts.tolist(),
                                    "trial_seeds": [t.metadata.get("trial_seed") for t in trials]})


def _progress(items, enabled: bool, desc: str):
    if not enabled:
        return items
    from tqdm.auto import tqdm

    return tqdm(items, desc=desc, unit="trial")
