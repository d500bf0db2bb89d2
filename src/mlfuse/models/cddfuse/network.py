"""CDDFuse (Zhao et al., "Correlation-Driven Dual-Branch Feature Decomposition for Multi-Modality
Image Fusion", CVPR 2023; authors' code Zhaozixiang1228/MMIF-CDDFuse at fd8da1f).

Written from ``shared/specs/cddfuse.md`` section 2 and the shared blocks of
:mod:`mlfuse.models.blocks`. The four sub-networks are attributes named after the authors' checkpoint
keys (``DIDF_Encoder``, ``DIDF_Decoder``, ``BaseFuseLayer``, ``DetailFuseLayer``), so the authors'
files (a dict of ``module.``-prefixed DataParallel state_dicts) map onto this module's flat
state_dict by :meth:`CDDFuse.convert_checkpoint`, and :meth:`CDDFuse.authors_checkpoint` writes them back.

Roles: structural = visible / MRI (the authors' ``data_VIS``), functional = infrared / CT / PET / SPECT
(``data_IR``).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from mlfuse.inference.tiling import TileSpec
from mlfuse.models.base import FusionModel
from mlfuse.models.blocks import DetailFeatureExtraction, LiteBlock, OverlapPatchEmbed, RestormerBlock
from mlfuse.models.blocks.checkpoints import AuthorsLayoutMixin

#: decoder residual (pre-sigmoid) per use: IVF model, MIF with the IVF checkpoint, MIF checkpoint
RESIDUALS = ("vis", "ir+vis", "none")
TASK_RESIDUAL = {"ivf": "vis", "mif": "none", "mif-ivfckpt": "ir+vis"}
TASKS = tuple(TASK_RESIDUAL)


class RestormerEncoder(nn.Module):
    """``DIDF_Encoder``: patch embedding, 4 Restormer blocks, then a Lite block (base, global) and three
    INN coupling nodes (detail, local) in parallel on the same shallow feature (spec §2.1)."""

    def __init__(self, inp_channels: int = 1, dim: int = 64, num_blocks: int = 4, heads: int = 8,
                 ffn_expansion_factor: float = 2.0, bias: bool = False) -> None:
        super().__init__()
        self.patch_embed = OverlapPatchEmbed(inp_channels, dim)
        self.encoder_level1 = nn.Sequential(
            *[RestormerBlock(dim, heads, ffn_expansion_factor, bias) for _ in range(num_blocks)]
        )
        self.baseFeature = LiteBlock(dim, heads)
        self.detailFeature = DetailFeatureExtraction(3, channels=dim)

    def forward(self, img: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """img (B,1,H,W) -> (base, detail, shallow), each (B,64,H,W)."""
        shallow = self.encoder_level1(self.patch_embed(img))
        return self.baseFeature(shallow), self.detailFeature(shallow), shallow


class RestormerDecoder(nn.Module):
    """``DIDF_Decoder``: conv1x1 128->64 on cat(base, detail), 4 Restormer blocks, conv3x3 64->32,
    LeakyReLU, conv3x3 32->1, optional pre-sigmoid image residual, sigmoid (spec §2.2)."""

    def __init__(self, out_channels: int = 1, dim: int = 64, num_blocks: int = 4, heads: int = 8,
                 ffn_expansion_factor: float = 2.0, bias: bool = False) -> None:
        super().__init__()
        self.reduce_channel = nn.Conv2d(dim * 2, dim, 1, bias=bias)
        self.encoder_level2 = nn.Sequential(
            *[RestormerBlock(dim, heads, ffn_expansion_factor, bias) for _ in range(num_blocks)]
        )
        self.output = nn.Sequential(
            nn.Conv2d(dim, dim // 2, 3, 1, 1, bias=bias),
            nn.LeakyReLU(),
            nn.Conv2d(dim // 2, out_channels, 3, 1, 1, bias=bias),
        )
        self.sigmoid = nn.Sigmoid()

    def forward(self, img: Tensor | None, base: Tensor, detail: Tensor) -> tuple[Tensor, Tensor]:
        """-> (sigmoid(output(...) [+ img]), the 1x1-reduced feature) — the second value is the
        authors' (quirk 4); nothing uses it."""
        z = self.reduce_channel(torch.cat((base, detail), dim=1))
        o = self.output(self.encoder_level2(z))
        if img is not None:
            o = o + img
        return self.sigmoid(o), z


