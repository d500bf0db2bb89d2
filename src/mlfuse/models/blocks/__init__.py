"""Building blocks shared by the CDDFuse family (CDDFuse, SFDFuse, EMMA, SMFNet).

Written once from ``shared/specs/common-cddfuse-family.md`` section 2 ("common §2.x"); every class keeps the
attribute names of the authors' code (Restormer / CDDFuse), so that their checkpoints load with
``strict=True`` into any network assembled from these blocks.

| block | common § | keys |
|---|---|---|
| :class:`LayerNorm` (channel LayerNorm, WithBias / BiasFree) | 2.1 | ``body.weight``, ``body.bias`` |
| :class:`MDTA` (Restormer "Attention") | 2.2 | ``temperature``, ``qkv``, ``qkv_dwconv``, ``project_out`` |
| :class:`AttentionBase` (Lite attention) | 2.3 | ``scale``, ``qkv1``, ``qkv2``, ``proj`` |
| :class:`GDFN` (Restormer "FeedForward") | 2.4 | ``project_in``, ``dwconv``, ``project_out`` |
| :class:`LiteMlp` (CDDFuse "Mlp") | 2.4 | ``project_in``, ``dwconv``, ``project_out`` |
| :class:`RestormerBlock` (Restormer "TransformerBlock") | 2.5 | ``norm1``, ``attn``, ``norm2``, ``ffn`` |
| :class:`LiteBlock` (CDDFuse "BaseFeatureExtraction") | 2.5 | ``norm1``, ``attn``, ``norm2``, ``mlp`` |
| :class:`InvertedResidualBlock` | 2.6 | ``bottleneckBlock.<i>`` |
| :class:`DetailNode`, :class:`DetailFeatureExtraction` | 2.6 | ``theta_{phi,rho,eta}``, ``shffleconv``, ``net.<i>`` |
| :class:`OverlapPatchEmbed`, :class:`DropPath` | 2.7 | ``proj`` |

The losses of the family (correlation coefficient, Sobel fusion loss, the two kornia SSIM losses, the
spatial-gradient loss) are in :mod:`mlfuse.models.blocks.losses`.
"""

from mlfuse.models.blocks.attention import MDTA, AttentionBase, l2_channel_attention
from mlfuse.models.blocks.feedforward import GDFN, LiteMlp
from mlfuse.models.blocks.inn import DetailFeatureExtraction, DetailNode, InvertedResidualBlock
from mlfuse.models.blocks.misc import DropPath, OverlapPatchEmbed
from mlfuse.models.blocks.norm import LayerNorm
from mlfuse.models.blocks.transformer import LiteBlock, RestormerBlock

__all__ = [
    "GDFN",
    "MDTA",
    "AttentionBase",
    "DetailFeatureExtraction",
    "DetailNode",
    "DropPath",
    "InvertedResidualBlock",
    "LayerNorm",
    "LiteBlock",
    "LiteMlp",
    "OverlapPatchEmbed",
    "RestormerBlock",
    "l2_channel_attention",
]
