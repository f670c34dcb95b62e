"""The model-free reference of evoked responses (distance and channel alone) against closed-form truths."""

from __future__ import annotations

import numpy as np

from organoid_sim.stimulation.reference import distance_channel_prediction


def _grid(electrode_effect: float, seed: int = 3):
    """A 4 x 4 grid (100 um pitch), one channel per electrode, every electrode measured at 1 and 2 uA:
    P = 0.2 * I * exp(-d / 250 um) + a channel offset (away from its own electrode) + an offset of
    the stimulated electrode itself scaled by ``electrode_effect``; latency 5 ms + d / (100 um/ms)."""
    rng = np.random.default_rng(seed)
    xy = np.array([(100.0 * i, 100.0 * j) for j in range(4) for i in range(4)])
    d = np.hypot(*(xy[:, None, :] - xy[None, :, :]).transpose(2, 0, 1))          # [E, C]
    chan, elec = rng.normal(0, 0.05, 16), rng.normal(0, 0.08, 16) * electrode_effect
    e = np.repeat(np.arange(16), 2)
    a = np.tile([1.0, 2.0], 16)
    prob = 0.2 * a[:, None] * np.exp(-d[e] / 250.0) + np.where(d[e] > 0, chan[None, :], 0) + elec[e][:, None]
    lat = 0.005 + d[e] / 1e5
    return e, a, prob, lat, xy, elec


def test_a_truth_of_distance_and_channel_alone_is_recovered_from_the_other_electrodes():
    e, a, prob, lat, xy, _ = _grid(0.0)
    p, lp = distance_channel_prediction(e, -a, prob, lat, xy, dict(enumerate(xy)), e, a)
    # the channel offsets are estimated through the distance profile, which they also shift a little
    assert np.corrcoef(p.ravel(), prob.ravel())[0, 1] > 0.99
    np.testing.assert_allclose(lp, lat, atol=2e-4)


def test_what_it_cannot_see_is_the_stimulated_electrodes_own_effect():
    e, a, prob, lat, xy, elec = _grid(1.0)
    p, _ = distance_channel_prediction(e, a, prob, lat, xy, dict(enumerate(xy)), e, a)
    resid = prob - p
    assert np.corrcoef(p.ravel(), prob.ravel())[0, 1] < 0.95
    assert np.corrcoef(resid.mean(1), elec[e])[0, 1] > 0.95    # a constant over each condition's channels


def test_an_electrodes_own_measurements_never_inform_its_prediction():
    e, a, prob, lat, xy, _ = _grid(0.0)
    changed = prob.copy()
    changed[e == 5] += 0.3                                        # electrode 5's own rows only
    before, _ = distance_channel_prediction(e, a, prob, lat, xy, dict(enumerate(xy)), [5, 5], [1.0, 2.0])
    after, _ = distance_channel_prediction(e, a, changed, lat, xy, dict(enumerate(xy)), [5, 5], [1.0, 2.0])
    np.testing.assert_array_equal(before, after)


def test_amplitudes_between_the_measured_ones_are_linear_and_outside_clamped():
    e, a, prob, lat, xy, _ = _grid(0.0)
    at = lambda amp: distance_channel_prediction(e, a, prob, lat, xy, dict(enumerate(xy)), [6], [amp])[0][0]
    inside = (at(1.0) > 0) & (at(2.0) > 0)        # the probabilities are clipped to [0, 1] last
    assert inside.sum() >= 12
    np.testing.assert_allclose(at(1.25)[inside], (0.75 * at(1.0) + 0.25 * at(2.0))[inside])
    np.testing.assert_allclose(at(3.0), at(2.0))
    np.testing.assert_allclose(at(0.5), at(1.0))
    assert (at(2.0) >= 0).all() and (at(2.0) <= 1).all()


def test_electrodes_and_channels_without_positions_inform_nothing_and_get_no_prediction():
    e, a, prob, lat, xy, _ = _grid(0.0)
    exy = dict(enumerate(xy))
    exy[3] = (np.nan, np.nan)                                     # electrode 3's position unknown
    del exy[7]                                                    # electrode 7 not in the layout
    uxy = xy.copy()
    uxy[9] = np.nan                                               # channel 9's position unknown
    p, _ = distance_channel_prediction(e, a, prob, lat, uxy, exy, [3, 7, 5], [1.0, 1.0, 1.0])
    assert np.isnan(p[0]).all() and np.isnan(p[1]).all()
    assert np.isnan(p[2, 9]) and np.isfinite(np.delete(p[2], 9)).all()
    # the known electrodes' prediction is that of the data without electrodes 3 and 7
    keep = ~np.isin(e, [3, 7])
    ref, _ = distance_channel_prediction(e[keep], a[keep], prob[keep], lat[keep], uxy, dict(enumerate(xy)), [5], [1.0])
    np.testing.assert_allclose(p[2], ref[0])


def test_unknown_positions_predict_nothing_instead_of_borrowing_each_other():
    """A channel or electrode without a position has no distance to anything: the reference gives it
    no prediction (NaN) and does not pool it with the other unknown ones; everything else is as
    without them."""
    e, a, prob, lat, xy, _ = _grid(0.0)
    exy = dict(enumerate(xy))
    full, _ = distance_channel_prediction(e, a, prob, lat, xy, exy, e, a)
    xy_nan = xy.copy()
    xy_nan[[3, 9]] = np.nan                                      # two channels of unknown position
    exy_nan = {**exy, 6: np.array([np.nan, np.nan])}             # an electrode of unknown position
    p6, _ = distance_channel_prediction(e, a, prob, lat, xy_nan, exy_nan, e, a)
    assert np.isnan(p6[e == 6]).all()
    del exy_nan[12]                                              # and one missing from the layout
    p, lp = distance_channel_prediction(e, a, prob, lat, xy_nan, exy_nan, e, a)
    unknown_target = np.isin(e, [6, 12])
    assert np.isnan(p[:, [3, 9]]).all() and np.isnan(lp[:, [3, 9]]).all()
    assert np.isnan(p[unknown_target]).all() and np.isnan(lp[unknown_target]).all()
    # the rest is predicted from the electrodes with known positions: the same truth, recovered as well
    rest = np.ix_(~unknown_target, np.setdiff1d(np.arange(16), [3, 9]))
    assert np.isfinite(p[rest]).all()
    assert np.corrcoef(p[rest].ravel(), prob[rest].ravel())[0, 1] > 0.99
    np.testing.assert_allclose(lp[rest], lat[rest], atol=2e-4)
    assert np.abs(p[rest] - prob[rest]).mean() <= np.abs(full[rest] - prob[rest]).mean() + 0.01
