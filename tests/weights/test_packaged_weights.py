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


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args, **kwargs):
        raise AssertionError("the default weights must not need the network")

    monkeypatch.setattr(urllib.request, "urlopen", refuse)


def test_default_is_a_packaged_release_with_intact_file_and_card() -> None:
    rel = get_release(OWN)
    assert rel.packaged and OWN in mlfuse.get_card("mlfuse").release_names
    path = release_path(OWN)
    assert path.is_file() and path.suffix == ".safetensors"
    assert hashlib.sha256(path.read_bytes()).hexdigest() == rel.sha256
    assert fetch(OWN) == path  # nothing to download: verified in place
    card = model_card_path(OWN).read_text()
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
