"""SFDFuse's two training losses (``train.py`` + ``utils/loss_fft.py``; ``shared/specs/sfdfuse.md`` §3).

Phase I: as CDDFuse Phase I (:func:`mlfuse.models.cddfuse.losses.phase1_losses`) with kornia >= 0.6's
``SSIMLoss`` (eps 1e-12, ``clamp((1 - ssim)/2, 0, 1)``); the IR reconstruction's detail feature is chosen
by the model (``SFDFuse(ir_detail=...)``). Phase II: ``Fusionloss_fft(V, I, F) + 2 L_decomp`` with
``Fusionloss_fft = L1(max(V,I), F) + 10 L1(max(S V, S I), S F) + SSIMLoss(max(V,I), F)``. Whether the
release was trained with that SSIM term is unknown (the imported ``utils.loss`` does not exist):
``fusion_ssim=True`` (default) is the existing file, ``False`` the CDDFuse form.
"""

from __future__ import annotations

import torch
from torch import Tensor

from mlfuse.models.blocks.losses import decomposition_loss, fusion_loss, ssim_loss
from mlfuse.models.cddfuse import losses as cdd

SSIM = "kornia0.6"
COEFFS = dict(cdd.COEFFS)


def phase1_losses(out: dict[str, Tensor], vis: Tensor, ir: Tensor, coeffs: dict[str, float] | None = None,
                  sync: bool = False) -> dict[str, Tensor]:
    """Phase I terms from ``model(vis, ir, phase=1)``'s outputs (names as ``losses.json``)."""
    return cdd.phase1_losses(out, vis, ir, ssim_variant=SSIM, coeffs=coeffs, sync=sync)


def phase2_losses(out: dict[str, Tensor], vis: Tensor, ir: Tensor, fusion_ssim: bool = True,
                  coeffs: dict[str, float] | None = None, include_unused: bool = False, sync: bool = False
                  ) -> dict[str, Tensor]:
    """Phase II terms from ``model(vis, ir, phase=2)``'s outputs. ``fusion_ssim``: include the SSIM
    term of ``loss_fft.py`` (default, faithful to the existing file) or not (CDDFuse form)."""
    c = {**COEFFS, **(coeffs or {})}
    loss_decomp, cc_b, cc_d = decomposition_loss(out["V_B"], out["I_B"], out["V_D"], out["I_D"], sync=sync)
    without_ssim, loss_in, loss_grad = fusion_loss(vis, ir, out["F"])
    loss_ssim = ssim_loss(torch.max(vis[:, :1], ir), out["F"], SSIM)
    fusionloss = without_ssim + loss_ssim if fusion_ssim else without_ssim
    terms = {"cc_loss_B": cc_b, "cc_loss_D": cc_d, "loss_decomp": loss_decomp, "fusionloss": fusionloss,
             "fusion_loss_in": loss_in, "fusion_loss_grad": loss_grad, "fusion_loss_ssim": loss_ssim,
             "fusionloss_without_ssim": without_ssim, "loss_total": fusionloss + c["decomp"] * loss_decomp}
    if include_unused:
        terms["mse_loss_V_unused"] = cdd.reconstruction_loss(vis, out["F"], SSIM)[0]
        terms["mse_loss_I_unused"] = cdd.reconstruction_loss(ir, out["F"], SSIM)[0]
    return terms
