"""EMMA's training losses (``train_Fusion.py``, ``train_AiAv.py``; ``shared/specs/emma.md`` §3, common §3.5).

U-Fuser step (spec §3.2), with F = Ufuser(IR, VIS) and the frozen pseudo-sensing networks A_i, A_v::

    Ft     = T(F)  = cat_batch[F, roll x3, rot 10/130/250 deg, hflip, vflip, hflip(vflip)]
    Ft_hat = Ufuser(A_i(Ft), A_v(Ft))
    L      = l(A_v(F), VIS) + l(A_i(F), IR) + 0.1 l(Ft, Ft_hat),   l(p, t) = L1(p, t) + L1(SG p, SG t)

with SG kornia's normalised Sobel ``SpatialGradient`` (replicate padding). Ft is not detached (quirk 7).
Pseudo-sensing step (spec §3.1): ``MSE(UNet5(fused), source)``.

The returned dicts use the names of ``losses.json`` (``term_V``, ``term_I``, ``term_equivariance``, each
with ``_l1_int`` / ``_l1_grad`` parts, ``loss_total``).
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from mlfuse.models.blocks.losses import gradient_loss

#: train_Fusion.py: ``torch.arange(10, 360, 120)`` degrees
ROTATIONS = (10.0, 130.0, 250.0)
#: number of circular shifts
N_SHIFTS = 3
#: weight of the equivariance term
COEFFS = {"V": 1.0, "I": 1.0, "equivariance": 0.1}


def draw_shifts(rng: random.Random, height: int, width: int, n: int = N_SHIFTS) -> tuple[list[int], list[int]]:
    """Row then column offsets as the authors' ``random.sample(pop, n)`` with
    ``pop = [-1, ..., -(L-1), 1, ..., L-1]`` (distinct, never 0). ``random.seed(0)`` then this on 64 x 64
    gives rows [46, -50, 35], cols [51, -54, -6] (``losses.json``)."""

    def population(length: int) -> list[int]:
        return [-i for i in range(1, length)] + list(range(1, length))

    rows = rng.sample(population(height), n)
    cols = rng.sample(population(width), n)
    return rows, cols


def rotate(x: Tensor, degrees: float) -> Tensor:
    """kornia 0.2.0 ``rotate`` (spec §3.2): counter-clockwise as displayed (y down) about
    ((W-1)/2, (H-1)/2); each output pixel samples the input at the inverse map, bilinear, zeros outside,
    with ``grid_sample(align_corners=True)``'s pixel-centre convention."""
    b, _, h, w = x.shape
    theta = math.radians(degrees)
    a, s = math.cos(theta), math.sin(theta)
    cx, cy = (w - 1) / 2, (h - 1) / 2
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float64, device=x.device),
                            torch.arange(w, dtype=torch.float64, device=x.device), indexing="ij")
    # inverse of x' - c = [[a, s], [-s, a]] (x - c):  x - c = [[a, -s], [s, a]] (x' - c)
    src_x = a * (xs - cx) - s * (ys - cy) + cx
    src_y = s * (xs - cx) + a * (ys - cy) + cy
    grid = torch.stack((2 * src_x / max(w - 1, 1) - 1, 2 * src_y / max(h - 1, 1) - 1), dim=-1)
    grid = grid.to(x.dtype).unsqueeze(0).expand(b, h, w, 2)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=True)


def equivariant_transforms(f: Tensor, rows: Sequence[int], cols: Sequence[int],
                           rotations: Sequence[float] = ROTATIONS) -> Tensor:
    """``T(F)``: the batch concatenation of F, the circular shifts ``roll(F, (rows[j], cols[j]))``, the
    rotations, hflip (reverses W), vflip (reverses H) and hflip(vflip) — 10 blocks of B images."""
    blocks = [f]
    blocks += [torch.roll(f, shifts=(int(r), int(c)), dims=(-2, -1)) for r, c in zip(rows, cols, strict=True)]
    blocks += [rotate(f, d) for d in rotations]
    blocks += [torch.flip(f, dims=(-1,)), torch.flip(f, dims=(-2,)), torch.flip(f, dims=(-2, -1))]
    return torch.cat(blocks, dim=0)


def sensing_loss(pred: Tensor, target: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """``(L1 + L1 of SpatialGradient, L1, L1 of SpatialGradient)`` — the authors' ``loss(pre, tgt)``."""
    l1 = F.l1_loss(pred, target)
    grad = gradient_loss(pred, target)
    return l1 + grad, l1, grad


def fusion_losses(ufuser: Callable[[Tensor, Tensor], Tensor], a_i: Callable[[Tensor], Tensor],
                  a_v: Callable[[Tensor], Tensor], ir: Tensor, vis: Tensor, rows: Sequence[int],
                  cols: Sequence[int], coeffs: dict[str, float] | None = None,
                  rotations: Sequence[float] = ROTATIONS) -> dict[str, Tensor]:
    """All terms of one ``train_Fusion.py`` step. ``ufuser(ir, vis)`` is called IR first; ``rows``, ``cols``
    are the shift offsets (:func:`draw_shifts`). Also returns ``F``, ``Ft`` and ``Ft_hat`` (tensors
    with graph) for inspection."""
    c = {**COEFFS, **(coeffs or {})}
    fused = ufuser(ir, vis)
    ft = equivariant_transforms(fused, rows, cols, rotations)
    ft_hat = ufuser(a_i(ft), a_v(ft))
    term_v, v_int, v_grad = sensing_loss(a_v(fused), vis)
    term_i, i_int, i_grad = sensing_loss(a_i(fused), ir)
    term_eq, eq_int, eq_grad = sensing_loss(ft, ft_hat)
    total = c["V"] * term_v + c["I"] * term_i + c["equivariance"] * term_eq
    return {"term_V": term_v, "term_V_l1_int": v_int, "term_V_l1_grad": v_grad,
            "term_I": term_i, "term_I_l1_int": i_int, "term_I_l1_grad": i_grad,
            "term_equivariance": term_eq, "term_equivariance_l1_int": eq_int, "term_equivariance_l1_grad": eq_grad,
            "loss_total": total, "F": fused, "Ft": ft, "Ft_hat": ft_hat}


def pseudo_sensing_loss(pred: Tensor, target: Tensor) -> Tensor:
    """``train_AiAv.py``: ``MSE(UNet5(fused), source)``."""
    return F.mse_loss(pred, target)
