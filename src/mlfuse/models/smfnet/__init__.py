"""SMFNet (Abraham-Einstein/SMFNet, IEEE TMM 2025): the network with its graph-reasoning branch, its losses,
the authors' float YCrCb colour round trip, model card and two-phase training recipe.
Spec: ``shared/specs/smfnet.md``; shared blocks: :mod:`mlfuse.models.blocks`."""

from mlfuse.models.registry import ModelCard, register_model
from mlfuse.models.smfnet.color import paper_color
from mlfuse.models.smfnet.network import SMFNet
from mlfuse.models.smfnet.recipe import RECIPE

CARD = register_model(ModelCard(
    name="smfnet",
    builder=SMFNet,
    paper="SMFNet: A Semantic-Aware and Multi-Guided Network for Infrared-Visible Image Fusion "
          "(IEEE TMM 2025, arXiv 2407.06159; Abraham-Einstein/SMFNet)",
    # any H, W; the INN bottlenecks reflect-pad by 1, which needs at least 2 pixels per side
    min_size=(2, 2),
    size_multiple=1,
    # test.py: per-image min-max x255 written by cv2.imwrite (round to nearest); ties are measure-zero
    output_rule="minmax-round",
    default_weights=None,
    needs_weights=True,
    notes="input 1 = visible (MRI for medical pairs), input 2 = infrared (CT/PET/SPECT). No weights are "
          "shipped: pass --weights FILE; the authors' models/model_VIF.pth loads directly. --color paper "
          "reproduces test.py's colour output (float OpenCV YCrCb round trip, unrounded visible Y as input).",
    # fuse.py consults this for --color paper: the authors' inputs and colour output (smfnet/color.py)
    paper_color=paper_color,
    recipe=RECIPE,
))

__all__ = ["CARD", "SMFNet"]
