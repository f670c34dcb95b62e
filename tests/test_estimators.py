"""The estimators' scikit-learn shape: parameters from the signature, fit options in ``__init__``,
unknown names rejected, the earlier ``fit(recording, **options)`` mapped onto parameters with the
same result, fitted state ending in ``_``, model files of the earlier format loading through the
migration table, and ``evaluate`` taking any estimators."""

from __future__ import annotations

import inspect
import json

import numpy as np
import pytest
import torch

import organoid_sim
from organoid_sim import SpikeRecording, load_model
from organoid_sim.models import CoupledGLM, PoissonModel, SpikingNetworkModel
from organoid_sim.model_files import FORMAT_VERSION
from organoid_sim.models.base import ModelBase

ESTIMATORS = (PoissonModel, CoupledGLM, SpikingNetworkModel)
QUICK = dict(n_hidden=0, max_epochs=2, refine_steps=0, calibration_rounds=0, progress=False)


@pytest.fixture(scope="module")
def rec() -> SpikeRecording:
    rng = np.random.default_rng(3)
    trains = [np.sort(rng.uniform(0, 30.0, rng.poisson(r * 30.0))) for r in rng.uniform(2.0, 6.0, 5)]
    xy = np.stack([100.0 * np.arange(5), np.zeros(5)], axis=1)
    return SpikeRecording.from_spike_times(trains, t_start=0.0, t_stop=30.0, electrode_ids=np.arange(5),
                                           positions=xy)


@pytest.mark.parametrize("cls", ESTIMATORS)
def test_params_are_the_signature_kept_as_given(cls):
    sig = inspect.signature(cls.__init__)
    names = [n for n in sig.parameters if n != "self"]
    m = cls()
    assert list(m.get_params()) == names
    assert m.get_params() == {n: sig.parameters[n].default for n in names}
    # a copy from the parameters has the same parameters (what sklearn.base.clone relies on)
    assert cls(**m.get_params()).get_params() == m.get_params()
    assert set(cls.fit_options) <= set(names)


@pytest.mark.parametrize("cls", ESTIMATORS)
def test_unknown_names_raise_type_error_naming_them(cls, rec):
    with pytest.raises(TypeError, match="max_epoch"):
        cls(max_epoch=3)
    with pytest.raises(TypeError, match="max_epoch"):
        cls().set_params(max_epoch=3)
    with pytest.raises(TypeError, match="max_epoch"):
        cls().fit(rec, max_epoch=3)


def test_set_params_keeps_fitted_state_for_fit_options_only(rec):
    m = SpikingNetworkModel(**QUICK).fit(rec)
    weight = m.weight.detach().clone()
    m.set_params(refine_steps=5)
    assert m.get_params()["refine_steps"] == 5 and m.layout_ is not None
    assert torch.equal(m.weight.detach(), weight)
    m.set_params(n_hidden=2)  # the structure changed: an unfitted model with the new parameters
    assert m.layout_ is None and m.n_hidden == 2 and m.get_params()["refine_steps"] == 5


@pytest.mark.parametrize("cls", [CoupledGLM, SpikingNetworkModel])
def test_a_loaded_model_keeps_the_fit_options_it_was_fitted_with(cls, rec, tmp_path):
    """``cls(**loaded.get_params())`` must refit as the saved model was fitted, not with the defaults;
    where the fit ran (device, progress, checkpoints) is the loading machine's."""
    given = {k: v for k, v in {**QUICK, "max_epochs": 3, "validation_fraction": 0.2, "fit_seed": 7}.items()
             if k in inspect.signature(cls.__init__).parameters}
    m = cls(**given).fit(rec)
    loaded = load_model(m.save(tmp_path / "m"))
    local = {"progress", "device", "checkpoint_dir"}
    assert {k: loaded.get_params()[k] for k in given if k not in local} == \
        {k: v for k, v in given.items() if k not in local}
    assert loaded.get_params()["progress"] == inspect.signature(cls.__init__).parameters["progress"].default



def test_a_loaded_network_keeps_its_guard_calibration_refinement_and_check_options(rec, tmp_path):
    """The fit options that were missing from ``fit_settings`` (``max_likelihood_loss``,
    ``refine_options``, ``calibration_options``, ``self_check``) come back too: they loaded as the
    constructor's defaults, so a clone refitted with the default likelihood guard and self-check."""
    given = {"max_likelihood_loss": 0.1, "refine_options": {"weights": {"rates": 2.0}},
             "calibration_options": {"burst_gain": 0.0}, "self_check": False}
    m = SpikingNetworkModel(**QUICK, **given).fit(rec)
    loaded = load_model(m.save(tmp_path / "m"))
    assert {k: loaded.get_params()[k] for k in given} == given

def test_for_stimulation_is_the_advised_fit_with_overrides_taking_precedence():
    from organoid_sim.models.network import STIMULATION_FIT

    m = SpikingNetworkModel.for_stimulation(max_epochs=5)
    assert {k: m.get_params()[k] for k in STIMULATION_FIT} == STIMULATION_FIT and m.get_params()["max_epochs"] == 5
    assert m.stimulation_fit_differences() == {}
    assert SpikingNetworkModel.for_stimulation(n_hidden=3).stimulation_fit_differences() == {"n_hidden": 3}
    d = SpikingNetworkModel().get_params()
    assert SpikingNetworkModel().stimulation_fit_differences() == {k: d[k] for k in STIMULATION_FIT}


