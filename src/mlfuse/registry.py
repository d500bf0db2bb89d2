"""The public import path of the model registry, :mod:`mlfuse.models.registry` (kept for callers).

The registry lives inside :mod:`mlfuse.models`, so importing it first runs ``mlfuse/models/__init__.py``,
which registers every method (as timm's ``models/__init__.py``): a lookup never imports upward.
"""

from mlfuse.models.registry import _MODELS as _MODELS
from mlfuse.models.registry import (
    FUNCTIONAL_MODALITIES,
    STRUCTURAL_MODALITIES,
    CheckpointInfo,
    ModelCard,
    create_model,
    get_card,
    get_recipe,
    identify_checkpoint,
    list_models,
    list_recipes,
    model_for_weights,
    register_model,
    release_model,
    releases_of,
    resolve_weights,
)

__all__ = ["FUNCTIONAL_MODALITIES", "STRUCTURAL_MODALITIES", "CheckpointInfo", "ModelCard", "create_model",
           "get_card", "get_recipe", "identify_checkpoint", "list_models", "list_recipes", "model_for_weights",
           "register_model", "release_model", "releases_of", "resolve_weights"]
