"""mlfuse: multi-modality image fusion (infrared + visible, medical) with every method behind one API.

>>> import mlfuse
>>> model = mlfuse.create_model("mlfuse", weights="mlfuse-paper")   # after `mlfuse weights fetch`
>>> fused = model.fuse("vis.png", "ir.png")                           # structural, functional

The API names are imported on first use, so ``import mlfuse`` (and ``mlfuse --help``) does not load
PyTorch.
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import TYPE_CHECKING

from mlfuse.errors import MLFuseError

__version__ = "0.1.0"

_LAZY = {"FuseOptions": "mlfuse.inference.fuse", "fuse_folder": "mlfuse.inference.fuse",
         "fuse_pair": "mlfuse.inference.fuse", "create_model": "mlfuse.registry", "get_card": "mlfuse.registry",
         "list_models": "mlfuse.registry"}

if TYPE_CHECKING:
    from mlfuse.inference.fuse import FuseOptions, fuse_folder, fuse_pair
    from mlfuse.registry import create_model, get_card, list_models


def __getattr__(name: str) -> object:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    if importlib.util.find_spec(f"mlfuse.{name}") is not None:  # `import mlfuse; mlfuse.inference.tiling...` as before
        return importlib.import_module(f"mlfuse.{name}")
    raise AttributeError(f"module 'mlfuse' has no attribute {name!r}")


__all__ = ["FuseOptions", "MLFuseError", "__version__", "create_model", "fuse_folder", "fuse_pair", "get_card",
           "list_models"]