@pytest.mark.parametrize("cls, options", [
    (SpikingNetworkModel, dict(max_epochs=2, refine_steps=0, calibration_rounds=0, progress=False, seed=4)),
    (CoupledGLM, dict(progress=False)),
])
def test_legacy_fit_options_warn_and_give_the_same_fit(cls, options, rec):
    with pytest.warns(FutureWarning, match="set_params"):
        old = cls().fit(rec, **options)
    params = {cls.legacy_fit_names.get(k, k): v for k, v in options.items()}
    new = cls(**params).fit(rec)
    assert old.get_params() == new.get_params()
    for name, value in new.state_dict().items():
        assert torch.equal(value, old.state_dict()[name]), name


@pytest.mark.parametrize("cls", ESTIMATORS)
def test_fitted_state_ends_in_underscore(cls, rec):
    m = cls(**{k: v for k, v in QUICK.items() if k in inspect.signature(cls.__init__).parameters})
    assert m.layout_ is None
    m.fit(rec)
    assert m.layout_["unit_ids"] == rec.unit_ids.tolist() and m.layout is m.layout_
    assert m.provenance_["n_spikes"] == rec.n_spikes and m.provenance is m.provenance_


def test_one_registry_of_subclasses():
    assert {c.__name__: c for c in ESTIMATORS}.items() <= ModelBase.registry.items()


def _rewrite(path, change) -> None:
    doc = json.loads((path / "model.json").read_text())
    change(doc)
    (path / "model.json").write_text(json.dumps(doc))


def test_format_1_files_load_through_the_migrations(tmp_path, rec):
    """A file in the layout that format 1 wrote before ``dale_weights`` and ``max_rate_hz``
    existed: Dale's law was then softplus and there was no saturation."""
    m = SpikingNetworkModel(dale=True, max_rate_hz=None, dale_weights="softplus", **QUICK).fit(rec)
    path = m.save(tmp_path / "m")
    assert json.loads((path / "model.json").read_text())["format_version"] == FORMAT_VERSION

    def to_v1(doc):
        doc["format_version"] = 1
        for key in ("dale_weights", "max_rate_hz"):
            doc["config"].pop(key)

    _rewrite(path, to_v1)
    old = load_model(path)
    assert old.hparams["dale_weights"] == "softplus" and old.hparams["max_rate_hz"] is None
    assert old.simulate(5.0, seed=1) == m.simulate(5.0, seed=1)
    assert old.score(rec) == pytest.approx(m.score(rec), abs=1e-9)


def test_files_of_a_newer_format_are_refused_with_the_file_named(tmp_path, rec):
    path = PoissonModel().fit(rec).save(tmp_path / "p")
    _rewrite(path, lambda doc: doc.update(format_version=FORMAT_VERSION + 1))
    with pytest.raises(ValueError, match=r"model\.json.*newer"):
        load_model(path)


def test_evaluate_takes_any_estimators(rec):
    """The same loop for a mapping of estimators as for the default names; a fitted Poisson
    model of the first part is what ``"poisson"`` gives."""
    by_name = organoid_sim.evaluate(rec, seed=0, sim_factor=1.0, models=("poisson",), trim_silence=False)
    mine = organoid_sim.evaluate(rec, seed=0, sim_factor=1.0, models={"mine": PoissonModel()}, trim_silence=False)
    np.testing.assert_equal(mine.rows["mine"], by_name.rows["poisson"])
    with pytest.raises(ValueError, match="unknown model name"):
        organoid_sim.evaluate(rec, models=("poison",))


@pytest.mark.parametrize("cls", (PoissonModel, CoupledGLM))
def test_format_1_baseline_files_load_unchanged(cls, tmp_path, rec):
    m = cls(**({"progress": False} if cls is CoupledGLM else {})).fit(rec)
    path = m.save(tmp_path / "m")
    _rewrite(path, lambda doc: doc.update(format_version=1))
    old = load_model(path)
    assert old.score(rec) == m.score(rec)
    assert old.simulate(5.0, seed=2) == m.simulate(5.0, seed=2)


def test_the_file_format_reads_without_torch(tmp_path, rec):
    """The simulation engine reads model files without torch: the format module and its
    migrations import and run with torch blocked."""
    import subprocess
    import sys

    path = SpikingNetworkModel(**QUICK).fit(rec).save(tmp_path / "m")
    _rewrite(path, lambda doc: (doc.update(format_version=1), doc["config"].pop("max_rate_hz")))
    code = ("import sys; sys.modules['torch'] = None\n"
            "from organoid_sim.model_files import read_document, FORMAT_VERSION\n"
            f"doc = read_document({str(path)!r})\n"
            "assert doc['format_version'] == FORMAT_VERSION and doc['config']['max_rate_hz'] is None\n"
            "assert 'torch' not in [m.split('.')[0] for m in sys.modules if sys.modules[m] is not None]\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
