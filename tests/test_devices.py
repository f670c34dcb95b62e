"""Device profiles: every hardware limit is refused with its own message naming the pulse."""

from __future__ import annotations

import numpy as np
import pytest

from organoid_sim.stimulation import (CL1, GENERIC, MAXONE, DeviceLimitError, Protocol, PulseDesign,
                                      PulseTrain, get_profile, probe_electrodes)


def _one(design: PulseDesign, electrodes=(9,), start_s=0.1, n_pulses=1, frequency_hz=None) -> Protocol:
    # a harmless first train, so the offending pulse is "train 1" and the message must point at it
    ok = PulseTrain(PulseDesign.biphasic(1.0 if design.unit == "uA" else 2.9, 100.0, unit=design.unit), (1,), 0.0)
    return Protocol((ok, PulseTrain(design, tuple(electrodes), start_s, n_pulses, frequency_hz)))


def _refused(profile, protocol, limit: str, *fragments: str) -> DeviceLimitError:
    with pytest.raises(DeviceLimitError) as info:
        profile.validate(protocol)
    err = info.value
    assert err.limit == limit
    msg = str(err)
    assert profile.name in msg and limit in msg
    for f in fragments:
        assert f in msg, (f, msg)
    return err


def test_cl1_accepts_a_typical_probe():
    p = probe_electrodes(range(64), amplitude=3.0, phase_us=200.0, n_repeats=2, interval_s=0.01)
    assert CL1.validate(p) is p


def test_cl1_layout_is_an_8x8_grid_at_200um():
    el = CL1.electrodes()
    assert len(el) == 64
    # independent reference: row-major grid
    ys, xs = np.divmod(np.arange(64), 8)
    np.testing.assert_array_equal(el.x, xs * 200.0)
    np.testing.assert_array_equal(el.y, ys * 200.0)


def test_cl1_electrode_not_on_array():
    _refused(CL1, _one(PulseDesign.biphasic(1.0, 100.0), electrodes=(64,)), "electrode id",
             "train 1", "electrode 64", "0..63")


def test_cl1_refuses_voltage_mode():
    _refused(CL1, _one(PulseDesign.biphasic(100.0, 100.0, unit="mV")), "stimulation mode", "train 0", "mV")


def test_cl1_phase_not_multiple_of_20us():
    _refused(CL1, _one(PulseDesign.biphasic(1.0, 150.0)), "phase duration step", "train 1", "150 us", "20 us")


def test_cl1_current_above_3uA():
    _refused(CL1, _one(PulseDesign.biphasic(3.5, 100.0)), "maximum amplitude", "train 1", "3.5", "3 uA")


def test_cl1_charge_above_3nC_per_phase():
    # 2 uA for 1600 us = 3.2 nC (> 3 nC) while |I| <= 3 uA
    err = _refused(CL1, _one(PulseDesign.biphasic(2.0, 1600.0)), "maximum charge per phase", "train 1", "3.2 nC")
    assert "3 nC" in str(err)


def test_cl1_phases_must_alternate():
    _refused(CL1, _one(PulseDesign((100.0, 100.0), (-1.0, -1.0))), "alternating polarity", "phases 0 and 1")


def test_cl1_pulse_must_be_charge_balanced():
    # alternates but -2 uA*200 us + 1 uA*200 us = -0.2 nC net
    _refused(CL1, _one(PulseDesign((200.0, 200.0), (-2.0, 1.0))), "charge balance", "-0.2 nC")


def test_cl1_train_above_200hz():
    err = _refused(CL1, _one(PulseDesign.biphasic(1.0, 100.0), n_pulses=3, frequency_hz=250.0),
                   "maximum frequency", "pulse 1 of train 1", "250.0 Hz", "200 Hz")
    assert err.where.startswith("pulse 1 of train 1")


def test_cl1_train_at_exactly_200hz_is_fine():
    CL1.validate(_one(PulseDesign.biphasic(1.0, 100.0), n_pulses=5, frequency_hz=200.0))


def test_overlapping_pulses_on_one_electrode():
    # 2 x 500 us = 1 ms pulses at 2 kHz overlap; the generic profile has no rate limit but forbids overlap
    p = _one(PulseDesign.biphasic(1.0, 500.0), n_pulses=2, frequency_hz=2000.0)
    _refused(GENERIC, p, "pulse overlap", "pulse 1 of train 1", "500.0 us", "1000.0 us")


def test_maxone_voltage_dac_steps():
    ok = _one(PulseDesign.biphasic(29.0, 100.0, unit="mV"))
    assert MAXONE.validate(ok) is ok
    _refused(MAXONE, _one(PulseDesign.biphasic(30.0, 100.0, unit="mV")), "DAC step", "30 mV", "2.9 mV")


def test_maxone_refuses_current_mode():
    _refused(MAXONE, _one(PulseDesign.biphasic(1.0, 100.0)), "stimulation mode", "uA")


def test_maxone_phase_steps_and_amplitude_range():
    _refused(MAXONE, _one(PulseDesign.biphasic(29.0, 120.0, unit="mV")), "phase duration step", "50 us")
    _refused(MAXONE, _one(PulseDesign.biphasic(2.9 * 600, 100.0, unit="mV")), "maximum amplitude")


def test_maxone_at_most_32_simultaneous_electrodes():
    d = PulseDesign.biphasic(29.0, 100.0, unit="mV")
    MAXONE.validate(Protocol((PulseTrain(d, tuple(range(32)), 0.0),)))
    _refused(MAXONE, Protocol((PulseTrain(d, tuple(range(33)), 0.0),)), "simultaneous electrodes", "33 electrodes")


def test_every_limit_has_its_own_message():
    cases = [(CL1, _one(PulseDesign.biphasic(1.0, 100.0), electrodes=(99,))),
             (CL1, _one(PulseDesign.biphasic(1.0, 100.0, unit="mV"))),
             (CL1, _one(PulseDesign.biphasic(1.0, 150.0))),
             (CL1, _one(PulseDesign.biphasic(3.5, 100.0))),
             (CL1, _one(PulseDesign.biphasic(2.0, 1600.0))),
             (CL1, _one(PulseDesign((100.0, 100.0), (-1.0, -1.0)))),
             (CL1, _one(PulseDesign((200.0, 200.0), (-2.0, 1.0)))),
             (CL1, _one(PulseDesign.biphasic(1.0, 100.0), n_pulses=3, frequency_hz=250.0)),
             (GENERIC, _one(PulseDesign.biphasic(1.0, 500.0), n_pulses=2, frequency_hz=2000.0)),
             (MAXONE, _one(PulseDesign.biphasic(30.0, 100.0, unit="mV"))),
             (MAXONE, Protocol((PulseTrain(PulseDesign.biphasic(29.0, 100.0, unit="mV"), tuple(range(33))),)))]
    limits, messages = [], []
    for profile, proto in cases:
        with pytest.raises(DeviceLimitError) as info:
            profile.validate(proto)
        limits.append(info.value.limit)
        messages.append(str(info.value))
    assert len(set(limits)) == len(cases)
    assert len(set(messages)) == len(cases)


def test_get_profile_by_name():
    assert get_profile("cl1") is CL1 and get_profile("MaxOne") is MAXONE
    with pytest.raises(ValueError, match="unknown device profile 'foo'"):
        get_profile("foo")
