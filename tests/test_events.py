"""StimEvents: the stimulation table shared by readers, protocols and models."""

import numpy as np
import pytest

from organoid_sim.events import StimEvents


def test_columns_and_slicing():
    ev = StimEvents.from_columns([0.5, 1.0, 2.0], [1, 2, 3], [1.0, -2.0, 3.0], [100.0, 200.0, 100.0], 2)
    assert len(ev) == 3 and ev.amplitude_unit == "uA"
    np.testing.assert_allclose(ev.duration, [200e-6, 400e-6, 200e-6])
    part = ev.time_slice(0.9, 2.0)
    np.testing.assert_array_equal(part.electrode, [2])
    assert StimEvents.from_dict(ev.to_dict()) == ev
    assert StimEvents.concat([ev.take([0]), ev.take([1, 2])]) == ev


@pytest.mark.parametrize("kwargs, message", [
    (dict(time=[1.0, 0.5], electrode=[1, 2], sort=False), "sorted"),
    (dict(time=[-1.0], electrode=[1]), ">= 0"),
    (dict(time=[1.0], electrode=[1], amplitude=[np.nan]), "amplitude"),
    (dict(time=[1.0], electrode=[1], n_phases=[0]), "n_phases"),
    (dict(time=[1.0], electrode=[1], amplitude_unit="A"), "amplitude_unit"),
])
def test_bad_events_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        StimEvents.from_columns(**kwargs)


def test_from_columns_refuses_electrode_ids_that_are_not_whole_numbers():
    """A CSV's 3.0 is electrode 3; 3.7 or NaN is an error naming the values, never a cut id."""
    assert StimEvents.from_columns([0.1, 0.2], [3.0, 4.0]).electrode.tolist() == [3, 4]
    for bad in ([3.7, 4.0], [np.nan, 4.0]):
        with pytest.raises(ValueError, match="whole numbers"):
            StimEvents.from_columns([0.1, 0.2], bad)
