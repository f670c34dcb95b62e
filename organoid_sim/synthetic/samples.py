"""The bundled sample files in ``data_samples/`` and the stimulation schedules they use.

``python -m organoid_sim.synthetic --out data_samples`` writes, from one seeded virtual organoid:

- ``spontaneous.nwb``: a spontaneous recording (64 multi-unit channels, default 300 s);
- ``stim_session.nwb``: a calibration session stimulating half of the electrodes (a checkerboard)
  at two amplitudes, 8 pulses per condition about 1 s apart in random order, with the
  stimulation table;
- ``true_responses.json``: the organoid's true response probability and median first-spike latency
  for every electrode x amplitude x channel (many independent trials), plus the generating
  configuration and seeds.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..atomic import atomic_write_text
from ..events import StimEvents
from .organoid import OrganoidConfig, TrueResponses, VirtualOrganoid

CALIBRATION_AMPLITUDES_UA = (1.0, 2.5)
TRUTH_AMPLITUDES_UA = (1.0, 1.5, 2.0, 2.5)
PHASE_US = 200.0


def checkerboard(electrodes, rows: int, cols: int, parity: int = 0) -> np.ndarray:
    """Electrode ids of a row-major ``rows x cols`` grid whose ``(row + col) % 2 == parity``."""
    ids = np.asarray(electrodes, np.int64)
    r, c = np.divmod(np.arange(rows * cols), cols)
    return ids[(r + c) % 2 == parity]


def calibration_events(electrodes, amplitudes_ua=CALIBRATION_AMPLITUDES_UA, n_repeats: int = 4,
                       interval_s: float = 1.0, jitter_s: float = 0.2, phase_us: float = PHASE_US,
                       start_s: float = 1.0, seed: int = 0) -> StimEvents:
    """Every electrode x amplitude ``n_repeats`` times in random order, ``interval_s`` +- ``jitter_s`` s apart.

    Pulses are cathodic-first biphasic, ``phase_us`` us per phase, amplitudes in uA (CL1-legal for
    ``|I| <= 3 uA`` and phases that are multiples of 20 us).
    """
    rng = np.random.default_rng(seed)
    e, a = np.meshgrid(np.asarray(electrodes, np.int64), np.asarray(amplitudes_ua, float), indexing="ij")
    cond = np.repeat(np.stack([e.ravel(), a.ravel()], 1), n_repeats, axis=0)
    cond = cond[rng.permutation(len(cond))]
    gaps = interval_s + rng.uniform(-jitter_s, jitter_s, len(cond))
    times = start_s + np.concatenate([[0.0], np.cumsum(gaps[:-1])])
    return StimEvents.from_columns(times, cond[:, 0].astype(np.int64), -cond[:, 1], phase_us, 2)


def load_true_responses(path) -> TrueResponses:
    """Read ``true_responses.json`` written by :func:`write_data_samples`."""
    path = Path(path)
    try:
        d = json.loads(path.read_text())
        return TrueResponses.from_dict(d["responses"])
    except (OSError, KeyError, ValueError, TypeError) as exc:
        raise ValueError(f"{path}: not a true-responses file written by organoid_sim.synthetic ({exc})") from exc


def write_data_samples(out_dir="data_samples", *, seed: int = 0, spontaneous_s: float = 300.0,
                       n_repeats: int = 8, n_trials: int = 100, config: OrganoidConfig | None = None,
                       progress: bool = True) -> dict[str, Path]:
    """Generate the sample files into ``out_dir`` (see the module docstring); returns their paths.

    ``seed`` draws the organoid and all simulations; the same seed writes the same spikes.
    """
    from ..io import save

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    organoid = VirtualOrganoid(config, seed=seed)
    c = organoid.config
    paths = {}
    rec = organoid.spontaneous(spontaneous_s, seed=seed + 1, progress=progress)
    paths["spontaneous"] = save(rec.with_metadata(description="virtual organoid, spontaneous activity"),
                                out / "spontaneous.nwb")
    calib = checkerboard(organoid.electrodes.ids, c.rows, c.cols, parity=0)
    events = calibration_events(calib, n_repeats=n_repeats, seed=seed + 2)
    session = organoid.stimulate(events, seed=seed + 3, progress=progress)
    paths["stim_session"] = save(session.with_metadata(description="virtual organoid, calibration session",
                                                       calibration_electrodes=calib.tolist()),
                                 out / "stim_session.nwb")
    truth = organoid.true_responses(amplitudes_ua=TRUTH_AMPLITUDES_UA, phase_us=PHASE_US, n_trials=n_trials,
                                    seed=seed + 4, progress=progress)
    paths["true_responses"] = out / "true_responses.json"
    doc = {"description": "true evoked responses of the virtual organoid (organoid_sim.synthetic)",
           "seed": seed, "config": c.to_dict(), "calibration_electrodes": calib.tolist(),
           "calibration_amplitudes_uA": list(CALIBRATION_AMPLITUDES_UA), "responses": truth.to_dict()}
    atomic_write_text(paths["true_responses"], json.dumps(doc, indent=1))
    return paths
