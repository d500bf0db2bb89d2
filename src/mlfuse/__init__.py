"""mlfuse: multi-modality image fusion (infrared + visible, medical) with every method behind one API.

>>> import mlfuse
>>> model = mlfuse.create_model("mlfuse", weights="mlfuse-paper")   # after `mlfuse weights fetch`
>>> fused = model.fuse("vis.png", "ir.png")                           # structural, functional
"""

from mlfuse.errors import MLFuseError
from mlfuse.fuse import fuse_folder, fuse_pair
from mlfuse.registry import create_model, get_card, list_models

__version__ = "0.1.0"

__all__ = ["MLFuseError", "__version__", "create_model", "fuse_folder", "fuse_pair", "get_card", "list_models"]
