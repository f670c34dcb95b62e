"""A small Axion-style plate whose wells are virtual organoids (organoid_sim.synthetic), for the batch tests."""

from __future__ import annotations

import h5py
import numpy as np

from organoid_sim.synthetic import OrganoidConfig, VirtualOrganoid

#: cheap fitting options: the tests check the batch machinery, not fit quality
FAST = dict(max_epochs=4, refine_steps=3, refine_batch=2, calibration_rounds=1)
#: wells with a virtual organoid; the plates also get a silent well C1 (its fit fails)
WELLS = ("A1", "A2", "B1")


def write_plate(path, wells=("A1", "A2", "B1", "B2"), silent=("C1",), duration_s: float = 30.0,
                rows: int = 2, cols: int = 3, n_neurons: int = 200):
    """Write an Axion-layout HDF5 plate: one virtual organoid per well (seeds 0, 1, ...), plus
    ``silent`` wells whose channels have no spikes (their fits fail). Returns ``path``."""
    names, counts, spikes, epos = [], [], [], []
    for k, well in enumerate(wells):
        org = VirtualOrganoid(OrganoidConfig.small(n_neurons=n_neurons, rows=rows, cols=cols), seed=k)
        rec = org.spontaneous(duration_s, seed=k, progress=False)
        for i, train in enumerate(rec.spike_times):
            r, c = divmod(int(rec.electrode_ids[i]), cols)
            names.append(f"{well}_{c + 1}{r + 1}")
            counts.append(len(train))
            spikes.append(np.asarray(train, np.float64))
            epos.append(rec.positions[i])
    for well in silent:
        for c in range(cols):
            names.append(f"{well}_{c + 1}1")
            counts.append(0)
            epos.append((200.0 * c, 0.0))
    with h5py.File(path, "w") as f:
        f["spikes"] = np.concatenate(spikes)
        f["sCount"] = np.asarray(counts, np.int32)
        f["names"] = np.asarray(names, dtype="S")
        f["epos"] = np.asarray(epos, np.float64).T
    return path


_CACHE: dict = {}


def shared_plate(tmp_path_factory):
    """One plate for all batch tests (wells A1, A2, B1 of 10 s, C1 silent) and its serial run, made
    once per test session: ``(plate path, serial output dir, serial results)``. Tests that change
    the serial output must copy it first."""
    if "plate" not in _CACHE:
        from organoid_sim.batch import fit_many

        root = tmp_path_factory.mktemp("batch_plate")
        plate = write_plate(root / "plate.h5", WELLS, silent=("C1",), duration_s=10.0)
        out = root / "serial"
        _CACHE["plate"] = (plate, out, fit_many([plate], out, client="serial", progress=False, **FAST))
    return _CACHE["plate"]
