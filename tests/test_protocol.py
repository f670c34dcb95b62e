"""Protocols: pulse designs, trains, flattening to StimEvents, YAML/JSON persistence."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml

from organoid_sim import StimEvents
from organoid_sim.stimulation import Protocol, PulseDesign, PulseTrain, as_events, merge


def _protocol() -> Protocol:
    return Protocol((PulseTrain(PulseDesign.biphasic(2.0, 200.0), (3, 4), 1.0, 5, 20.0),
                     PulseTrain(PulseDesign.triphasic(1.5, 100.0), (7,), 0.5)),
                    name="mixed", device="CL1", metadata={"operator": "test"})


def test_biphasic_and_triphasic_are_charge_balanced_and_alternate():
    for d in (PulseDesign.biphasic(2.5, 160.0), PulseDesign.triphasic(2.5, 160.0)):
        q = d.phase_charges_nC()
        assert abs(q.sum()) < 1e-12
        assert np.all(np.sign(d.amplitudes[1:]) != np.sign(d.amplitudes[:-1]))
        assert d.amplitudes[0] < 0  # cathodic first
    # charge per phase, INTERFACES.md: |uA| * us * 1e-3 nC
    assert PulseDesign.biphasic(2.5, 160.0).phase_charges_nC()[0] == pytest.approx(-0.4)
    assert PulseDesign.triphasic(2.0, 100.0).duration_s == pytest.approx(300e-6)


def test_pulse_design_rejects_bad_input():
    with pytest.raises(ValueError, match="one amplitude per phase"):
        PulseDesign((100.0, 100.0), (1.0,))
    with pytest.raises(ValueError, match="> 0 us"):
        PulseDesign((0.0,), (1.0,))
    with pytest.raises(ValueError, match="unit must be one of"):
        PulseDesign((100.0,), (1.0,), unit="A")
    with pytest.raises(ValueError, match="current-mode"):
        PulseDesign.biphasic(10.0, unit="mV").phase_charges_nC()


def test_to_events_matches_the_schedule():
    ev = _protocol().to_events()
    assert isinstance(ev, StimEvents) and ev.amplitude_unit == "uA"
    # independent reference: 5 pulses at 20 Hz from 1.0 s on 2 electrodes + one pulse at 0.5 s
    expected = sorted([(0.5, 7)] + [(1.0 + k / 20.0, e) for k in range(5) for e in (3, 4)])
    got = sorted(zip(ev.time.tolist(), ev.electrode.tolist()))
    assert np.allclose([t for t, _ in got], [t for t, _ in expected]) and [e for _, e in got] == [e for _, e in expected]
    assert np.all(np.diff(ev.time) >= 0)
    first = ev.take(ev.electrode == 7)
    assert first.amplitude[0] == pytest.approx(-0.75) and first.n_phases[0] == 3 and first.phase_us[0] == 100.0
    others = ev.take(ev.electrode != 7)
    assert np.all(others.amplitude == -2.0) and np.all(others.n_phases == 2) and np.all(others.phase_us == 200.0)


def test_duration_defaults_to_last_pulse_plus_tail_and_is_checked():
    p = _protocol()
    last_end = 1.0 + 4 / 20.0 + 400e-6
    assert p.duration_s == pytest.approx(last_end + 0.3)
    ev, dur = as_events(p)
    assert dur == p.duration_s and ev == p.to_events()
    with pytest.raises(ValueError, match="ends before the last pulse"):
        Protocol(p.trains, duration_s=1.0)


def test_train_validation():
    d = PulseDesign.biphasic(1.0)
    with pytest.raises(ValueError, match="need frequency_hz"):
        PulseTrain(d, (1,), 0.0, 3)
    with pytest.raises(ValueError, match="duplicates"):
        PulseTrain(d, (1, 1))
    with pytest.raises(ValueError, match="empty"):
        PulseTrain(d, ())
    with pytest.raises(ValueError, match="mix amplitude units"):
        Protocol((PulseTrain(d, (1,)), PulseTrain(PulseDesign.biphasic(2.9, unit="mV"), (2,))))


@pytest.mark.parametrize("suffix", [".yaml", ".yml", ".json"])
def test_file_round_trip(tmp_path, suffix):
    p = _protocol()
    path = p.save(tmp_path / f"sub/proto{suffix}")
    assert sorted(x.name for x in path.parent.iterdir()) == [path.name]  # no temp file left behind
    # the file is plain YAML / JSON readable by the reference parsers
    raw = json.loads(path.read_text()) if suffix == ".json" else yaml.safe_load(path.read_text())
    assert raw["trains"][0]["electrodes"] == [3, 4] and raw["device"] == "CL1"
    back = Protocol.load(path)
    assert back == p
    assert back.to_events() == p.to_events()


def test_hand_written_yaml_loads(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("name: hand\ntrains:\n  - design: {phase_us: [200, 200], amplitudes: [-2, 2]}\n"
                    "    electrodes: [5]\n    start_s: 0.25\n    n_pulses: 3\n    frequency_hz: 10\n")
    p = Protocol.load(path)
    np.testing.assert_allclose(p.to_events().time, [0.25, 0.35, 0.45])


def test_fractional_pulse_count_in_a_file_is_refused(tmp_path):
    """``n_pulses: 2.5`` is refused as PulseTrain(n_pulses=2.5) is, not silently cut to 2 pulses."""
    path = tmp_path / "p.yaml"
    path.write_text("trains:\n  - design: {phase_us: [200, 200], amplitudes: [-2, 2]}\n"
                    "    electrodes: [5]\n    n_pulses: 2.5\n    frequency_hz: 10\n")
    with pytest.raises(ValueError, match=r"p\.yaml: protocol: train 0: .*n_pulses must be a positive integer"):
        Protocol.load(path)
    path.write_text(path.read_text().replace("2.5", "3.0"))   # a whole number written as a float is fine
    assert Protocol.load(path).n_pulses == 3


def test_load_errors_name_the_file_and_problem(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("trains: [ {design: {phase_us: [100]}, electrodes: [1]} ]\n")
    with pytest.raises(ValueError, match=r"bad\.yaml: protocol: train 0: pulse design: missing key 'amplitudes'"):
        Protocol.load(bad)
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(ValueError, match=r"broken\.json: not valid JSON"):
        Protocol.load(broken)
    with pytest.raises(FileNotFoundError, match="missing.yaml"):
        Protocol.load(tmp_path / "missing.yaml")
    with pytest.raises(ValueError, match=r"\.txt: protocol files must end in"):
        _protocol().save(tmp_path / "p.txt")


def test_shift_and_merge():
    p = _protocol()
    s = p.shifted(2.0)
    np.testing.assert_allclose(s.to_events().time, p.to_events().time + 2.0)
    m = merge([p, s])
    assert len(m.to_events()) == 2 * len(p.to_events()) and m.duration_s == s.duration_s
