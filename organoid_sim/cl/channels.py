"""Which CL1 channel each recorded unit of a model appears on, and where each channel stimulates.

The CL1 array is 8 x 8 electrodes; channel ``c`` sits in row ``c // 8``, column ``c % 8`` (row-major,
as cl-sdk numbers them and as :data:`organoid_sim.stimulation.devices.CL1` lays them out, 200 um
pitch). The four corner channels 0, 7, 56 and 63 are grounded (cl-sdk refuses to stimulate them),
so no unit is put there.

Default mapping (:func:`map_channels` without ``channel_map``):

1. **CL1 layout**: when every model electrode with units has a channel number 0..63 as id and the
   positions (where known) sit on the 8 x 8 grid (``x = col * p``, ``y = row * p`` for one pitch ``p``,
   origin at channel 0), each electrode keeps its number (a model fitted to a CL1 recording), also the
   electrodes without units. Units on the grounded corners (a model of an 8 x 8 MEA that records
   there) are simulated with the rest but appear on no channel, as the CL1 cannot record them.
2. **Any other layout**: the electrodes' bounding box is scaled (aspect kept) onto the 8 x 8 grid and
   each electrode goes to the nearest free, non-grounded channel (electrodes in id order; ties go
   to the lower channel); electrodes without a known position take the remaining channels in id order.
   More than 60 electrodes with units raise an error: pass ``channel_map``.

``channel_map`` (``{electrode_id: channel}``, JSON keys may be strings) overrides the default for
the electrodes it names (every electrode that carries a unit must then be named).

All units of one electrode share its channel (a channel spikes when any of them does). Channels with
no unit carry noise only. Stimulating channel ``c`` pulses the model's electrode mapped to ``c``; a
channel without a model electrode pulses a *virtual* electrode at the channel's position in the
model's coordinates (a least-squares affine map from grid to model positions over the mapped
electrodes; with fewer than three non-collinear mapped electrodes such pulses reach no neuron).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import numpy as np

N_CHANNELS = 64
GRID = 8
GROUNDED = (0, 7, 56, 63)
#: electrode ids of the virtual electrodes under channels that have no model electrode
VIRTUAL_ID_BASE = 1_000_000_000
#: channel of a unit the CL1 cannot show (on a grounded corner): simulated, never reported
UNREPORTED = -1


@dataclass(frozen=True)
class ChannelMapping:
    """Result of :func:`map_channels`.

    Attributes
    ----------
    unit_channel : int64 ``[n_units]`` channel of each recorded unit (model neuron order);
        :data:`UNREPORTED` (-1) for a unit on a grounded corner of a CL1 layout.
    electrode_channel : ``{electrode_id: channel}`` for the electrodes that carry units or were mapped.
    stim_electrode : int64 ``[64]`` electrode id a pulse on each channel is delivered to (a model
        electrode or a virtual one, ``VIRTUAL_ID_BASE + channel``).
    virtual_xy_um : float64 ``[64, 2]`` positions (um, model coordinates) of the virtual electrodes
        (NaN where unknown).
    rule : ``"cl1"``, ``"grid"`` or ``"channel_map"`` (how the mapping was made).
    """

    unit_channel: np.ndarray
    electrode_channel: dict
    stim_electrode: np.ndarray
    virtual_xy_um: np.ndarray
    rule: str

    def describe(self) -> str:
        """One line per used channel: ``channel <- electrode (n units)``."""
        counts = np.bincount(self.unit_channel[self.unit_channel >= 0], minlength=N_CHANNELS)
        return "\n".join(f"channel {c:2d} <- electrode {e} ({counts[c]} units)"
                         for e, c in sorted(self.electrode_channel.items(), key=lambda kv: kv[1]))


def channel_rc(channels) -> np.ndarray:
    """``[K, 2]`` (column, row) grid coordinates of channel numbers."""
    c = np.asarray(channels, np.int64)
    return np.stack([c % GRID, c // GRID], -1).astype(np.float64)


def _usable() -> np.ndarray:
    return np.array([c for c in range(N_CHANNELS) if c not in GROUNDED])


def _on_grid(eids: np.ndarray, exy: np.ndarray) -> bool:
    """Ids 0..63 and positions (where known) on the 8 x 8 grid of one pitch."""
    if len(eids) == 0 or eids.min() < 0 or eids.max() >= N_CHANNELS:
        return False
    known = np.isfinite(exy).all(1)
    if not known.any():
        return True
    rc = channel_rc(eids[known])
    xy = exy[known]
    nz = rc != 0
    if not nz.any():
        return bool(np.allclose(xy, 0.0, atol=1e-3))
    pitch = np.median(xy[nz] / rc[nz])
    return bool(pitch > 0 and np.allclose(xy, rc * pitch, atol=1e-3 * pitch + 1e-6))


def _grid_assign(eids: np.ndarray, exy: np.ndarray) -> dict:
    free = list(_usable())
    out: dict[int, int] = {}
    known = np.isfinite(exy).all(1)
    if known.any():
        xy = exy[known]
        lo = xy.min(0)
        span = float(np.max(xy.max(0) - lo))
        scale = span / (GRID - 1) if span > 0 else 1.0
        target = (xy - lo) / scale                         # (col, row) in grid units
        for e, t in zip(eids[known], target):
            rc = channel_rc(free)
            d2 = ((rc - t) ** 2).sum(1)
            j = int(np.argmin(d2))                          # argmin: ties go to the lower channel
            out[int(e)] = int(free.pop(j))
    for e in eids[~known]:
        out[int(e)] = int(free.pop(0))
    return out


def _affine(channels: np.ndarray, xy: np.ndarray) -> np.ndarray | None:
    """``[3, 2]`` least-squares map from ``[col, row, 1]`` to model positions, or None if degenerate."""
    ok = np.isfinite(xy).all(1)
    if ok.sum() < 3:
        return None
    A = np.c_[channel_rc(channels[ok]), np.ones(ok.sum())]
    if np.linalg.matrix_rank(A) < 3:
        return None
    coef, *_ = np.linalg.lstsq(A, xy[ok], rcond=None)
    return coef


def map_channels(unit_electrodes, electrode_ids, electrode_xy_um,
                 channel_map: Mapping | None = None) -> ChannelMapping:
    """Map a model's units and electrodes onto the CL1's 64 channels (rules in the module docstring).

    Parameters
    ----------
    unit_electrodes : ``[n_units]`` electrode id of each recorded unit (-1: unknown).
    electrode_ids : ``[E]`` electrode ids of the model's layout.
    electrode_xy_um : ``[E, 2]`` their positions (um; NaN unknown).
    channel_map : optional ``{electrode_id: channel}``.

    Returns
    -------
    ChannelMapping
    """
    ue = np.asarray(unit_electrodes, np.int64).reshape(-1)
    eids = np.asarray(electrode_ids, np.int64).reshape(-1)
    exy = np.asarray(electrode_xy_um, np.float64).reshape(-1, 2)
    if len(eids) != len(exy):
        raise ValueError(f"{len(eids)} electrode ids but {len(exy)} electrode positions")
    # units without an electrode get one of their own (no position), so they still show up somewhere
    orphans = np.flatnonzero((ue < 0) | ~np.isin(ue, eids))
    if len(orphans):
        extra = np.arange(len(orphans)) + max(int(eids.max(initial=0)), int(ue.max(initial=0))) + 1
        ue = ue.copy()
        ue[orphans] = extra
        eids = np.r_[eids, extra]
        exy = np.r_[exy, np.full((len(extra), 2), np.nan)]
    used = np.unique(ue)
    if channel_map:
        m = {int(k): int(v) for k, v in channel_map.items()}
        missing = sorted(set(used.tolist()) - set(m))
        if missing:
            raise ValueError(f"channel_map names no channel for electrodes {missing[:10]} (they carry units)")
        chans = np.array(list(m.values()))
        if len(set(chans.tolist())) != len(chans):
            raise ValueError("channel_map maps two electrodes to one channel")
        bad = [c for c in chans.tolist() if not 0 <= c < N_CHANNELS or c in GROUNDED]
        if bad:
            raise ValueError(f"channel_map uses channels {bad}: channels are 0..63 without the grounded "
                             f"corners {GROUNDED}")
        assign, rule = m, "channel_map"
    else:
        sel = np.isin(eids, used)
        on_array = ~np.isin(eids, GROUNDED) & (eids >= 0) & (eids < N_CHANNELS)
        on_grid = _on_grid(eids[sel], exy[sel]) and _on_grid(eids[sel | on_array], exy[sel | on_array])
        # units on a grounded corner: only a full 8 x 8 MEA with every position known (ids alone, e.g.
        # 0-based ids of a file without positions, or made-up ids of units without one, say nothing)
        corners = bool(np.isin(eids[sel], GROUNDED).any())
        if on_grid and (not corners or (not len(orphans) and np.isfinite(exy[sel]).all())):
            # a CL1 layout: every electrode keeps its number, also those without units (still stimulable);
            # units on the grounded corners of a full 8 x 8 MEA are simulated but never reported
            assign, rule = {int(e): int(e) for e in eids[on_array]}, "cl1"
        elif sel.sum() > len(_usable()):
            raise ValueError(f"the model has {int(sel.sum())} electrodes with units but the CL1 has "
                             f"{len(_usable())} usable channels: pass channel_map={{electrode_id: channel}}")
        else:
            assign, rule = _grid_assign(eids[sel], exy[sel]), "grid"
    unit_channel = np.array([assign.get(int(e), UNREPORTED) if rule == "cl1" else assign[int(e)] for e in ue],
                            np.int64)
    mapped_e = np.array(list(assign), np.int64)
    mapped_c = np.array([assign[int(e)] for e in mapped_e], np.int64)
    pos = {int(e): exy[i] for i, e in enumerate(eids)}
    mxy = np.array([pos.get(int(e), (np.nan, np.nan)) for e in mapped_e]).reshape(-1, 2)
    coef = _affine(mapped_c, mxy)
    allc = np.arange(N_CHANNELS)
    virtual = (np.c_[channel_rc(allc), np.ones(N_CHANNELS)] @ coef) if coef is not None else \
        np.full((N_CHANNELS, 2), np.nan)
    stim_e = VIRTUAL_ID_BASE + allc
    stim_e[mapped_c] = mapped_e
    return ChannelMapping(unit_channel, assign, stim_e, virtual, rule)
