"""MLFuse training losses (spec ``mlfuse.md`` section 7; the authors' ``task_loss.py`` / ``ssim.py``).

L = 0.3 L_edg + 3 L_ssd + 0.5 L_cmk + 1 L_fus, with x = structural (visible/MRI) image, y = functional
(infrared/CT/...) image, m = VSM saliency of y, and (f, l_edg, l_cmk, l_ssd) = model(x, y):

* L_edg = mean |grad(l_edg) - grad(x)|, grad(I) = |I * Kx| + |I * Ky| (Sobel, zero padding 1);
* L_ssd = mean |m l_ssd - m y| (the only use of a saliency map);
* L_cmk = MSE(l_cmk, x) + MSE(l_cmk, y);
* L_fus = 0.1 [(1 - SSIM(x, f)) / 2 + (1 - SSIM(y, f)) / 2], SSIM with an 11x11 Gaussian (sigma 1.5)
  applied with zero padding 5, data range 1, averaged over the full map.

The functions are stateless (no registered tensors), so the network's state_dict stays the authors'.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

#: the authors' loss weights (train.py)
DEFAULT_WEIGHTS = {"edg": 0.3, "ssd": 3.0, "cmk": 0.5, "fus": 1.0}

_SOBEL_X = ((-1.0, 0.0, 1.0), (-2.0, 0.0, 2.0), (-1.0, 0.0, 1.0))
_SOBEL_Y = ((1.0, 2.0, 1.0), (0.0, 0.0, 0.0), (-1.0, -2.0, -1.0))


def sobel_magnitude(img: Tensor) -> Tensor:
    """|I * Kx| + |I * Ky| per channel (cross-correlation as conv2d, zero padding 1)."""
    c = img.shape[1]
    k = torch.tensor((_SOBEL_X, _SOBEL_Y), dtype=img.dtype, device=img.device).unsqueeze(1)  # 2 x 1 x 3 x 3
    k = k.repeat(c, 1, 1, 1)
    g = F.conv2d(img, k, padding=1, groups=c)
    return g[:, 0::2].abs() + g[:, 1::2].abs()


def gaussian_window(size: int = 11, sigma: float = 1.5, *, dtype: torch.dtype = torch.float32,
                    device: torch.device | str = "cpu") -> Tensor:
    """The size x size SSIM window (Wang et al. 2004): outer product of the normalised 1-D Gaussian,
    normalised and multiplied in float32 as the authors' ``ssim.py`` does (its rounding shows in the
    loss's 6th digit)."""
    x = torch.arange(size, dtype=torch.float64) - size // 2
    g = torch.exp(-(x**2) / (2 * sigma**2)).to(torch.float32)
    g = g / g.sum()
    return (g[:, None] @ g[None, :]).to(dtype=dtype, device=device)


def ssim(a: Tensor, b: Tensor, window_size: int = 11, sigma: float = 1.5) -> Tensor:
    """Mean SSIM (data range 1) with zero-padded Gaussian filtering, as the authors' ``ssim.py``."""
    c = a.shape[1]
    w = gaussian_window(window_size, sigma, dtype=a.dtype, device=a.device).expand(c, 1, -1, -1)
    pad = window_size // 2

    def filt(t: Tensor) -> Tensor:
        return F.conv2d(t, w, padding=pad, groups=c)

    mu_a, mu_b = filt(a), filt(b)
    saa = filt(a * a) - mu_a * mu_a
    sbb = filt(b * b) - mu_b * mu_b
    sab = filt(a * b) - mu_a * mu_b
    c1, c2 = 0.01**2, 0.03**2
    num = (2 * mu_a * mu_b + c1) * (2 * sab + c2)
    den = (mu_a * mu_a + mu_b * mu_b + c1) * (saa + sbb + c2)
    return (num / den).mean()


def mlfuse_losses(outputs: tuple[Tensor, Tensor, Tensor, Tensor], x: Tensor, y: Tensor, saliency: Tensor,
                  weights: dict[str, float] | None = None) -> dict[str, Tensor]:
    """The four loss terms and their weighted total for one batch.

    ``outputs`` = ``MLFNet.forward(x, y)`` = (fused, l_edg, l_cmk, l_ssd); ``x``, ``y``, ``saliency``
    are B x 1 x H x W in [0, 1]. Returns ``{"L_edg", "L_ssd", "L_cmk", "L_fus", "total"}``.
    """
    w = {**DEFAULT_WEIGHTS, **(weights or {})}
    f, l_edg, l_cmk, l_ssd = outputs
    terms = {
        "L_edg": (sobel_magnitude(l_edg) - sobel_magnitude(x)).abs().mean(),
        "L_ssd": (saliency * l_ssd - saliency * y).abs().mean(),
        "L_cmk": F.mse_loss(l_cmk, x) + F.mse_loss(l_cmk, y),
        "L_fus": 0.1 * ((1 - ssim(x, f)) / 2 + (1 - ssim(y, f)) / 2),
    }
    terms["total"] = (w["edg"] * terms["L_edg"] + w["ssd"] * terms["L_ssd"] + w["cmk"] * terms["L_cmk"]
                      + w["fus"] * terms["L_fus"])
    return terms