class CDDFuse(AuthorsLayoutMixin, FusionModel):
    """The whole CDDFuse network (1,188,272 parameters).

    ``task``: ``"ivf"`` (default; decoder residual = the visible image, ``test_IVF.py``), ``"mif"``
    (the authors' MIF checkpoint: no residual, ``test_MIF.py`` with ``CDDFuse_MIF.pth``) or
    ``"mif-ivfckpt"`` (``test_MIF.py`` run with the IVF checkpoint: residual = IR + VIS). ``residual``
    overrides the task's residual (one of ``"vis"``, ``"ir+vis"``, ``"none"``).

    ``forward(vis, ir)`` returns the raw fused image (B,1,H,W) in (0,1); ``forward(vis, ir, phase=1|2)``
    returns the training intermediates of the authors' ``train.py`` (see :meth:`forward`).
    """

    TOP_LEVEL = ("DIDF_Encoder", "DIDF_Decoder", "BaseFuseLayer", "DetailFuseLayer")

    #: exact tiling (mlfuse.inference.tiling): receptive radius 27 = patch embed 1 + 4 Restormer blocks x 2
    #: (two depthwise 3x3 each) + 3 INN nodes x 2 + DetailFuse 2 (the detail path is the longest)
    #: + 4 decoder blocks x 2 + two 3x3 convs; the 15 channel attentions are whole-image sums,
    #: streamed in 11 passes (one per level: 4 + 1 encoder blocks, BaseFuse, 4 decoder blocks; then
    #: the output pass)
    TILE_SPEC = TileSpec(
        halo=27, align=1, streaming=True,
        global_ops=("channel attention (MDTA, Lite): Q K^T and |q|, |k| summed over all H*W positions",),
        # benchmarks/bench_memory.py (one thread): untiled 6062 B/px at 192x256, tiled 9402 B per
        # window pixel with 150x150 windows (both with fixed costs included)
        bytes_per_pixel=8192, untiled_bytes_per_pixel=6144,
    )

    def __init__(self, task: str = "ivf", residual: str | None = None, dim: int = 64, heads: int = 8) -> None:
        super().__init__()
        if task not in TASK_RESIDUAL:
            raise ValueError(f"CDDFuse task '{task}': choose from {', '.join(TASKS)}")
        residual = residual or TASK_RESIDUAL[task]
        if residual not in RESIDUALS:
            raise ValueError(f"CDDFuse residual '{residual}': choose from {', '.join(RESIDUALS)}")
        self.task = task
        self.residual = residual
        self.DIDF_Encoder = RestormerEncoder(dim=dim, heads=heads)
        self.DIDF_Decoder = RestormerDecoder(dim=dim, heads=heads)
        self.BaseFuseLayer = LiteBlock(dim, heads, ffn_expansion_factor=1.0)
        self.DetailFuseLayer = DetailFeatureExtraction(num_layers=1, channels=dim)

    # -- forward -----------------------------------------------------------------------------------
    def residual_image(self, vis: Tensor, ir: Tensor, residual: str | None = None) -> Tensor | None:
        residual = residual or self.residual
        if residual == "vis":
            return vis
        if residual == "ir+vis":
            return ir + vis  # test_MIF.py: data_IR + data_VIS
        if residual == "none":
            return None
        raise ValueError(f"CDDFuse residual '{residual}': choose from {', '.join(RESIDUALS)}")

    def fuse_features(self, vis: Tensor, ir: Tensor) -> dict[str, Tensor]:
        """Encoder on both images (VIS first) and the two fusion layers on the summed features
        (``V + I``, the test scripts' order)."""
        v_b, v_d, _ = self.DIDF_Encoder(vis)
        i_b, i_d, _ = self.DIDF_Encoder(ir)
        return {"V_B": v_b, "V_D": v_d, "I_B": i_b, "I_D": i_d,
                "F_B": self.BaseFuseLayer(v_b + i_b), "F_D": self.DetailFuseLayer(v_d + i_d)}

    def forward(self, vis: Tensor, ir: Tensor, phase: int | None = None,
                residual: str | None = None) -> Tensor | dict[str, Tensor]:
        """``phase=None``: the fused image (spec §3), decoder residual by ``residual`` or the task.

        ``phase=1`` (train.py Phase I): dict with the encoder features ``V_B, V_D, I_B, I_D`` and the
        reconstructions ``V_hat = Dec(V, V_B, V_D)``, ``I_hat = Dec(I, I_B, I_D)`` (no residual when the
        model's residual is ``"none"``, the assumed recipe of the unreleased MIF training).
        ``phase=2`` (Phase II): the features and ``F = Dec(residual, BaseFuse(I_B + V_B),
        DetailFuse(I_D + V_D))`` (train.py sums IR first; bit-identical either way).
        """
        if phase is None:
            feats = self.fuse_features(vis, ir)
            return self.DIDF_Decoder(self.residual_image(vis, ir, residual), feats["F_B"], feats["F_D"])[0]
        v_b, v_d, _ = self.DIDF_Encoder(vis)
        i_b, i_d, _ = self.DIDF_Encoder(ir)
        out = {"V_B": v_b, "V_D": v_d, "I_B": i_b, "I_D": i_d}
        if phase == 1:
            own = self.residual != "none"  # a residual-free (MIF) decoder reconstructs without one too
            out["V_hat"] = self.DIDF_Decoder(vis if own else None, v_b, v_d)[0]
            out["I_hat"] = self.DIDF_Decoder(ir if own else None, i_b, i_d)[0]
        elif phase == 2:
            f_b = self.BaseFuseLayer(i_b + v_b)
            f_d = self.DetailFuseLayer(i_d + v_d)
            out["F"] = self.DIDF_Decoder(self.residual_image(vis, ir, residual), f_b, f_d)[0]
        else:
            raise ValueError(f"phase must be None, 1 or 2, not {phase!r}")
        return out

    def fusion_forward(self, structural: Tensor, functional: Tensor) -> Tensor:
        return self(structural, functional)
