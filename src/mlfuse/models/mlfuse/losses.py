"""MLFuse training losses (spec ``mlfuse.md`` section 7; the authors' ``task_loss.py`` / ``ssim.py``).

L = 0.3 L_edg + 3 L_ssd + 0.5 L_cmk + 1 L_fus, with x = structural (visible/MRI) image, y = functional
(infrared/CT/...) image, m = VSM saliency of y, and (f, l_edg, l_cmk, l_ssd) = model(x, y):

* L_edg = mean |grad(l_edg) - grad(x)|, grad(I) = |I * Kx| + |I * Ky| (Sobel, zero padding 1);
* L_ssd = mean |m l_ssd - m y| (the only use of a saliency map);
* L_cmk = MSE(l_cmk, x) + MSE(l_cmk, y);
* L_fus = 0.1 [(1 - SSIM(x, f)) / 2 + (1 - SSIM(y, f)) / 2], SSIM with an 11x11 Gaussian (sigma 1.5)
  applied with zero padding 5, data range 1, averaged over the full map.

The functions are stateless (no registered tensors), so the network's state_dict stays the authors'.

Two evaluation paths give the same values to float rounding: ``path="reference"`` follows the
authors' operations one by one (an 11 x 11 convolution per SSIM statistic, ten of them per step);
``path="fast"`` (training's default) filters all eight SSIM statistics of both SSIM terms in one
separable pass (the window is an outer product, so a column pass then a row pass with zero padding
is the same sum) and is ~10x cheaper on the CPU. ``tests/train/test_train_speed.py`` compares the
two paths' losses and gradients.
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
    g = gaussian_window_1d(size, sigma)
    return (g[:, None] @ g[None, :]).to(dtype=dtype, device=device)


def ssim(a: Tensor, b: Tensor, window_size: int = 11, sigma: float = 1.5) -> Tensor:
    """Mean SSIM (data range 1) with zero-padded Gaussian filtering, as the authors' ``ssim.py``."""
    c = a.shape[1]
    w = gaussian_window(window_size, sigma, dtype=a.dtype, device=a.device).expand(c, 1, -1, -1)
    pad = window_size // 2

    def filt(t: Tensor) -> Tensor:
        return F.conv2d(t, w, padding=pad, groups=c)

    return _mean_ssim(filt(a), filt(b), filt(a * a), filt(b * b), filt(a * b))


def _mean_ssim(mu_a: Tensor, mu_b: Tensor, e_aa: Tensor, e_bb: Tensor, e_ab: Tensor) -> Tensor:
    """Mean SSIM map from the filtered moments (means, E[a^2], E[b^2], E[ab]), C1 = 0.01^2, C2 = 0.03^2,
    in the authors' operation order (variances as E[a^2] - mu^2)."""
    saa = e_aa - mu_a * mu_a
    sbb = e_bb - mu_b * mu_b
    sab = e_ab - mu_a * mu_b
    c1, c2 = 0.01**2, 0.03**2
    num = (2 * mu_a * mu_b + c1) * (2 * sab + c2)
    den = (mu_a * mu_a + mu_b * mu_b + c1) * (saa + sbb + c2)
    return (num / den).mean()


def gaussian_window_1d(size: int = 11, sigma: float = 1.5, *, dtype: torch.dtype = torch.float32,
                       device: torch.device | str = "cpu") -> Tensor:
    """The normalised 1-D Gaussian whose outer product is :func:`gaussian_window`."""
    x = torch.arange(size, dtype=torch.float64) - size // 2
    g = torch.exp(-(x**2) / (2 * sigma**2)).to(torch.float32)
    return (g / g.sum()).to(dtype=dtype, device=device)


def separable_gaussian_filter(t: Tensor, window_size: int = 11, sigma: float = 1.5) -> Tensor:
    """Every channel of ``t`` (B x C x H x W) filtered with the SSIM window, zero padding
    ``window_size // 2``: a column pass then a row pass (depthwise convolutions), equal to the 2-D
    window's correlation up to float rounding since the window is ``g g^T``."""
    c, pad = t.shape[1], window_size // 2
    g = gaussian_window_1d(window_size, sigma, dtype=t.dtype, device=t.device)
    t = F.conv2d(t, g.view(1, 1, -1, 1).expand(c, 1, -1, 1), padding=(pad, 0), groups=c)
    return F.conv2d(t, g.view(1, 1, 1, -1).expand(c, 1, 1, -1), padding=(0, pad), groups=c)


def ssim_pair(x: Tensor, y: Tensor, f: Tensor) -> tuple[Tensor, Tensor]:
    """``(ssim(x, f), ssim(y, f))`` for single-channel images, the eight local statistics filtered
    in one separable pass (:func:`separable_gaussian_filter`)."""
    if x.shape[1] != 1:
        return ssim(x, f), ssim(y, f)
    stats = separable_gaussian_filter(torch.cat([x, y, f, x * x, y * y, f * f, x * f, y * f], dim=1))
    mx, my, mf, exx, eyy, eff, exf, eyf = stats.unbind(1)
    return _mean_ssim(mx, mf, exx, eff, exf), _mean_ssim(my, mf, eyy, eff, eyf)


#: loss evaluation paths (see the module docstring)
LOSS_PATHS = ("fast", "reference")


def mlfuse_losses(outputs: tuple[Tensor, Tensor, Tensor, Tensor], x: Tensor, y: Tensor, saliency: Tensor,
                  weights: dict[str, float] | None = None, *, path: str = "reference") -> dict[str, Tensor]:
    """The four loss terms and their weighted total for one batch.

    ``outputs`` = ``MLFNet.forward(x, y)`` = (fused, l_edg, l_cmk, l_ssd); ``x``, ``y``, ``saliency``
    are B x 1 x H x W in [0, 1]. Returns ``{"L_edg", "L_ssd", "L_cmk", "L_fus", "total"}``.
    ``path``: ``"reference"`` (the authors' operation order) or ``"fast"`` (same values to float
    rounding, one separable filtering pass for both SSIM terms).
    """
    if path not in LOSS_PATHS:
        raise ValueError(f"unknown loss path '{path}' (choose {' or '.join(LOSS_PATHS)})")
    w = {**DEFAULT_WEIGHTS, **(weights or {})}
    f, l_edg, l_cmk, l_ssd = outputs
    s_xf, s_yf = ssim_pair(x, y, f) if path == "fast" else (ssim(x, f), ssim(y, f))
    terms = {
        "L_edg": (sobel_magnitude(l_edg) - sobel_magnitude(x)).abs().mean(),
        "L_ssd": (saliency * l_ssd - saliency * y).abs().mean(),
        "L_cmk": F.mse_loss(l_cmk, x) + F.mse_loss(l_cmk, y),
        "L_fus": 0.1 * ((1 - s_xf) / 2 + (1 - s_yf) / 2),
    }
    terms["total"] = (w["edg"] * terms["L_edg"] + w["ssd"] * terms["L_ssd"] + w["cmk"] * terms["L_cmk"]
                      + w["fus"] * terms["L_fus"])
    return terms
