"""Shared fixtures. Tests that read ../shared skip with a reason on a user's machine without it;
with CI=true a missing ../shared fails the whole run instead."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def pytest_configure(config: pytest.Config) -> None:
    if IN_CI and not SHARED.is_dir():
        raise pytest.UsageError(f"CI=true but the reference data folder {SHARED} is missing; "
                                "tests that need it must run in CI")


@pytest.fixture(scope="session")
def shared() -> Path:
    """The ../shared folder (reference data, specs, the authors' checkpoint)."""
    if not SHARED.is_dir():
        if IN_CI:
            pytest.fail(f"{SHARED} is missing in CI")
        pytest.skip(f"needs reference data in {SHARED} (not present on this machine)")
    return SHARED


@pytest.fixture(scope="session")
def official_weights(shared: Path) -> Path:
    return shared / "weights" / "mlfuse_official.pth"


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Never read or write the user's real weights cache."""
    monkeypatch.setenv("MLFUSE_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))


@pytest.fixture(scope="session")
def random_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A seeded, untrained MLFNet checkpoint in the authors' layout: fast CLI tests without ../shared."""
    from mlfuse.models.mlfuse.network import MLFNet

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("weights") / "random_mlfnet.pth"
    torch.save({"epoch": 0, "model": MLFNet().state_dict()}, path)
    return path


@pytest.fixture(scope="session")
def random_model(random_weights: Path):
    import mlfuse

    return mlfuse.create_model("mlfuse", weights=random_weights)


@pytest.fixture(scope="session")
def sample_pair() -> tuple[np.ndarray, np.ndarray]:
    from mlfuse.data.sample import render_sample

    return render_sample()
