"""Damaged model files, unchecked protocols and oversized requests: each refused with our own
error naming the file or option and the problem, before any work starts."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tracemalloc

import numpy as np
import pytest
import test_stimulation_model as _shared
import yaml

import organoid_sim
from organoid_sim import limits
from organoid_sim.cli import main
from organoid_sim.models import ModelFileError, load_model
from organoid_sim.stimulation import (GENERIC, DeviceLimitError, Protocol, PulseDesign, PulseTrain,
                                      probe_electrodes, run_trials)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("model") / "m"
    _shared.small_fitted_model().save(d)
    return d


def _copy(model_dir, tmp_path):
    import shutil

    return shutil.copytree(model_dir, tmp_path / "copy")


# ------------------------------------------------------------------------------- point 8: model files
def test_truncated_weights_are_a_model_file_error(model_dir, tmp_path, capsys):
    d = _copy(model_dir, tmp_path)
    w = d / "weights.safetensors"
    w.write_bytes(w.read_bytes()[: w.stat().st_size // 2])
    with pytest.raises(ModelFileError, match="weights.safetensors: does not belong to .*model.json"):
        load_model(d)
    assert main(["simulate", str(d), "--duration", "1", "--out", str(tmp_path / "s.npz")]) == 2
    err = capsys.readouterr().err
    assert "weights.safetensors" in err and "Traceback" not in err


@pytest.mark.parametrize("n_recorded", [9, 3])
def test_edited_n_recorded_is_a_model_file_error(model_dir, tmp_path, n_recorded, capsys):
    d = _copy(model_dir, tmp_path)
    doc = json.loads((d / "model.json").read_text())
    assert doc["config"]["n_recorded"] == 8
    doc["config"]["n_recorded"] = n_recorded
    (d / "model.json").write_text(json.dumps(doc))
    with pytest.raises(ModelFileError, match=r"model.json: its config does not match weights.safetensors"):
        load_model(d)
    assert main(["simulate", str(d), "--duration", "1", "--out", str(tmp_path / "s.npz")]) == 2
    assert "model.json" in capsys.readouterr().err


def test_layout_that_does_not_fit_the_model_is_refused(model_dir, tmp_path):
    d = _copy(model_dir, tmp_path)
    doc = json.loads((d / "model.json").read_text())
    doc["layout"]["unit_ids"] = doc["layout"]["unit_ids"][:5]
    (d / "model.json").write_text(json.dumps(doc))
    with pytest.raises(ModelFileError, match="layout lists 5 units but the model has 8 recorded neurons"):
        load_model(d)


# ----------------------------------------------------------- a saved model is a pair of files
def _other_model(d):
    """The model saved in ``d`` with another bias (weights) and another provenance (model.json)."""
    import torch

    m = load_model(d)
    with torch.no_grad():
        m.bias.add_(1.0)
    m.provenance_ = {**m.provenance_, "n_spikes": -1}
    return m


@pytest.mark.parametrize("at", [1, 2, 3])
def test_an_interrupted_save_leaves_the_old_model_or_the_new_one(model_dir, tmp_path, monkeypatch, at, interrupt_replace):
    """Ctrl-C at any rename of a save over an existing model: the folder loads as the old model or
    as the new one, weights and model.json of the same save (torch loader and NumPy engine alike)."""
    import torch

    from organoid_sim.engine import load_network

    d = _copy(model_dir, tmp_path)
    old, new = load_model(d), _other_model(d)
    interrupt_replace(at)
    with contextlib.suppress(KeyboardInterrupt):
        new.save(d)
    monkeypatch.undo()
    got = load_model(d)
    which = new if got.provenance_["n_spikes"] == -1 else old
    assert got.provenance_["n_spikes"] == which.provenance_["n_spikes"]
    assert torch.equal(got.bias, which.bias)
    np.testing.assert_array_equal(load_network(d).bias, which.bias.detach().numpy())


def test_weights_that_do_not_belong_to_model_json_are_refused_naming_both_files(model_dir, tmp_path, capsys):
    import torch

    from organoid_sim.engine import load_network

    d = _copy(model_dir, tmp_path)
    other = _other_model(d).save(tmp_path / "other")
    shutil.copyfile(other / "weights.safetensors", d / "weights.safetensors")
    for load in (load_model, load_network):
        with pytest.raises(ModelFileError, match=r"copy/weights.safetensors: does not belong to .*copy/model.json"):
            load(d)
    assert main(["simulate", str(d), "--duration", "1", "--out", str(tmp_path / "s.npz")]) == 2
    assert "model.json" in capsys.readouterr().err
    # a model.json written before the digest existed takes the weights beside it
    doc = json.loads((d / "model.json").read_text())
    del doc["weights_sha256"]
    (d / "model.json").write_text(json.dumps(doc))
    assert torch.equal(load_model(d).bias, load_model(other).bias)


def test_a_save_after_an_interrupted_save_keeps_the_model_that_model_json_names(model_dir, tmp_path, monkeypatch, interrupt_replace):
    """A save interrupted after its commit point (its weights still pending), then a second save
    interrupted before its own: the folder still loads as the first save's model (the second
    save's pending weights must not replace the ones model.json names), and so do fit checkpoints."""
    import torch

    from organoid_sim import model_files
    from organoid_sim.engine import load_network
    from organoid_sim.fit.checkpoint import Checkpointer

    d = _copy(model_dir, tmp_path)
    first, second = _other_model(d), load_model(d)
    with torch.no_grad():
        second.bias.add_(2.0)
    interrupt_replace(3)           # Ctrl-C at the last rename: model.json names the pending file
    with contextlib.suppress(KeyboardInterrupt):
        first.save(d)
    monkeypatch.undo()

    def ctrl_c(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(model_files, "atomic_write_text", ctrl_c)   # Ctrl-C before the second commit
    with contextlib.suppress(KeyboardInterrupt):
        second.save(d)
    monkeypatch.undo()
    got = load_model(d)
    assert got.provenance_["n_spikes"] == -1 and torch.equal(got.bias, first.bias)
    np.testing.assert_array_equal(load_network(d).bias, first.bias.detach().numpy())

    module, ck = torch.nn.Linear(2, 1), Checkpointer(tmp_path / "ck")
    with torch.no_grad():
        module.bias.fill_(1.0)
    interrupt_replace(3)
    with contextlib.suppress(KeyboardInterrupt):
        ck.save(module, "fit", 1, {})
    monkeypatch.undo()
    with torch.no_grad():
        module.bias.fill_(2.0)
    monkeypatch.setattr(model_files, "atomic_write_text", ctrl_c)
    with contextlib.suppress(KeyboardInterrupt):
        ck.save(module, "fit", 2, {})
    monkeypatch.undo()
    assert ck.load(module)["step"] == 1 and float(module.bias) == 1.0


def test_a_load_beside_a_save_reads_the_pair_model_json_names(model_dir, tmp_path, monkeypatch, interrupt_replace):
    """A save's last rename (pending weights over weights.safetensors) lands while a load reads:
    after it found the old weights not to match and before it looked at the pending file. The load
    still reads the weights model.json names, from their new place (torch loader and engine)."""
    import hashlib
    import types

    import torch

    from organoid_sim import model_files
    from organoid_sim.engine import load_network

    d = _copy(model_dir, tmp_path)
    new = _other_model(d)
    interrupt_replace(3)           # the save stops just before its last rename ...
    with contextlib.suppress(KeyboardInterrupt):
        new.save(d)
    monkeypatch.undo()
    pending, weights = d / ".weights.pending.safetensors", d / "weights.safetensors"
    snapshot = {p: p.read_bytes() for p in (pending, weights)}
    for load in (load_model, load_network):
        for p, data in snapshot.items():
            p.write_bytes(data)
        renamed = []

        class Sha256:                             # ... and makes it once the load has hashed the old weights
            def __init__(self, *data):
                self._h = hashlib.sha256(*data)

            def update(self, data):
                self._h.update(data)

            def hexdigest(self):
                out = self._h.hexdigest()
                if not renamed:
                    renamed.append(os.replace(pending, weights))
                return out

        monkeypatch.setattr(model_files, "hashlib", types.SimpleNamespace(sha256=Sha256))
        got = load(d)
        monkeypatch.undo()
        assert renamed and not pending.exists()
        bias = got.bias.detach().numpy() if isinstance(got.bias, torch.Tensor) else got.bias
        np.testing.assert_array_equal(bias, new.bias.detach().numpy())


def test_a_load_beside_a_whole_save_reads_the_new_pair(model_dir, tmp_path, monkeypatch):
    """A whole save lands after a load read model.json and before it read the weights: the load
    reads model.json again and takes the new pair instead of refusing the folder as damaged."""
    import torch

    import organoid_sim.engine.spec as spec
    import organoid_sim.models.base as base
    from organoid_sim.engine import load_network

    for module, load in ((base, load_model), (spec, load_network)):
        d = _copy(model_dir, tmp_path / module.__name__)
        new = _other_model(d)
        real = module.read_document

        def read_then_save(directory, _real=real, _new=new):
            doc = _real(directory)
            _new.save(directory)
            return doc

        monkeypatch.setattr(module, "read_document", read_then_save)
        got = load(d)
        monkeypatch.undo()
        bias = got.bias.detach().numpy() if isinstance(got.bias, torch.Tensor) else got.bias
        np.testing.assert_array_equal(bias, new.bias.detach().numpy())


# ------------------------------------------------------------------- point 9: checked by default
def _loud_protocol() -> Protocol:
    """A 1000 uA pulse of 200 ms per phase, no device named: what no MEA electrode survives."""
    return Protocol((PulseTrain(PulseDesign((200_000.0, 200_000.0), (-1000.0, 1000.0)), (9,), 0.1),),
                    name="loud")


def test_protocol_without_device_is_checked_against_the_generic_limits(model_dir, tmp_path, capsys):
    p = _loud_protocol().save(tmp_path / "loud.yaml")
    assert yaml.safe_load(p.read_text())["device"] is None
    out = tmp_path / "evoked.npz"
    assert main(["stimulate", str(model_dir), "--protocol", str(p), "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "loud.yaml" in err and "generic" in err and "--device none" in err and not out.exists()
    # the explicit opt-out runs it
    assert main(["stimulate", str(model_dir), "--protocol", str(p), "--out", str(out), "--no-progress",
                 "--device", "none"]) == 0
    assert len(organoid_sim.load(out).stim) == 1


def test_run_trials_checks_the_generic_limits_unless_told_not_to():
    model = _shared.small_fitted_model()
    with pytest.raises(DeviceLimitError, match="maximum phase duration"):
        run_trials(model, _loud_protocol(), 1, progress=False)
    assert len(run_trials(model, _loud_protocol(), 1, progress=False, device_profile=None)[0].stim) == 1
    ok = probe_electrodes([9], amplitude=GENERIC.max_amplitude, phase_us=GENERIC.max_phase_us / 10, n_repeats=1)
    assert len(run_trials(model, ok, 1, progress=False)[0].stim) == 1  # at the limit: runs


def test_pulse_design_with_text_says_which_field(tmp_path, capsys, model_dir):
    d = probe_electrodes([9], n_repeats=1).to_dict()
    d["trains"][0]["design"]["phase_us"] = ["abc", 200.0]
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(d))
    assert main(["stimulate", str(model_dir), "--protocol", str(tmp_path / "bad.yaml"), "--out",
                 str(tmp_path / "x.npz")]) == 2
    err = capsys.readouterr().err
    assert "bad.yaml" in err and "phase_us must be numbers" in err and "could not convert" not in err


# ------------------------------------------------------------------- point 10: request sizes
def test_huge_protocol_is_refused_before_it_takes_memory(model_dir, tmp_path, capsys):
    d = probe_electrodes([9], n_repeats=1).to_dict()
    d["trains"][0].update(n_pulses=100_000_000, frequency_hz=100.0)
    d["duration_s"] = None  # to the end of the last pulse
    (tmp_path / "huge.yaml").write_text(yaml.safe_dump(d))
    tracemalloc.start()
    try:
        rc = main(["stimulate", str(model_dir), "--protocol", str(tmp_path / "huge.yaml"), "--out",
                   str(tmp_path / "x.npz"), "--device", "generic"])
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert rc == 2 and peak < 50e6  # the 100 M pulses were never built (2.2 GB before the check)
    err = capsys.readouterr().err
    assert "huge.yaml" in err and "100,000,000 pulses" in err and "2 GB limit" in err
    with pytest.raises(limits.RequestTooLargeError):
        probe_electrodes(range(64), n_repeats=10_000_000)


def test_limit_is_documented_and_overridable(monkeypatch):
    # a 10,000-pulse protocol: 4 MB estimated, under the default, over a 1 MB limit
    p = probe_electrodes([1, 2], n_repeats=5000, interval_s=0.01)
    assert p.n_pulses == 10_000 and len(p.to_events()) == 10_000
    monkeypatch.setenv(limits.ENV_VAR, "0.001")
    with pytest.raises(limits.RequestTooLargeError, match="0.001 GB limit"):
        p.to_events()
    limits.set_max_request_gb(float("inf"))
    try:
        assert len(p.to_events()) == 10_000
    finally:
        limits.set_max_request_gb(None)
    with pytest.raises(ValueError):
        limits.set_max_request_gb(float("nan"))


def test_huge_simulation_is_refused_at_once(model_dir, tmp_path, capsys):
    assert main(["simulate", str(model_dir), "--duration", "1e9", "--out", str(tmp_path / "s.npz")]) == 2
    err = capsys.readouterr().err
    # 1e9 s at 2 ms steps x 8 neurons x 8 bytes: the estimate is exact arithmetic
    assert f"{int(1e9 / 2e-3):,} steps" in err and f"{1e9 / 2e-3 * 8 * 8 / 1e9:.3g} GB" in err
    assert main(["simulate", str(model_dir), "--duration", "2", "--out", str(tmp_path / "s.npz"),
                 "--max-request-gb", "1e-9"]) == 2
    assert "limit" in capsys.readouterr().err
