"""The committed benchmark configurations (benchmarks/*.toml) stay runnable: they load, pass the bench's
up-front checks, name weights that exist (a packaged or declared release, or a file beside the config) and,
with ../shared present, point at datasets and figure pairs that exist."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlfuse.bench.config import check_config, load_config, names_weights_file
from mlfuse.registry import get_card

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = sorted((ROOT / "benchmarks").glob("*.toml"))


def test_there_are_configs_and_no_scratch_ones() -> None:
    assert {p.name for p in CONFIGS} >= {"bench.toml", "quality_mlfuse.toml", "schedule_val.toml"}
    assert not [p.name for p in CONFIGS if p.name.startswith("_")]  # temporary fill configs never land


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_config_loads_and_names_existing_weights(path: Path) -> None:
    cfg = load_config(path)
    check_config(cfg)
    for method in cfg.methods:
        card = get_card(method.model)
        if not card.needs_weights or method.weights == "default":
            continue
        choice = method.weights
        if names_weights_file(method, path.parent):  # a checkpoint file, read from the config's folder
            assert Path(choice).is_file(), f"{path.name}: {method.label}: no file {choice}"
        else:  # committed configs name declared releases only (not releases installed on one machine)
            assert card.release_named(choice), f"{path.name}: {method.label}"
    for release in cfg.weights_files:
        assert release in {r for m in cfg.methods for r in get_card(m.model).release_names}, release


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_config_datasets_and_figures_exist(path: Path, shared: Path) -> None:
    cfg = load_config(path)
    for ds in cfg.datasets:
        assert ds.root.is_dir(), f"{path.name}: dataset {ds.name}: no folder {ds.root}"
    for release, file in cfg.weights_files.items():
        assert file.is_file(), f"{path.name}: weights_files {release}: no file {file}"
    roots = {d.name: d.root for d in cfg.datasets}
    for fig in cfg.figures or []:
        if fig.pair is not None:
            found = any(roots[fig.dataset].rglob(f"{fig.pair}.*"))
            assert found, f"{path.name}: figure pair {fig.dataset}:{fig.pair} not found"
