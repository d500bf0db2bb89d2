"""The rendered sample pair: committed files equal the renderer, and the scene is meaningful."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image as PILImage

from mlfuse.data.sample import SAMPLE_SIZE, _person, render_sample

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "sample"


def test_committed_sample_matches_renderer(sample_pair) -> None:
    vis, ir = sample_pair
    assert np.array_equal(np.asarray(PILImage.open(EXAMPLES / "vis.png")), vis)
    assert np.array_equal(np.asarray(PILImage.open(EXAMPLES / "ir.png")), ir)


def test_render_is_deterministic_and_seeded() -> None:
    a, b = render_sample(3), render_sample(3)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert not np.array_equal(render_sample(4)[0], a[0])


def test_scene_has_texture_and_warm_targets(sample_pair) -> None:
    vis, ir = sample_pair
    h, w = SAMPLE_SIZE
    assert vis.shape == (h, w, 3) and ir.shape == (h, w)
    assert np.std(vis) > 30 and len(np.unique(vis.reshape(-1, 3), axis=0)) > 10_000  # textured colour
    person = _person(h, w, int(0.92 * h), 95, 95)
    ring = _person(h, w, int(0.92 * h), 95 + 30, 95) & ~person
    assert ir[person].mean() > ir[ring].mean() + 60  # warm in infrared
    vis_l = np.asarray(PILImage.fromarray(vis).convert("L"), float)
    assert vis_l[person].mean() < 60  # dark, hard to see in the visible image
