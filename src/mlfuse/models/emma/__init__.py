"""EMMA (Zhao et al., CVPR 2024): the U-Fuser, the pseudo-sensing UNet5, the equivariant loss, the
model card and the training recipe. Spec: ``shared/specs/emma.md``; shared blocks: :mod:`mlfuse.models.blocks`."""

from mlfuse.models.emma.network import EMMA, TASKS, UNet5, load_unet5
from mlfuse.models.emma.recipe import RECIPE
from mlfuse.models.registry import ModelCard, register_model

CARD = register_model(ModelCard(
    name="emma",
    builder=EMMA,
    paper="Equivariant Multi-Modality Image Fusion (Zhao et al., CVPR 2024; Zhaozixiang1228/MMIF-EMMA)",
    # three stride-2 stages: H, W multiples of 8 (reflect-padded and cropped back); the reflect-padded
    # 3x3 convs of the coarsest level need at least 2 pixels there
    min_size=(16, 16),
    size_multiple=8,
    # test.py: per-image (or, tiled, per-canvas) min-max x255 saved through imageio (round, ties down)
    output_rule="minmax-round",
    default_weights=None,
    needs_weights=True,
    notes="input 1 = visible/MRI, input 2 = infrared/CT/PET/SPECT (the authors' Ufuser takes IR first; "
          "mlfuse passes the roles explicitly); one checkpoint for IVF and MIF. No weights are shipped: "
          "pass --weights FILE; the authors' EMMA.pth loads directly. Sizes: reflect-padded to a multiple "
          "of 8 and cropped back (--task pad, default); --task authors-tiles reproduces test.py's 4-pass "
          "tiling for sizes that are not multiples of 32 (inputs >= 32x32).",
    tasks=TASKS,
    recipe=RECIPE,
))

__all__ = ["CARD", "EMMA", "UNet5", "load_unet5"]
