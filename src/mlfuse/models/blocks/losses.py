"""Loss terms shared by the CDDFuse family (common §3), differentiable, device-agnostic.

* :func:`cc` — correlation coefficient of feature maps (common §3.1);
* :func:`decomposition_loss` — ``cc(D_V, D_I)^2 / (1.01 + cc(B_V, B_I))`` (CDDFuse eq. 7, common §3.2);
* :func:`sobel_magnitude`, :func:`fusion_loss` — CDDFuse's ``Fusionloss`` (common §3.3);
* :func:`ssim_loss` — the two kornia SSIM losses (``"kornia0.2"``: CDDFuse/SMFNet, ``"kornia0.6"``:
  SFDFuse; common §3.4), 11x11 Gaussian window, sigma 1.5, reflect padding;
* :func:`spatial_gradient`, :func:`gradient_loss` — kornia ``SpatialGradient`` (normalised Sobel,
  replicate padding) and the L1 between two of them (common §3.5).

All constants are plain tensors created on the fly (never parameters, so they appear in no
state_dict or optimiser — CDDFuse quirk 1).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

SSIM_VARIANTS = ("kornia0.2", "kornia0.6")

_SOBEL_X = ((-1.0, 0.0, 1.0), (-2.0, 0.0, 2.0), (-1.0, 0.0, 1.0))
_SOBEL_Y = ((1.0, 2.0, 1.0), (0.0, 0.0, 0.0), (-1.0, -2.0, -1.0))


def cc(a: Tensor, b: Tensor) -> Tensor:
    """Mean over (N, C) of the Pearson correlation of the H*W values of ``a`` and ``b`` (N, C, H, W).

    ``sum(a'b') / (eps + sqrt(sum a'^2) sqrt(sum b'^2))`` with centred a', b', eps = float32 machine
    epsilon, clamped to [-1, 1] (common §3.1).
    """
    return cc_map(a, b).mean()


def cc_map(a: Tensor, b: Tensor) -> Tensor:
    """The clamped per-(sample, channel) correlations (N, C) that :func:`cc` averages."""
    eps = torch.finfo(torch.float32).eps
    n, c = a.shape[:2]
    a = a.reshape(n, c, -1)
    b = b.reshape(n, c, -1)
    a = a - a.mean(dim=-1, keepdim=True)
    b = b - b.mean(dim=-1, keepdim=True)
    r = torch.sum(a * b, dim=-1) / (eps + torch.sqrt(torch.sum(a**2, dim=-1)) * torch.sqrt(torch.sum(b**2, dim=-1)))
    return torch.clamp(r, -1.0, 1.0)


def _world_size() -> int:
    import torch.distributed as dist

    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def global_batch_mean(values: Tensor) -> Tensor:
    """Mean of ``values`` over the global batch of a data-parallel run (all ranks, equal local batches):
    the other ranks' sum enters as a constant, so gradients flow through the local values only."""
    import torch.distributed as dist

    local = values.sum()
    total = torch.stack([local.detach(), torch.tensor(float(values.numel()), device=values.device,
                                                      dtype=local.dtype)])
    dist.all_reduce(total)
    return (local + (total[0] - local.detach())) / total[1]


def decomposition_loss(base_a: Tensor, base_b: Tensor, detail_a: Tensor, detail_b: Tensor, *,
                       sync: bool = False) -> tuple[Tensor, Tensor, Tensor]:
    """``(loss_decomp, cc_B, cc_D)`` with ``loss_decomp = cc_D^2 / (1.01 + cc_B)`` (CDDFuse eq. 7):
    base features pulled together, detail features pushed apart.

    The loss is not a mean over samples, so a DDP rank cannot compute it from its own samples: with
    ``sync=True`` inside a multi-process run the correlations are means over the global batch (what
    the authors' single-process / DataParallel training computes) and the gradient is scaled by the
    world size, which DDP's gradient averaging divides out again. Elsewhere ``sync`` changes nothing.
    """
    world = _world_size() if sync else 1
    if world == 1:
        cc_b = cc(base_a, base_b)
        cc_d = cc(detail_a, detail_b)
        return cc_d**2 / (1.01 + cc_b), cc_b, cc_d
    cc_b = global_batch_mean(cc_map(base_a, base_b))
    cc_d = global_batch_mean(cc_map(detail_a, detail_b))
    loss = cc_d**2 / (1.01 + cc_b)
    return loss + (world - 1) * (loss - loss.detach()), cc_b, cc_d


def sobel_magnitude(x: Tensor) -> Tensor:
    """``|Kx * x| + |Ky * x|`` per channel, unnormalised Sobel, zero padding 1 (common §3.3)."""
    c = x.shape[1]
    kx = torch.tensor(_SOBEL_X, dtype=x.dtype, device=x.device).expand(c, 1, 3, 3)
    ky = torch.tensor(_SOBEL_Y, dtype=x.dtype, device=x.device).expand(c, 1, 3, 3)
    return torch.abs(F.conv2d(x, kx, padding=1, groups=c)) + torch.abs(F.conv2d(x, ky, padding=1, groups=c))


