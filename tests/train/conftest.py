"""A tiny synthetic training set (written as files, like a user's folders) for fast trainer tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image


def make_pairs(root: Path, n: int = 8, size: tuple[int, int] = (40, 48), seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    (root / "vi").mkdir(parents=True)
    (root / "ir").mkdir()
    h, w = size
    yy, xx = np.mgrid[0:h, 0:w]
    for i in range(n):
        vis = (127 + 60 * np.sin(xx / (2 + i)) + 30 * rng.standard_normal((h, w))).clip(0, 255).astype(np.uint8)
        ir = np.zeros((h, w), np.uint8) + 40
        cy, cx = rng.integers(8, h - 8), rng.integers(8, w - 8)
        ir[(yy - cy) ** 2 + (xx - cx) ** 2 < 36] = 220
        Image.fromarray(np.stack([vis, np.roll(vis, 1, 1), vis], 2)).save(root / "vi" / f"{i}.png")
        Image.fromarray(ir).save(root / "ir" / f"{i}.png")
    return root


@pytest.fixture(scope="session")
def tiny_set(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_pairs(tmp_path_factory.mktemp("tiny") / "set")
