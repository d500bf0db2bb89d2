"""CDDFuse (Zhao et al., CVPR 2023): the network, its losses, model card and training recipe.
Spec: ``shared/specs/cddfuse.md``; shared blocks: :mod:`mlfuse.models.blocks`."""

from mlfuse.models.cddfuse.network import TASKS, CDDFuse
from mlfuse.models.cddfuse.recipe import RECIPE
from mlfuse.models.registry import ModelCard, register_model

CARD = register_model(ModelCard(
    name="cddfuse",
    builder=CDDFuse,
    paper="CDDFuse: Correlation-Driven Dual-Branch Feature Decomposition for Multi-Modality Image Fusion "
          "(Zhao et al., CVPR 2023; Zhaozixiang1228/MMIF-CDDFuse)",
    # any H, W; the INN bottlenecks reflect-pad by 1, which needs at least 2 pixels per side
    min_size=(2, 2),
    size_multiple=1,
    # test_IVF.py / test_MIF.py: per-image min-max x255 saved through imageio (round, ties down)
    output_rule="minmax-round",
    default_weights=None,
    needs_weights=True,
    notes="input 1 = visible/MRI, input 2 = infrared/CT/PET/SPECT; any H, W >= 2. No weights are shipped "
          "(none could be trained here): pass --weights FILE; the authors' CDDFuse_IVF.pth / CDDFuse_MIF.pth "
          "load directly. --task ivf (default, visible residual), mif (the MIF checkpoint: no residual), "
          "mif-ivfckpt (the IVF checkpoint on medical pairs: IR+VIS residual, as test_MIF.py).",
    tasks=TASKS,
    recipe=RECIPE,
))

__all__ = ["CARD", "CDDFuse"]
