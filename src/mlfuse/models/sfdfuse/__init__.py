"""SFDFuse (zxp771/SFDFuse): the network, its losses, model card and training recipe.
Spec: ``shared/specs/sfdfuse.md``; shared blocks: :mod:`mlfuse.models.blocks`."""

from mlfuse.models.registry import ModelCard, register_model
from mlfuse.models.sfdfuse.network import SFDFuse
from mlfuse.models.sfdfuse.recipe import RECIPE

CARD = register_model(ModelCard(
    name="sfdfuse",
    builder=SFDFuse,
    paper="SFDFuse: Spatial and Frequency Feature Decomposition for Visible and Infrared Image Fusion "
          "(zxp771/SFDFuse)",
    structural=("visible",),
    functional=("infrared",),
    # Haar analysis (stride 2) needs even sizes: the authors crop odd sizes by one row/column, mlfuse
    # reflect-pads to even and crops the output back; the 7x7 reflect convs of CGAFusion need >= 4.
    min_size=(4, 4),
    size_multiple=2,
    # test.py: per-image min-max x255, truncated by astype(uint8)
    output_rule="minmax",
    default_weights=None,
    needs_weights=True,
    notes="input 1 = visible, input 2 = infrared (an IVIF method: no MIF model exists). No weights are "
          "shipped: pass --weights FILE; the authors' SFDFuse_best.pth loads directly. Odd sizes are "
          "reflect-padded to even and cropped back (the authors' code drops the last row/column).",
    tasks=SFDFuse.TASKS,
    recipe=RECIPE,
))

__all__ = ["CARD", "SFDFuse"]