def fusion_loss(vis: Tensor, ir: Tensor, fused: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """CDDFuse ``Fusionloss``: ``(loss_in + 10 loss_grad, loss_in, loss_grad)`` with
    ``loss_in = L1(max(V, I), F)`` and ``loss_grad = L1(max(S V, S I), S F)``; V is channel 0 of ``vis``."""
    y = vis[:, :1]
    loss_in = F.l1_loss(torch.max(y, ir), fused)
    loss_grad = F.l1_loss(torch.max(sobel_magnitude(y), sobel_magnitude(ir)), sobel_magnitude(fused))
    return loss_in + 10 * loss_grad, loss_in, loss_grad


def gaussian_window(size: int = 11, sigma: float = 1.5, *, dtype: torch.dtype = torch.float32,
                    device: torch.device | str | None = None) -> Tensor:
    """The 2-D window ``g g^T`` with ``g(i) = exp(-(i - size//2)^2 / (2 sigma^2))`` normalised to sum 1 (kornia)."""
    x = torch.arange(size, dtype=dtype, device=device) - size // 2
    if size % 2 == 0:
        x = x + 0.5
    g = torch.exp(-x.pow(2.0) / float(2 * sigma**2))
    g = g / g.sum()
    return torch.matmul(g.unsqueeze(-1), g.unsqueeze(-1).t())


def _filter(x: Tensor, window: Tensor) -> Tensor:
    c = x.shape[1]
    k = window.shape[-1]
    pad = k // 2
    x = F.pad(x, [pad, pad, pad, pad], mode="reflect")
    return F.conv2d(x, window.expand(c, 1, k, k), groups=c)


def ssim_map(a: Tensor, b: Tensor, window_size: int = 11, max_val: float = 1.0, eps: float = 0.0) -> Tensor:
    """Per-pixel SSIM with a Gaussian window (sigma 1.5), reflect padding, C1 = (0.01 m)^2, C2 = (0.03 m)^2;
    ``eps`` is added to the denominator (kornia >= 0.6: 1e-12; kornia 0.2.0: none)."""
    w = gaussian_window(window_size, 1.5, dtype=a.dtype, device=a.device)
    c1 = (0.01 * max_val) ** 2
    c2 = (0.03 * max_val) ** 2
    mu1 = _filter(a, w)
    mu2 = _filter(b, w)
    mu1_sq = mu1.pow(2)
    mu2_sq = mu2.pow(2)
    mu1_mu2 = mu1 * mu2
    sigma1_sq = _filter(a * a, w) - mu1_sq
    sigma2_sq = _filter(b * b, w) - mu2_sq
    sigma12 = _filter(a * b, w) - mu1_mu2
    num = (2.0 * mu1_mu2 + c1) * (2.0 * sigma12 + c2)
    den = (mu1_sq + mu2_sq + c1) * (sigma1_sq + sigma2_sq + c2)
    return num / (den + eps) if eps else num / den


def ssim_loss(a: Tensor, b: Tensor, variant: str = "kornia0.2", window_size: int = 11) -> Tensor:
    """Mean SSIM loss of the CDDFuse family (common §3.4); symmetric in ``a``, ``b``.

    ``"kornia0.2"`` (kornia 0.2.0 ``losses.SSIM(11)``, CDDFuse/SMFNet): ``clamp(1 - ssim, 0, 1) / 2``;
    ``"kornia0.6"`` (kornia >= 0.6 ``losses.SSIMLoss(11)``, SFDFuse): ``clamp((1 - ssim) / 2, 0, 1)``
    with 1e-12 in the SSIM denominator.
    """
    if variant == "kornia0.2":
        return (torch.clamp(1.0 - ssim_map(a, b, window_size), min=0, max=1) / 2.0).mean()
    if variant == "kornia0.6":
        return torch.clamp((1.0 - ssim_map(a, b, window_size, eps=1e-12)) / 2, min=0, max=1).mean()
    raise ValueError(f"unknown SSIM variant '{variant}' (choose from {', '.join(SSIM_VARIANTS)})")


def spatial_gradient(x: Tensor) -> Tensor:
    """kornia ``SpatialGradient()``: normalised Sobel (Kx/8, Kx^T/8), replicate padding 1,
    output (B, C, 2, H, W) with index 0 = d/dx, 1 = d/dy (common §3.5)."""
    b, c, h, w = x.shape
    kx = torch.tensor(_SOBEL_X, dtype=x.dtype, device=x.device)
    kx = kx / kx.abs().sum()
    kernel = torch.stack([kx, kx.t()]).unsqueeze(1)  # (2, 1, 3, 3)
    padded = F.pad(x.reshape(b * c, 1, h, w), [1, 1, 1, 1], mode="replicate")
    return F.conv2d(padded, kernel).view(b, c, 2, h, w)


def gradient_loss(a: Tensor, b: Tensor) -> Tensor:
    """``L1(SpatialGradient(a), SpatialGradient(b))``, mean over the 5-D output."""
    return F.l1_loss(spatial_gradient(a), spatial_gradient(b))
