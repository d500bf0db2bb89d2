"""SMFNet's two training losses (``train.py``; ``shared/specs/smfnet.md`` §3, common §3).

Phase I (encoder, decoder, graph):
``L_V = 8 SSIM(V, V^) + Seg(V^, V) + 10 SobelL1(V, V^)``, ``L_I = 8 SSIM(I, I^) + MSE(Gram I, Gram I^) +
10 SobelL1(I, I^)``, ``L = L_V + L_I + 2 cc(V_D, I_D)^2 / (1.01 + cc(V_B, I_B)) + 5 L1(SG(V), SG(V^))``.
Phase II (all five): ``L = Fusionloss(V, I, F) + 2 (cc_D^2 + cc_D^2) / (1.01 + cc_B)``.

``faithful=True`` (default) reproduces the authors' arithmetic, bugs included:

* quirk 2 — their ``cc`` is one Pearson correlation over the whole tensor returned as a Python float
  (:func:`global_cc`), so the decomposition term is a constant without gradient (computed in float64);
* quirk 3 — Phase II uses ``cc_D^2`` twice; ``cc_G = cc(GCN_I, GCN_V)`` is computed and unused;
* quirk 4 — the Lovász "segmentation" term on a one-channel softmax is the constant
  ``1 - n0/P`` (n0 = pixels of V exactly 0, P = B H W; the integer 0 when n0 = 0): :func:`seg_loss`.

``faithful=False`` corrects them: the differentiable CDDFuse ``cc`` (common §3.1, global-batch under DDP),
``cc_G^2`` as the second Phase II term, and no segmentation term. The 1x1 "Gram" term (quirk 5) stays.

Returned dicts use the names of the reference ``losses.json``; ``loss_total`` is the one to backpropagate.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from mlfuse.models.blocks.losses import (
    cc,
    cc_map,
    fusion_loss,
    global_batch_mean,
    gradient_loss,
    sobel_magnitude,
    ssim_loss,
)

#: the authors' coefficients (train.py)
COEFFS = {"ssim": 8.0, "seg": 1.0, "sobel": 10.0, "gram": 1.0, "decomp": 2.0, "tv": 5.0}


def global_cc(a: Tensor, b: Tensor) -> float:
    """SMFNet's ``cc``: one Pearson correlation over all N, C, H, W values, ε = float32 eps, clamped to
    [-1, 1], returned as a Python float (no gradient; quirk 2)."""
    eps = torch.finfo(torch.float32).eps
    with torch.no_grad():
        a = a - a.mean()
        b = b - b.mean()
        r = torch.sum(a * b) / (eps + torch.sqrt(torch.sum(a**2)) * torch.sqrt(torch.sum(b**2)))
        return float(torch.clamp(r, -1.0, 1.0).item())


def seg_loss(pred: Tensor, target: Tensor) -> Tensor | int:
    """The authors' Lovász-softmax term on ``softmax(pred, dim=1)`` (identically 1 for one channel) with the
    intensities of ``target`` as labels, class 0 only — in closed form ``1 - n0/P`` as a constant tensor,
    or the integer 0 when no pixel of ``target`` is exactly 0 (quirk 4). It never trains anything."""
    n0 = int((target == 0).sum())
    if n0 == 0:
        return 0
    p = target.shape[0] * target.shape[2] * target.shape[3]
    return torch.tensor(1.0 - n0 / p, dtype=pred.dtype, device=pred.device)


def sobel_l1(a: Tensor, b: Tensor) -> Tensor:
    """``L1(S(a_1), S(b_1))`` with the zero-padded Sobel magnitude S (common §3.3) of channel 0."""
    return F.l1_loss(sobel_magnitude(a[:, :1]), sobel_magnitude(b[:, :1]))


def gram(y: Tensor) -> Tensor:
    """Gram matrix ``f f^T / (C H W)`` per sample (B, C, C); for one channel the mean of y^2."""
    b, c, h, w = y.shape
    f = y.reshape(b, c, h * w)
    return torch.bmm(f, f.transpose(1, 2)) / (c * h * w)


def gram_mse(a: Tensor, b: Tensor) -> Tensor:
    return F.mse_loss(gram(a), gram(b))


def _world() -> int:
    import torch.distributed as dist

    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def _diff_cc(a: Tensor, b: Tensor, world: int) -> Tensor:
    return cc(a, b) if world == 1 else global_batch_mean(cc_map(a, b))


def _scale_for_ddp(loss: Tensor, world: int) -> Tensor:
    """A non-mean loss computed from global-batch statistics: scale its gradient by the world size,
    which DDP's gradient averaging divides out again (as :func:`~mlfuse.models.blocks.losses.decomposition_loss`)."""
    return loss if world == 1 else loss + (world - 1) * (loss - loss.detach())


