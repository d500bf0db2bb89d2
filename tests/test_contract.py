"""The contract every registered method keeps (timm's ``tests/test_models.py`` idea), parametrised over
``list_models()`` so a new method is checked the moment it registers: its card is complete and
consistent, it builds (every task), it fuses an odd-sized gray pair and an odd-sized colour pair, and its
weights round-trip through the file layout it reads (the authors' layout where it has one).
Seeded random weights and 19 x 23 images keep it cheap; per-method files test what is specific."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import mlfuse
from mlfuse.inference.fuse import OUTPUT_RULES
from mlfuse.models.registry import FUNCTIONAL_MODALITIES, STRUCTURAL_MODALITIES, get_recipe, release_model
from mlfuse.weights.store import get_release

METHODS = mlfuse.list_models()
H, W = 19, 23  # odd, and above every card's min_size (EMMA's 16 x 16)


@pytest.fixture(scope="module")
def pair() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {"vis_gray": rng.integers(0, 256, (H, W), dtype=np.uint8),
            "vis_rgb": rng.integers(0, 256, (H, W, 3), dtype=np.uint8),
            "ir": rng.integers(0, 256, (H, W), dtype=np.uint8)}


def _build(name: str, **kwargs: object) -> torch.nn.Module:
    torch.manual_seed(0)
    return mlfuse.create_model(name, weights=None, **kwargs)


def test_methods_are_registered() -> None:
    assert {"mlfuse", "cddfuse", "emma", "sfdfuse", "smfnet", "average", "max"} <= set(METHODS)


@pytest.mark.parametrize("name", METHODS)
def test_card_is_complete(name: str) -> None:
    card = mlfuse.get_card(name)
    assert card.name == name and card.paper and callable(card.builder)
    assert card.structural and set(card.structural) <= set(STRUCTURAL_MODALITIES)
    assert card.functional and set(card.functional) <= set(FUNCTIONAL_MODALITIES)
    assert card.output_rule in OUTPUT_RULES
    assert card.size_multiple >= 1 and min(card.min_size) >= 1
    assert card.min_size[0] <= H and card.min_size[1] <= W
    for rel_name in card.release_names:
        assert release_model(get_release(rel_name)) == name
    if card.default_weights is not None:
        assert card.needs_weights and card.default_weights in card.release_names
    if not card.needs_weights:
        assert card.default_weights is None and not card.releases
    assert len(set(card.tasks)) == len(card.tasks)
    if card.recipe is not None:
        assert get_recipe(name) is card.recipe and card.recipe.name == name


@pytest.mark.parametrize("name", METHODS)
def test_builds_and_fuses_odd_gray_and_colour(name: str, pair: dict[str, np.ndarray]) -> None:
    card = mlfuse.get_card(name)
    for task in card.tasks[1:]:  # every variant builds (the default one is fused below)
        assert _build(name, task=task).card.name == name  # a task may adjust the size rules (EMMA)
    model = _build(name)
    assert model.card is card and not model.training and model.weights_source is None
    gray = model.fuse(pair["vis_gray"], pair["ir"])
    assert gray.shape == (H, W) and gray.dtype == np.uint8
    colour = model.fuse(pair["vis_rgb"], pair["ir"])
    assert colour.shape == (H, W, 3) and colour.dtype == np.uint8
    assert np.array_equal(model.fuse(pair["vis_gray"], pair["ir"]), gray)  # deterministic


@pytest.mark.parametrize("name", [n for n in METHODS if mlfuse.get_card(n).needs_weights])
def test_checkpoint_layout_round_trips(name: str, tmp_path: Path) -> None:
    """state_dict -> the layout the method's files have (its authors' layout where it has one) -> a file ->
    ``create_model(weights=file)``: the same tensors."""
    model = _build(name)
    saved = model.authors_checkpoint() if hasattr(model, "authors_checkpoint") else model.state_dict()
    path = tmp_path / f"{name}.pth"
    torch.save(saved, path)
    loaded = mlfuse.create_model(name, weights=path)
    assert loaded.weights_source == str(path)
    want, got = model.state_dict(), loaded.state_dict()
    assert want.keys() == got.keys()
    for key, value in want.items():
        assert torch.equal(value, got[key]), key
