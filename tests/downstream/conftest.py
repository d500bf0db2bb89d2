"""Labelled scenes shared by the downstream tests: a few small ones, rendered once per session."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlfuse.data.sample import write_scenes


@pytest.fixture(scope="session")
def scenes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """8 scenes of 64 x 80 pixels: 6 train, 2 test, MSRS layout."""
    return write_scenes(tmp_path_factory.mktemp("scenes") / "scenes", 8, size=(64, 80))


TINY_CONFIG = """
name = "tiny-test"
size = [32, 48]
epochs = 1
batch_size = 4
figures = 1
[network]
widths = [4, 8, 8, 8]
aspp_channels = 8
low_level_channels = 4
head_channels = 8
"""


@pytest.fixture(scope="session")
def tiny_config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    p = tmp_path_factory.mktemp("cfg") / "tiny.toml"
    p.write_text(TINY_CONFIG)
    return p
