"""Repeated trials of one protocol on a fitted model: independent seeds, one recording per trial.

A trial is one run of the protocol from the model's resting state. Batched (the default for a
:class:`~organoid_sim.models.SpikingNetworkModel`), all trials are simulated side by side in one
call; otherwise trial ``k`` is ``model.stimulate(protocol, seed=s_k)`` with ``s_k`` the ``k``-th seed
of ``numpy.random.SeedSequence(seed)`` (:func:`trial_seeds`). The same ``seed`` gives the same
trials on the same device.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..events import StimEvents
from ..models.base import add_event_counts, counts_to_recording
from ..nn.observation import saturated_bins
from ..recording import SpikeRecording
from .protocol import as_events


def trial_seeds(seed: int, n_trials: int) -> list[int]:
    """``n_trials`` independent integer seeds derived from ``seed`` (``SeedSequence.spawn``)."""
    if n_trials < 1:
        raise ValueError(f"n_trials must be >= 1, got {n_trials}")
    children = np.random.SeedSequence(int(seed)).spawn(int(n_trials))
    return [int(c.generate_state(1, dtype=np.uint32)[0]) for c in children]


def run_trials(model: Any, protocol, n_trials: int, seed: int = 0, *, burn_in_s: float = 1.0,
               device_profile="auto", batched: bool | None = None, progress: bool = True,
               **stimulate_kwargs) -> list[SpikeRecording]:
    """Run ``protocol`` ``n_trials`` times on ``model``.

    Each trial starts from rest and first runs ``burn_in_s`` seconds of spontaneous activity
    (discarded), so the pulses meet ongoing activity as in a culture, not a silent network
    (``burn_in_s=0`` starts the protocol from rest).

    ``protocol``: a :class:`~organoid_sim.stimulation.Protocol`, any object with ``to_events()`` and
    ``duration_s`` (seconds), or a bare ``StimEvents``. ``device_profile`` validates a
    :class:`Protocol` first: ``"auto"`` (default) the profile its ``device`` field names, else the
    generic profile's physical limits (:func:`~organoid_sim.stimulation.devices.default_profile`);
    a :class:`DeviceProfile` or its name; ``None`` skips the check (an explicit opt-out).

    ``batched=True`` (default when the model has the explicit-state ``run`` method of
    :class:`~organoid_sim.models.SpikingNetworkModel`): all trials run side by side as one batch on
    the model's device (one input tensor, one noise generator seeded with ``seed``): much faster.
    ``batched=False``: one ``model.stimulate(protocol, seed=s_k)`` per trial with the seeds of
    :func:`trial_seeds` (extra keyword arguments go to ``stimulate``). Either way the same ``seed``
    gives the same trials on the same device.

    Returns one :class:`SpikeRecording` per trial over ``[0, duration_s]`` s with the pulses in
    ``stim`` and ``metadata["trial"]`` set.
    """
    if not hasattr(model, "stimulate"):
        raise TypeError(f"{type(model).__name__} has no stimulate(protocol, seed=...) method; "
                        "use a SpikingNetworkModel (organoid_sim.models)")
    _validate(protocol, device_profile)
    events, duration_s = as_events(protocol)
    if batched is None:
        batched = callable(getattr(model, "run", None)) and not stimulate_kwargs
    if burn_in_s < 0:
        raise ValueError(f"burn_in_s must be >= 0 seconds, got {burn_in_s}")
    if batched:
        return _batched_trials(model, events, duration_s, int(n_trials), int(seed), float(burn_in_s), progress)
    if isinstance(protocol, StimEvents):     # model.stimulate would give bare events a tail of its own
        protocol = _TimedEvents(events, duration_s)
    out = []
    for k, s in enumerate(_progress(trial_seeds(seed, n_trials), progress, "trials")):
        rec = model.stimulate(protocol, seed=s, burn_in_s=burn_in_s, **stimulate_kwargs)
        out.append(rec.with_metadata(trial=k, trial_seed=s))
    return out


@dataclass(frozen=True)
class _TimedEvents:
    """Bare ``StimEvents`` with the duration (s) :func:`as_events` gives them, for ``model.stimulate``."""

    events: StimEvents
    duration_s: float

    def to_events(self) -> StimEvents:
        return self.events


def _validate(protocol, device_profile) -> None:
    """Check ``protocol`` against ``device_profile`` (see :func:`run_trials`)."""
    from .devices import default_profile, get_profile
    from .protocol import Protocol

    if device_profile is None:
        return
    if device_profile == "auto":
        if isinstance(protocol, Protocol):
            default_profile(protocol).validate(protocol)
        return
    if isinstance(protocol, StimEvents):
        raise ValueError("device_profile validation needs a Protocol, not bare StimEvents")
    (get_profile(device_profile) if isinstance(device_profile, str) else device_profile).validate(protocol)


def _batched_trials(model, events: StimEvents, duration_s: float, n_trials: int, seed: int, burn_in_s: float,
                    progress: bool) -> list[SpikeRecording]:
    """All trials as one batch of ``model.run`` (same input, independent noise per trajectory)."""
    if n_trials < 1:
        raise ValueError(f"n_trials must be >= 1, got {n_trials}")
    if getattr(model, "layout", None) is None:
        raise ValueError("the model is not fitted yet: call model.fit(recording) first")
    dt_ms = float(model.dt_ms)
    n_steps = int(round(duration_s * 1000.0 / dt_ms))
    from ..limits import BYTES_PER_COUNT, check_request

    n_rec = int(model.n_recorded)
    check_request(f"{n_trials} trials", 2.0 * n_steps * n_rec * n_trials * BYTES_PER_COUNT,
                  f"{n_trials} x {n_steps:,} steps x {n_rec} neurons (counts and spikes)")
    ext = direct = None
    if len(events):
        if model.stim_coupling is None:
            raise RuntimeError("this model has no stimulation coupling (fit it to a recording with electrodes)")
        ext, direct = model.stim_coupling.inputs(events, n_steps, dt_ms / 1000.0, 0.0)
    burn = int(round(burn_in_s * 1000.0 / dt_ms))
    out, _, n_sat = model.run(n_steps, batch=n_trials, seed=seed, ext=ext, direct=direct, burn_in_steps=burn,
                              progress=progress)
    out = out[out[:, 2] < n_rec]
    jitter = np.random.SeedSequence(seed).generate_state(n_trials, dtype=np.uint32)
    recs = []
    for k in range(n_trials):
        counts = add_event_counts(np.zeros((n_steps, n_rec), dtype=np.int64), out[out[:, 1] == k])
        md = {"model": type(model).__name__, "seed": seed, "dt_ms": dt_ms, "trial": k, "n_trials": n_trials,
              "batched": True, "burn_in_s": burn_in_s, "saturated_bins": saturated_bins(n_sat, model.observation)}
        recs.append(counts_to_recording(counts, dt_ms, model.layout, t_start=0.0, seed=int(jitter[k]),
                                        stim=events, metadata=md))
    return recs


def concat_trials(trials: list[SpikeRecording]) -> SpikeRecording:
    """Join trial recordings end to end (each shifted to start where the previous one stopped), so
    evoked-response statistics pool every trial; ``metadata["trial_starts_s"]`` lists the starts (s)."""
    if not trials:
        raise ValueError("concat_trials needs at least one trial recording")
    starts = np.concatenate([[trials[0].t_start],
                             trials[0].t_start + np.cumsum([t.duration for t in trials[:-1]])])
    joined = trials[0].concat(*trials[1:])
    md = {k: v for k, v in joined.metadata.items() if k not in ("trial", "trial_seed")}
    return joined.replace(metadata={**md, "n_trials": len(trials), "trial_starts_s": starts.tolist()})


def _progress(items, enabled: bool, desc: str):
    if not enabled:
        return items
    from tqdm.auto import tqdm

    return tqdm(items, desc=desc, unit="trial")
