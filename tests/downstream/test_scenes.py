"""Labelled scenes of `mlfuse sample --scenes`: deterministic, labels consistent with the pixels, and
modalities complementary (what makes the downstream demo meaningful)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from mlfuse.cli.main import main
from mlfuse.data.sample import SCENE_DET_CLASSES, SCENE_SEG_CLASSES, render_scene
from mlfuse.downstream.data import read_mask, read_yolo


def test_scene_deterministic_and_labels_match_pixels() -> None:
    a, b = render_scene(5), render_scene(5)
    assert all(np.array_equal(a[k], b[k]) for k in ("vis", "ir", "mask")) and a["boxes"] == b["boxes"]
    assert not np.array_equal(render_scene(6)["vis"], a["vis"])
    seg_of_det = {0: SCENE_SEG_CLASSES.index("person"), 1: SCENE_SEG_CLASSES.index("bike"),
                  2: SCENE_SEG_CLASSES.index("car")}
    for seed in range(6):
        s = render_scene(seed)
        for cls, x0, y0, x1, y1 in s["boxes"]:
            region = s["mask"][int(y0):int(y1), int(x0):int(x1)]
            assert (region == seg_of_det[cls]).any()  # every box covers pixels of its class
            assert 0 <= x0 < x1 <= s["mask"].shape[1] and 0 <= y0 < y1 <= s["mask"].shape[0]


def test_modalities_are_complementary() -> None:
    """People stand out more in infrared, cars more in the visible image (mean contrast to the ground)."""
    contrast: dict[tuple[int, str], list[float]] = {}
    for seed in range(16):
        s = render_scene(seed)
        rows = np.arange(s["mask"].shape[0])[:, None]
        ground = (s["mask"] == 0) & (rows > s["mask"].shape[0] * 0.45) & np.ones_like(s["mask"], bool)
        for idx in (1, 2):  # car, person
            m = s["mask"] == idx
            if m.sum() > 20:
                contrast.setdefault((idx, "ir"), []).append(abs(s["ir"][m].mean() - s["ir"][ground].mean()))
                vis = s["vis"].astype(float)
                contrast.setdefault((idx, "vis"), []).append(np.abs(vis[m].mean(0) - vis[ground].mean(0)).mean())
    mean = {k: float(np.mean(v)) for k, v in contrast.items()}
    assert mean[(2, "ir")] > 2 * mean[(2, "vis")]  # people: warm, often in shadow or at night
    assert mean[(1, "vis")] > 1.5 * mean[(1, "ir")]  # cars: painted, mostly parked at the road's temperature


def test_cli_writes_scenes_in_msrs_layout(tmp_path: Path) -> None:
    assert main(["sample", str(tmp_path / "s"), "--scenes", "4"]) == 0
    root = tmp_path / "s"
    assert sorted(p.name for p in (root / "train" / "vi").iterdir()) == ["00000.png", "00001.png", "00002.png"]
    assert (root / "classes.txt").read_text().split() == list(SCENE_DET_CLASSES)
    m = read_mask(root / "test" / "Segmentation_labels" / "00003.png", (128, 160), len(SCENE_SEG_CLASSES))
    boxes = read_yolo(root / "test" / "labels" / "00003.txt", 160, 128, 3)
    s = render_scene(3)
    assert np.array_equal(m, s["mask"]) and np.array_equal(np.asarray(Image.open(root / "test" / "ir" / "00003.png")),
                                                           s["ir"])
    np.testing.assert_allclose(boxes.boxes, np.array([b[1:] for b in s["boxes"]]).reshape(-1, 4), atol=1e-3)
    assert main(["sample", str(root), "--scenes", "4"]) == 2  # never overwrites without --overwrite
