"""CDDFuse's two training losses (``train.py``; ``shared/specs/cddfuse.md`` §4, common §3).

Phase I (encoder + decoder): ``L = [5 SSIM(V, V^) + MSE(V, V^)] + [5 SSIM(I, I^) + MSE(I, I^)]
+ 2 cc(V_D, I_D)^2 / (1.01 + cc(V_B, I_B)) + 5 L1(SG(V), SG(V^))`` with kornia 0.2.0's SSIM loss and
kornia's normalised spatial gradient SG. Phase II (all modules): ``L = Fusionloss(V, I, F) + 2 L_decomp``.

The returned dicts use the authors' variable names (those of ``losses.json``); ``loss_total`` is the
one to backpropagate.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from mlfuse.models.blocks.losses import decomposition_loss, fusion_loss, gradient_loss, ssim_loss

#: the authors' coefficients (train.py): coeff_mse_loss_VF, coeff_mse_loss_IF, coeff_decomp, coeff_tv
COEFFS = {"mse_V": 1.0, "mse_I": 1.0, "decomp": 2.0, "tv": 5.0}


def reconstruction_loss(target: Tensor, pred: Tensor, ssim_variant: str = "kornia0.2") -> tuple[Tensor, Tensor, Tensor]:
    """``(5 SSIM + MSE, SSIM, MSE)`` of a reconstruction (the authors' ``mse_loss_V``)."""
    s = ssim_loss(target, pred, ssim_variant)
    m = F.mse_loss(target, pred)
    return 5 * s + m, s, m


def phase1_losses(out: dict[str, Tensor], vis: Tensor, ir: Tensor, ssim_variant: str = "kornia0.2",
                  coeffs: dict[str, float] | None = None, sync: bool = False) -> dict[str, Tensor]:
    """Phase I terms from ``model(vis, ir, phase=1)``'s outputs. ``sync``: global-batch correlations in
    a DDP run (:func:`~mlfuse.models.blocks.losses.decomposition_loss`)."""
    c = {**COEFFS, **(coeffs or {})}
    loss_decomp, cc_b, cc_d = decomposition_loss(out["V_B"], out["I_B"], out["V_D"], out["I_D"], sync=sync)
    rec_v, ssim_v, mse_v = reconstruction_loss(vis, out["V_hat"], ssim_variant)
    rec_i, ssim_i, mse_i = reconstruction_loss(ir, out["I_hat"], ssim_variant)
    grad = gradient_loss(vis, out["V_hat"])
    total = c["mse_V"] * rec_v + c["mse_I"] * rec_i + c["decomp"] * loss_decomp + c["tv"] * grad
    return {"cc_loss_B": cc_b, "cc_loss_D": cc_d, "ssim_loss_V": ssim_v, "mse_V": mse_v, "mse_loss_V": rec_v,
            "ssim_loss_I": ssim_i, "mse_I": mse_i, "mse_loss_I": rec_i, "Gradient_loss": grad,
            "loss_decomp": loss_decomp, "loss_total": total}


def phase2_losses(out: dict[str, Tensor], vis: Tensor, ir: Tensor, coeffs: dict[str, float] | None = None,
                  include_unused: bool = False, ssim_variant: str = "kornia0.2", sync: bool = False
                  ) -> dict[str, Tensor]:
    """Phase II terms from ``model(vis, ir, phase=2)``'s outputs. ``include_unused`` adds the
    reconstruction terms of F that the authors' script computes and never uses (quirk 5)."""
    c = {**COEFFS, **(coeffs or {})}
    loss_decomp, cc_b, cc_d = decomposition_loss(out["V_B"], out["I_B"], out["V_D"], out["I_D"], sync=sync)
    fusionloss, loss_in, loss_grad = fusion_loss(vis, ir, out["F"])
    terms = {"cc_loss_B": cc_b, "cc_loss_D": cc_d, "loss_decomp": loss_decomp, "fusionloss": fusionloss,
             "fusion_loss_in": loss_in, "fusion_loss_grad": loss_grad,
             "loss_total": fusionloss + c["decomp"] * loss_decomp}
    if include_unused:
        terms["mse_loss_V_unused"] = reconstruction_loss(vis, out["F"], ssim_variant)[0]
        terms["mse_loss_I_unused"] = reconstruction_loss(ir, out["F"], ssim_variant)[0]
    return terms
