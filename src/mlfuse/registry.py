"""One registry for every fusion method: ``create_model(name, weights=...)`` builds any of them.

Each method declares a :class:`ModelCard` beside its network (input roles, size constraints,
output rule, weight releases), in the manner of timm's ``register_model`` + pretrained configs.
The CLI and the fusion pipeline read everything method-specific from the card.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from mlfuse.errors import MLFuseError, WeightsNotFoundError
from mlfuse.weights.checkpoint import load_into, read_checkpoint
from mlfuse.weights.store import get_release, release_path

#: the two input roles of every method: a structural/texture image and a functional/intensity one
STRUCTURAL_MODALITIES = ("visible", "mri")
FUNCTIONAL_MODALITIES = ("infrared", "ct", "pet", "spect")


@dataclass(frozen=True)
class ModelCard:
    """What the rest of mlfuse needs to know about a method.

    ``min_size``: smallest (H, W) the network accepts (smaller inputs are reflect-padded);
    ``size_multiple``: H and W must be multiples of it (inputs are reflect-padded up);
    ``output_rule``: how the raw output becomes 8 bits by default (``"minmax"``: the authors'
    per-image min-max x255 truncation; ``"clamp"``: clamp to [0,1] x255 round);
    ``releases``: names of downloadable weight releases; ``default_weights``: the release (or
    packaged file) used when the user gives none, ``None`` if weights must be supplied.
    """

    name: str
    builder: Callable[..., nn.Module]
    paper: str
    structural: tuple[str, ...] = STRUCTURAL_MODALITIES
    functional: tuple[str, ...] = FUNCTIONAL_MODALITIES
    min_size: tuple[int, int] = (1, 1)
    size_multiple: int = 1
    output_rule: str = "minmax"
    releases: tuple[str, ...] = ()
    default_weights: str | None = None
    needs_weights: bool = True
    notes: str = ""
    extra: dict = field(default_factory=dict)


_MODELS: dict[str, ModelCard] = {}


def register_model(card: ModelCard) -> ModelCard:
    if card.name in _MODELS:
        raise ValueError(f"model '{card.name}' registered twice")
    _MODELS[card.name] = card
    return card


def _ensure_registered() -> None:
    import mlfuse.models  # noqa: F401  (importing registers every method)


def list_models() -> list[str]:
    _ensure_registered()
    return sorted(_MODELS)


def get_card(name: str) -> ModelCard:
    _ensure_registered()
    try:
        return _MODELS[name]
    except KeyError:
        raise MLFuseError(f"unknown model '{name}' (available: {', '.join(sorted(_MODELS))})") from None


def resolve_weights(card: ModelCard, weights: str | Path | None) -> Path | None:
    """Turn a weights argument into a file: ``None`` -> no weights (random init),
    ``"default"`` -> the card's default, a release name -> its cached file, else a path."""
    if weights is None:
        return None
    if isinstance(weights, str) and weights == "default":
        if card.default_weights is None:
            raise WeightsNotFoundError(
                f"model '{card.name}' ships no default weights: pass --weights FILE "
                "(its authors' checkpoint files load directly)"
            )
        weights = card.default_weights
    if isinstance(weights, str) and weights in card.releases:
        path = release_path(weights)
        if not path.is_file():
            url = get_release(weights).url
            raise WeightsNotFoundError(
                f"no weights for '{card.name}': run `mlfuse weights fetch {weights}` (downloads {url}) "
                "or pass --weights FILE"
            )
        return path
    path = Path(weights)
    if not path.exists():
        raise WeightsNotFoundError(f"{path}: no such weights file")
    return path


def create_model(name: str, weights: str | Path | None = "default", *, device: str | torch.device = "cpu",
                 **kwargs: object) -> nn.Module:
    """Build method ``name`` in eval mode with its weights loaded (``strict=True``).

    ``weights``: ``"default"`` (the card's default weights), a release name (e.g. ``"mlfuse-paper"``),
    a file path (.pth/.pt via ``torch.load(weights_only=True)``, or .safetensors), or ``None`` for
    an untrained (randomly initialised) network. The returned module has ``.card`` and ``.fuse()``.
    """
    card = get_card(name)
    model = card.builder(**kwargs)
    model.card = card
    path = resolve_weights(card, weights) if card.needs_weights else None
    if path is not None:
        load_into(model, read_checkpoint(path, convert=getattr(model, "convert_checkpoint", None)), path)
        model.weights_source = str(path)
    else:
        model.weights_source = None
    return model.to(device).eval()