def _const(x: float, like: Tensor) -> Tensor:
    return torch.tensor(x, dtype=like.dtype, device=like.device)


def decomposition_terms(out: dict[str, Tensor], phase: int, faithful: bool = True, sync: bool = False
                        ) -> dict[str, Tensor | float]:
    """``cc_loss_B``, ``cc_loss_D`` (and ``cc_loss_G`` in Phase II) and ``loss_decomp`` (spec §3)."""
    if faithful:
        cc_b = global_cc(out["V_B"], out["I_B"])
        cc_d = global_cc(out["V_D"], out["I_D"])
        terms: dict[str, Tensor | float] = {"cc_loss_B": cc_b, "cc_loss_D": cc_d}
        if phase == 1:
            terms["loss_decomp"] = cc_d**2 / (1.01 + cc_b)
        else:
            terms["cc_loss_G"] = global_cc(out["GCN_I"], out["GCN_V"])
            terms["loss_decomp"] = (cc_d**2 + cc_d**2) / (1.01 + cc_b)  # quirk 3: cc_D twice
        return terms
    world = _world() if sync else 1
    cc_b = _diff_cc(out["V_B"], out["I_B"], world)
    cc_d = _diff_cc(out["V_D"], out["I_D"], world)
    terms = {"cc_loss_B": cc_b, "cc_loss_D": cc_d}
    if phase == 1:
        loss = cc_d**2 / (1.01 + cc_b)
    else:
        cc_g = _diff_cc(out["GCN_I"], out["GCN_V"], world)
        terms["cc_loss_G"] = cc_g
        loss = (cc_d**2 + cc_g**2) / (1.01 + cc_b)
    terms["loss_decomp"] = _scale_for_ddp(loss, world)
    return terms


def _as_tensors(terms: dict[str, Tensor | float | int], like: Tensor) -> dict[str, Tensor]:
    return {k: v if torch.is_tensor(v) else _const(float(v), like) for k, v in terms.items()}


def phase1_losses(out: dict[str, Tensor], vis: Tensor, ir: Tensor, faithful: bool = True,
                  coeffs: dict[str, float] | None = None, sync: bool = False) -> dict[str, Tensor]:
    """Phase I terms from ``model(vis, ir, phase=1)``. ``faithful=False``: differentiable decomposition loss,
    no segmentation term. ``sync``: global-batch correlations in a DDP run (fixed mode only)."""
    c = {**COEFFS, **(coeffs or {})}
    v_hat, i_hat = out["V_hat"], out["I_hat"]
    terms: dict[str, Tensor | float | int] = dict(decomposition_terms(out, 1, faithful, sync))
    ssim_v = ssim_loss(vis, v_hat, "kornia0.2")
    seg_v = seg_loss(v_hat, vis) if faithful else 0
    sobel_v = sobel_l1(vis, v_hat)
    mse_v = c["ssim"] * ssim_v + c["seg"] * seg_v + c["sobel"] * sobel_v
    ssim_i = ssim_loss(ir, i_hat, "kornia0.2")
    gram_i = gram_mse(ir, i_hat)
    sobel_i = sobel_l1(ir, i_hat)
    mse_i = c["ssim"] * ssim_i + c["gram"] * gram_i + c["sobel"] * sobel_i
    grad = gradient_loss(vis, v_hat)
    total = mse_v + mse_i + c["decomp"] * terms["loss_decomp"] + c["tv"] * grad
    terms.update(ssim_loss_V=ssim_v, seg_loss_V=seg_v, sobel_l1_V=sobel_v, mse_loss_V=mse_v, ssim_loss_I=ssim_i,
                 gram_mse_I=gram_i, sobel_l1_I=sobel_i, mse_loss_I=mse_i, Gradient_loss=grad, loss_total=total)
    return _as_tensors(terms, total)


def phase2_losses(out: dict[str, Tensor], vis: Tensor, ir: Tensor, faithful: bool = True,
                  coeffs: dict[str, float] | None = None, sync: bool = False) -> dict[str, Tensor]:
    """Phase II terms from ``model(vis, ir, phase=2)``: ``Fusionloss + 2 loss_decomp``."""
    c = {**COEFFS, **(coeffs or {})}
    terms: dict[str, Tensor | float | int] = dict(decomposition_terms(out, 2, faithful, sync))
    fusionloss, loss_in, loss_grad = fusion_loss(vis, ir, out["F"])
    total = fusionloss + c["decomp"] * terms["loss_decomp"]
    terms.update(fusionloss=fusionloss, fusion_loss_in=loss_in, fusion_loss_grad=loss_grad, loss_total=total)
    return _as_tensors(terms, total)
