"""benchmarks/dark_detail.py: detail kept in the dark parts of night scenes (issue 12's diagnosis)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests._common import load_script

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def dark():
    return load_script(ROOT / "benchmarks" / "dark_detail.py")


def _night(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    vi = rng.uniform(2, 14, (64, 64))  # textured, all below the dark level
    ir = np.full((64, 64), 5.0)
    ir[:, 48:] = 200.0  # a hot object: not dark
    return vi, ir


def test_kept_texture_is_not_flat_and_correlates(dark):
    vi, ir = _night()
    s = dark.dark_stats(vi * 0.5 + 3, vi, ir, 20)
    assert s["dark_share"] == pytest.approx(0.75)
    assert s["corr_vi"] == pytest.approx(1.0)
    assert s["flat_blocks"] == 0.0
    assert s["mean"] == pytest.approx((vi[:, :48] * 0.5 + 3).mean())


def test_crushed_texture_counts_as_flat(dark):
    vi, ir = _night()
    fused = vi * 0.5 + 3
    fused[:, :24] = 4.0  # the left half of the dark region crushed to one level
    s = dark.dark_stats(fused, vi, ir, 20)
    assert s["flat_blocks"] == pytest.approx(0.5)
    assert 0 < s["corr_vi"] < 1


def test_command_writes_its_report(dark, tmp_path: Path):
    for kind in ("vi", "ir"):
        (tmp_path / "night" / kind).mkdir(parents=True)
    for name, seed in (("00001N", 1), ("00002D", 2)):
        vi, ir = _night(seed)
        Image.fromarray(vi.astype(np.uint8)).save(tmp_path / "night" / "vi" / f"{name}.png")
        Image.fromarray(ir.astype(np.uint8)).save(tmp_path / "night" / "ir" / f"{name}.png")
    out = tmp_path / "dark.json"
    assert dark.main(["--weights", "mlfuse-own-v1", "--root", str(tmp_path / "night"), "--out", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert doc["pairs"] == ["00001N"]  # night pairs only
    row = doc["weights"]["mlfuse-own-v1"]
    assert set(row["per_pair"]) == {"00001N"} and 0 <= row["mean"]["flat_blocks"] <= 1


def test_no_night_pairs_is_one_line_error(dark, tmp_path: Path, capsys):
    (tmp_path / "ir").mkdir()
    assert dark.main(["--weights", "mlfuse-own-v1", "--root", str(tmp_path)]) == 1
    assert "no night pairs" in capsys.readouterr().err
