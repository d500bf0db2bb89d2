"""`mlfuse fuse` on the real data sets with the authors' weights (../shared): colour visible gives
colour results, PET colour is kept, medical gray pairs stay gray."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image as PILImage

from mlfuse.cli.main import main
from mlfuse.data.color import rgb_to_ycbcr


def _subset(src_root: Path, dst_root: Path, subs: tuple[str, str], names: list[str]) -> Path:
    for sub in subs:
        (dst_root / sub).mkdir(parents=True)
        for n in names:
            f = next((src_root / sub).glob(f"{n}.*"))
            (dst_root / sub / f.name).symlink_to(f)
    return dst_root


def test_roadscene_colour(shared, official_weights, tmp_path, capsys) -> None:
    root = _subset(shared / "data/roadscene/test", tmp_path / "rs", ("vi", "ir"), ["FLIR_00211", "FLIR_01130"])
    out = tmp_path / "out"
    assert main(["fuse", "--root", str(root), "-o", str(out), "--weights", str(official_weights), "-q"]) == 0
    for f in sorted(out.iterdir()):
        im = np.asarray(PILImage.open(f))
        vis = np.asarray(PILImage.open(next((root / "vi").glob(f.stem + ".*"))))
        assert im.shape == vis.shape and im.ndim == 3
        _, cb, cr = rgb_to_ycbcr(im)
        _, vcb, vcr = rgb_to_ycbcr(vis)
        assert np.abs(cb - vcb).mean() < 1.5 and np.abs(cr - vcr).mean() < 1.5  # visible chroma restored


def test_pet_mri_keeps_pet_colour(shared, official_weights, tmp_path) -> None:
    root = _subset(shared / "data/harvard/pet_mri/test", tmp_path / "pm", ("mri", "pet"), ["11", "40"])
    out = tmp_path / "out"
    assert main(["fuse", "--root", str(root), "-o", str(out), "--weights", str(official_weights), "-q"]) == 0
    for f in sorted(out.iterdir()):
        fused = np.asarray(PILImage.open(f))
        pet = np.asarray(PILImage.open(root / "pet" / f.name))
        assert fused.ndim == 3
        _, _, cr = rgb_to_ycbcr(fused)
        _, pcb, pcr = rgb_to_ycbcr(pet)
        coloured = (np.abs(pcb - 128) + np.abs(pcr - 128)) > 20
        assert coloured.mean() > 0.05
        assert np.corrcoef(cr[coloured], pcr[coloured])[0, 1] > 0.9


def test_ct_mri_gray_in_gray_out(shared, official_weights, tmp_path) -> None:
    root = _subset(shared / "data/harvard/ct_mri/test", tmp_path / "cm", ("mri", "ct"), ["11"])
    out = tmp_path / "out"
    assert main(["fuse", "--root", str(root), "-o", str(out), "--weights", str(official_weights), "-q"]) == 0
    fused = np.asarray(PILImage.open(out / "11.png"))
    ref = np.asarray(PILImage.open(shared / "reference/mlfuse/ct_mri/11.png"))
    assert fused.ndim == 2 and np.abs(fused.astype(int) - ref.astype(int)).max() <= 1
