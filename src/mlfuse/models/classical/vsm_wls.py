"""VSM-WLS: visual saliency map and weighted least square optimisation.

Ma, Zhou, Wang, Zong, "Infrared and visible image fusion based on visual saliency map and weighted
least square optimization", Infrared Physics & Technology 82 (2017) 8-17, with the parameters of
the authors' released MATLAB code:

* multi-scale decomposition (section 2.2): u_0 = I; for j = 1..N-1 (N = 4) u_j is the rolling
  guidance filter (Zhang, Shen, Xu, Jia, ECCV 2014: a Gaussian blur, then 4 guided-filter
  iterations with the previous result as guide and the image as input; radius sigma_s, eps
  sigma_r^2) of u_{j-1} with sigma_s = 2, 4, 8 and sigma_r = 0.05; u_N a Gaussian blur (sigma 2)
  of u_{N-1}; detail layers d_j = u_{j-1} - u_j and the base u_N;
* base fusion with the VSM (eq. 4): B = (0.5 + 0.5 (V_vis - V_ir)) B_vis + (0.5 + 0.5 (V_ir - V_vis)) B_ir,
  V the histogram-contrast saliency of each 8-bit source (:func:`mlfuse.data.vsm.vsm_float`);
* finest detail layer: the coefficient of larger magnitude (visible on ties);
* coarser detail layers (eq. 6-10): M = C d_ir + (1 - C) d_vis with C the Gaussian-smoothed
  (sigma 2, symmetric borders) map of |d_ir| > |d_vis|; then
  D = argmin sum_p (D_p - M_p)^2 + lambda a_p (D_p - d_vis,p)^2 with
  a_p = 1 / (|mean_{7x7}(d_ir)|_p + 1e-6) and lambda = 0.01. The system is diagonal, so
  D = (M + lambda a d_vis) / (1 + lambda a): where the infrared detail is weak (noise), the visible
  detail wins.

Roles follow the paper and the authors' own script (``I1`` visible, ``I2`` infrared): structural =
visible, functional = infrared. Identical sources give V equal, M = d and D = d, hence F = I.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from mlfuse.data.vsm import vsm_float
from mlfuse.models.classical.base import ClassicalFusion, gaussian_filter, guided_filter, mean_filter


def rolling_guidance(x: Tensor, sigma_s: float, sigma_r: float, iterations: int = 4) -> Tensor:
    """Rolling guidance filter (Zhang et al., ECCV 2014) with a guided filter as the joint filter:
    start from a Gaussian blur, then ``iterations`` times filter ``x`` guided by the last result."""
    radius = round(sigma_s)
    res = gaussian_filter(x, sigma_s, mode="replicate")
    for _ in range(iterations):
        res = guided_filter(res, x, radius, sigma_r * sigma_r)
    return res


def _saliency(x: Tensor) -> Tensor:
    """VSM of each image of a B x 1 x H x W batch in [0, 1], after MATLAB ``uint8(255 x)``."""
    a = x.detach().cpu().numpy()
    u8 = np.clip(np.floor(a * 255.0 + 0.5), 0, 255).astype(np.uint8)
    return torch.from_numpy(np.stack([vsm_float(u8[i, 0]) for i in range(a.shape[0])])[:, None]).to(x)


class VSMWLSFusion(ClassicalFusion):
    """VSM-WLS (Ma et al., IPT 2017); defaults are the authors' released parameters."""

    onnx_unsupported = ("its visual saliency maps are 8-bit histograms computed in NumPy, outside the PyTorch "
                        "graph an exporter traces")

    def __init__(self, levels: int = 4, sigma_s: float = 2.0, sigma_r: float = 0.05, iterations: int = 4,
                 lam: float = 0.01, window: int = 7) -> None:
        super().__init__()
        if levels < 1:
            raise ValueError(f"levels must be >= 1, got {levels}")
        if window < 1 or window % 2 == 0:
            raise ValueError(f"window must be odd and >= 1, got {window}")
        self.levels, self.sigma_s, self.sigma_r = int(levels), float(sigma_s), float(sigma_r)
        self.iterations, self.lam, self.window = int(iterations), float(lam), int(window)

    def decompose(self, x: Tensor) -> tuple[list[Tensor], Tensor]:
        """Detail layers (finest first) and the base layer."""
        details, u, sigma = [], x, self.sigma_s
        for _ in range(self.levels - 1):
            nxt = rolling_guidance(u, sigma, self.sigma_r, self.iterations)
            details.append(u - nxt)
            u, sigma = nxt, 2.0 * sigma
        base = gaussian_filter(u, self.sigma_s, mode="replicate")
        details.append(u - base)
        return details, base

    def fuse_tensors(self, structural: Tensor, functional: Tensor) -> Tensor:
        d_vis, b_vis = self.decompose(structural)
        d_ir, b_ir = self.decompose(functional)
        v_vis, v_ir = _saliency(structural), _saliency(functional)
        out = (0.5 + 0.5 * (v_vis - v_ir)) * b_vis + (0.5 + 0.5 * (v_ir - v_vis)) * b_ir
        out = out + torch.where(d_ir[0].abs() > d_vis[0].abs(), d_ir[0], d_vis[0])
        for dv, di in zip(d_vis[1:], d_ir[1:], strict=True):
            c = gaussian_filter((di.abs() > dv.abs()).to(dv), 2.0, radius=6, mode="symmetric")
            m = c * di + (1.0 - c) * dv
            a = 1.0 / (mean_filter(di, self.window).abs() + 1e-6)
            out = out + (m + self.lam * a * dv) / (1.0 + self.lam * a)
        return out

    def extra_repr(self) -> str:
        return (f"levels={self.levels}, sigma_s={self.sigma_s}, sigma_r={self.sigma_r}, "
                f"iterations={self.iterations}, lam={self.lam}, window={self.window}")

