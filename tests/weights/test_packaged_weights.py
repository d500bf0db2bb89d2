"""mlfuse's own MLFuse weights ship inside the package and are the default: the quick start works offline."""

from __future__ import annotations

import hashlib
import re
import tomllib
import urllib.request
from fnmatch import fnmatch
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import mlfuse
from mlfuse.cli.main import main
from mlfuse.weights.store import fetch, get_release, model_card_path, release_path

ROOT = Path(__file__).resolve().parents[2]
OWN = mlfuse.get_card("mlfuse").default_weights
PACKAGED = [r.name for r in mlfuse.get_card("mlfuse").releases if r.packaged]  # own-v1, own-v2


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args, **kwargs):
        raise AssertionError("the default weights must not need the network")

    monkeypatch.setattr(urllib.request, "urlopen", refuse)


@pytest.mark.parametrize("name", PACKAGED)
def test_packaged_releases_have_intact_file_and_card(name: str) -> None:
    assert OWN in PACKAGED and "mlfuse-own-v2" in PACKAGED  # the default is one of them
    rel = get_release(name)
    assert rel.packaged and name in mlfuse.get_card("mlfuse").release_names
    path = release_path(name)
    assert path.is_file() and path.suffix == ".safetensors"
    assert hashlib.sha256(path.read_bytes()).hexdigest() == rel.sha256
    assert fetch(name) == path  # nothing to download: verified in place
    card = model_card_path(name).read_text()
    assert f"sha256: `{rel.sha256}`" in card
    for field in ("epochs:", "hardware:", "wall time:", "## Training data", "## Recipe as run", "## Reproduce"):
        assert field in card, field
    assert re.search(r"epochs: \d+ of the recipe's 501", card)
    # shipped in wheels too, not only in this checkout
    globs = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["mlfuse"]
    rel_path = path.relative_to(ROOT / "src" / "mlfuse").as_posix()
    assert any(fnmatch(rel_path, g) for g in globs) and any(fnmatch(rel_path[:-12] + ".md", g) for g in globs)


def test_default_model_loads_offline_and_fuses_the_sample(offline, tmp_path) -> None:
    model = mlfuse.create_model("mlfuse")
    assert Path(model.weights_source) == release_path(OWN)
    out = tmp_path / "fused.png"
    assert main(["fuse", "--vis", str(ROOT / "examples/sample/vis.png"), "--ir", str(ROOT / "examples/sample/ir.png"),
                 "-o", str(out), "-q"]) == 0
    fused = np.asarray(Image.open(out))
    vis = np.asarray(Image.open(ROOT / "examples/sample/vis.png"))
    assert fused.shape == vis.shape and fused.dtype == np.uint8
    assert fused.std() > 20  # a real image, not a flat one


def test_own_v2_fuses_offline_by_name(offline, tmp_path) -> None:
    """The README's quick-start alternative: ``--weights mlfuse-own-v2`` (packaged, no download)."""
    out = tmp_path / "fused.png"
    assert main(["fuse", "--weights", "mlfuse-own-v2", "--vis", str(ROOT / "examples/sample/vis.png"),
                 "--ir", str(ROOT / "examples/sample/ir.png"), "-o", str(out), "-q"]) == 0
    fused = np.asarray(Image.open(out)).astype(np.float64)
    assert fused.std() > 20
    v1 = tmp_path / "v1.png"
    assert main(["fuse", "--weights", "mlfuse-own-v1", "--vis", str(ROOT / "examples/sample/vis.png"),
                 "--ir", str(ROOT / "examples/sample/ir.png"), "-o", str(v1), "-q"]) == 0
    assert np.abs(fused - np.asarray(Image.open(v1))).mean() > 1  # other weights, another image
