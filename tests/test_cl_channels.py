"""cl.channels: the model's electrode layout onto the CL1's 8 x 8 channel numbers."""

from __future__ import annotations

import numpy as np
import pytest

from organoid_sim.cl.channels import GROUNDED, VIRTUAL_ID_BASE, map_channels
from organoid_sim.stimulation.devices import CL1


def test_cl1_layout_keeps_channel_numbers_and_virtual_positions_are_the_grid():
    grid = CL1.electrodes()                       # the CL1 profile: ids row-major, 200 um pitch
    units = np.array([9, 9, 10, 27, 54])          # two units on electrode 9
    m = map_channels(units, grid.ids, grid.positions)
    assert m.rule == "cl1"
    np.testing.assert_array_equal(m.unit_channel, units)
    # every non-grounded electrode of the model stays stimulable under its own number
    assert m.stim_electrode[33] == 33 and m.stim_electrode[9] == 9
    # grounded channels have no model electrode: a virtual one at the grid position
    assert m.stim_electrode[0] == VIRTUAL_ID_BASE
    np.testing.assert_allclose(m.virtual_xy_um[63], grid.positions[63], atol=1e-6)


def test_other_layout_goes_to_nearest_free_channels_keeping_geometry():
    # a 4 x 4 array at 100 um pitch (an MCS-like layout) with ids 100..115
    ids = np.arange(100, 116)
    xy = np.c_[(np.arange(16) % 4) * 100.0, (np.arange(16) // 4) * 100.0]
    m = map_channels(ids, ids, xy)
    assert m.rule == "grid"
    ch = m.unit_channel
    assert len(set(ch.tolist())) == 16 and not set(ch.tolist()) & set(GROUNDED)
    col, row = ch % 8, ch // 8
    # order along x and y is kept (the box scaled onto the grid: 100 um -> 7/3 channels)
    for a in range(16):
        for b in range(16):
            if xy[a, 0] < xy[b, 0]:
                assert col[a] <= col[b]
            if xy[a, 1] < xy[b, 1]:
                assert row[a] <= row[b]
    # a channel between mapped electrodes stimulates at the matching point of the model's plane
    j = int(np.flatnonzero(ids == 105)[0])
    np.testing.assert_allclose(m.virtual_xy_um[ch[j]], xy[j], atol=30.0)


def test_channel_map_and_errors():
    ids = np.array([1, 2, 3])
    xy = np.full((3, 2), np.nan)
    m = map_channels(ids, ids, xy, channel_map={"1": 20, "2": 21, "3": 22})
    assert m.rule == "channel_map" and m.unit_channel.tolist() == [20, 21, 22]
    assert np.isnan(m.virtual_xy_um).all()           # no positions: virtual electrodes reach nobody
    with pytest.raises(ValueError, match="electrodes \\[3\\]"):
        map_channels(ids, ids, xy, channel_map={1: 20, 2: 21})
    with pytest.raises(ValueError, match="grounded"):
        map_channels(ids, ids, xy, channel_map={1: 0, 2: 21, 3: 22})
    with pytest.raises(ValueError, match="two electrodes"):
        map_channels(ids, ids, xy, channel_map={1: 20, 2: 20, 3: 22})
    many = np.arange(1000, 1070)
    with pytest.raises(ValueError, match="70 electrodes.*channel_map"):
        map_channels(many, many, np.c_[many * 1.0, many * 0.0])


def test_an_8x8_mea_with_units_on_the_corners_keeps_its_numbers_and_hides_the_corners():
    """A model of a full 8 x 8 MEA (units on all 64 electrodes, e.g. the bundled sample): the CL1
    grounds 0, 7, 56 and 63, so those units appear on no channel; every other keeps its number."""
    grid = CL1.electrodes()
    m = map_channels(grid.ids, grid.ids, grid.positions)
    assert m.rule == "cl1"
    corner = np.isin(grid.ids, GROUNDED)
    assert (m.unit_channel[corner] == -1).all()
    np.testing.assert_array_equal(m.unit_channel[~corner], grid.ids[~corner])
    assert "channel  0" not in m.describe() and len(m.describe().splitlines()) == 60


@pytest.mark.parametrize("units, ids, xy", [
    (np.full(10, -1), np.zeros(0, np.int64), np.zeros((0, 2))),          # a recording without electrodes
    (np.arange(12), np.arange(12), np.full((12, 2), np.nan)),            # 0-based ids, no positions
])
def test_ids_alone_never_hide_a_unit_on_a_corner(units, ids, xy):
    """Without positions on the grid nothing says an electrode numbered 0 or 7 is a CL1 corner: every
    unit is reported, on a channel off the corners."""
    m = map_channels(units, ids, xy)
    assert m.rule == "grid" and (m.unit_channel >= 0).all()
    assert not set(m.unit_channel.tolist()) & set(GROUNDED)
