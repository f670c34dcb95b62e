"""Shared fixtures: paths to the real recordings in ../shared/data and small synthetic recordings."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
DIV12 = SHARED / "real" / "CO_20140212_MW1007-51_DIV12_00_001.h5"
DIV05 = SHARED / "real" / "CO_20140212_MW1007-51_DIV05_00_001.h5"
NGN2 = SHARED / "real" / "NGN2_20230208_P1_DIV14_A2_OutputData.mat"
MAXONE_LEGACY = SHARED / "format_fixtures" / "maxone_legacy_testit_1.raw.h5"
MCS = SHARED / "format_fixtures" / "mcs_2014-07-09T10-17-35W8_Standard_all_500Hz.h5"


def _need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"shared data file not found: {path}")
    return path


@pytest.fixture(scope="session")
def div12_path() -> Path:
    return _need(DIV12)


@pytest.fixture(scope="session")
def div05_path() -> Path:
    return _need(DIV05)


@pytest.fixture(scope="session")
def ngn2_path() -> Path:
    return _need(NGN2)


@pytest.fixture(scope="session")
def maxone_legacy_path() -> Path:
    return _need(MAXONE_LEGACY)


@pytest.fixture(scope="session")
def mcs_path() -> Path:
    return _need(MCS)


@pytest.fixture(scope="session")
def d1(div12_path):
    """Well D1 of the DIV12 plate (16 channels, 39,399 spikes), loaded once per test run."""
    import organoid_sim

    return organoid_sim.load(div12_path, well="D1")


@pytest.fixture(scope="session")
def d1_desc(d1):
    """``stats.describe`` of well D1 (shared by the statistics and plot tests)."""
    from organoid_sim import stats

    return stats.describe(d1)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(12345)


@pytest.fixture(scope="module")
def one_thread():
    """Torch on one thread for a module: the models' per-step tensors are tiny, and on a shared
    2-core box thread hand-offs cost 10-50x (use with ``pytestmark = pytest.mark.usefixtures``)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def interrupt_replace(monkeypatch):
    """``interrupt_replace(at)``: the ``at``-th ``os.replace`` from then on raises KeyboardInterrupt
    (a Ctrl-C between two renames of an atomic write)."""
    import os

    def arm(at: int) -> None:
        real, calls = os.replace, []

        def replace(src, dst):
            calls.append(dst)
            if len(calls) == at:
                raise KeyboardInterrupt
            return real(src, dst)

        monkeypatch.setattr(os, "replace", replace)

    return arm
