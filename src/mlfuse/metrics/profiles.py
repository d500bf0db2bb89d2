"""Metric profiles: the conventions of one reference code, so a paper's table can be reproduced.

A profile fixes the gray conversion, the arithmetic precision the reference worked in, and for each
metric the function and convention (spec ``metrics.md`` sections 1-2, 8):

* ``cddfuse``: CDDFuse's Python ``Evaluator`` (also SFDFuse, EMMA): float32, MI in nats, SSIM as the
  sum of two scikit-image defaults with data_range 2, AG averaged over N, PSNR with max(F).
* ``smfnet``: SMFNet's Evaluator: the ``cddfuse`` metrics with its AG1, SSIM(data_range=255), Nabf
  and MS_SSIM.
* ``tang``: Linfeng-Tang's Image-Fusion MATLAB code (used by MLFuse's paper): MI in bits with the
  254/255 quirk, MATLAB ``ssim`` mean, MEF-SSIM as MS_SSIM, edge FMI as FMI_pixel, both Nabf orders.
* ``vifb``: the VIFB benchmark's 13 metrics.  ``liu``: Zheng Liu et al.'s toolbox (Qp not ported).
* ``paper``: MLFuse's six: VIF, SCD, Qabf, CC, SSIM, FMI_pixel (tang convention).

Metric functions are resolved lazily (``module.function``) so importing this module is cheap.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from mlfuse.errors import MLFuseError


@dataclass(frozen=True)
class Metric:
    """One column of a profile: ``target`` is ``module.function`` in ``mlfuse.metrics``."""

    name: str
    target: str
    kwargs: dict = field(default_factory=dict)
    higher_is_better: bool = True
    single: bool = False  # takes only the fused image
    slow: bool = False  # seconds per image (FMI): skippable with slow=False
    side_by_side: bool = False  # per-channel profiles: score the channels laid side by side (VIFB SF)

    def function(self) -> Callable[..., float]:
        module, func = self.target.rsplit(".", 1)
        return getattr(importlib.import_module(f"mlfuse.metrics.{module}"), func)

    def __call__(self, f: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
        fn = self.function()
        return float(fn(f, **self.kwargs) if self.single else fn(f, a, b, **self.kwargs))


@dataclass(frozen=True)
class Profile:
    name: str
    reference: str
    dtype: type  # arithmetic the reference worked in (np.float32 for the Python Evaluators)
    gray: str  # colour -> gray convention, see mlfuse.metrics._common.GRAY_CONVENTIONS
    metrics: tuple[Metric, ...]
    per_channel: bool = False  # colour scored per RGB channel and averaged (VIFB) instead of as gray

    def names(self) -> list[str]:
        return [m.name for m in self.metrics]

    def metric(self, name: str) -> Metric:
        for m in self.metrics:
            if m.name == name:
                return m
        raise MLFuseError(f"profile '{self.name}' has no metric '{name}' (it has: {', '.join(self.names())})")


def _m(name: str, target: str, *, lower: bool = False, single: bool = False, slow: bool = False,
       side_by_side: bool = False, **kwargs: object) -> Metric:
    return Metric(name, target, dict(kwargs), higher_is_better=not lower, single=single, slow=slow,
                  side_by_side=side_by_side)


_CDDFUSE = (
    _m("EN", "statistics.en", single=True),
    _m("SD", "statistics.sd", single=True),
    _m("SF", "statistics.sf", single=True, convention="standard"),
    _m("AG", "statistics.ag", single=True, convention="cddfuse"),
    _m("MI", "information.mi", convention="cddfuse"),
    _m("MSE", "statistics.mse", lower=True, convention="cddfuse"),
    _m("CC", "statistics.cc"),
    _m("PSNR", "statistics.psnr", convention="cddfuse"),
    _m("SCD", "statistics.scd"),
    _m("VIF", "fidelity.vif"),
    _m("Qabf", "gradient.qabf"),
    _m("SSIM", "similarity.ssim", convention="cddfuse"),
)

_SMFNET_REPLACES = {
    "AG": _m("AG1", "statistics.ag", single=True, convention="smfnet"),
    "SSIM": _m("SSIM", "similarity.ssim", convention="smfnet"),
}
_SMFNET = (
    *(_SMFNET_REPLACES.get(m.name, m) for m in _CDDFUSE),
    _m("Nabf", "gradient.nabf", lower=True, convention="smfnet"),
    _m("MS_SSIM", "similarity.ms_ssim", convention="smfnet"),
)

_TANG = (
    _m("EN", "statistics.en", single=True),
    _m("MI", "information.mi", convention="tang"),
    _m("PSNR", "statistics.psnr", convention="tang"),
    _m("MSE", "statistics.mse", lower=True, convention="tang"),
    _m("SF", "statistics.sf", single=True, convention="standard"),
    _m("SD", "statistics.sd", single=True),
    _m("VIF", "fidelity.vif"),
    _m("AG", "statistics.ag", single=True, convention="tang"),
    _m("CC", "statistics.cc"),
    _m("SCD", "statistics.scd"),
    _m("Qabf", "gradient.qabf"),
    _m("Nabf", "gradient.nabf", lower=True, convention="tang"),
    _m("Nabf_as_called", "gradient.nabf", lower=True, convention="tang_as_called"),
    _m("SSIM", "similarity.ssim", convention="tang"),
    _m("MS_SSIM", "similarity.ms_ssim", convention="tang"),
    _m("FMI_none", "feature_mi.fmi", slow=True, feature="none"),
    _m("FMI_pixel", "feature_mi.fmi", slow=True, feature="edge"),
    _m("FMI_dct", "feature_mi.fmi", slow=True, feature="dct"),
    _m("FMI_w", "feature_mi.fmi", slow=True, feature="wavelet"),
)

_VIFB = (
    _m("Avg_gradient", "statistics.ag", single=True, convention="tang"),
    _m("Cross_entropy", "information.cross_entropy", lower=True),
    _m("Edge_intensity", "statistics.edge_intensity", single=True),
    _m("Entropy", "statistics.en", single=True),
    _m("Mutinf", "information.mi", convention="vifb"),
    _m("Psnr", "statistics.psnr", convention="vifb"),
    _m("Qabf", "gradient.qabf"),
    _m("Qcb", "hvs.qcb"),
    _m("Qcv", "hvs.qcv", lower=True),
    _m("Rmse", "statistics.rmse_vifb", lower=True),
    _m("Spatial_frequency", "statistics.sf", single=True, side_by_side=True, convention="vifb"),
    _m("Ssim", "similarity.ssim", convention="vifb"),
    _m("Variance", "statistics.sd", single=True),
)

_LIU = (
    _m("Qmi", "information.qmi"),
    _m("Qte", "information.qte"),
    _m("Qncie", "information.qncie"),
    _m("Qg", "gradient.qg"),
    _m("Qsf", "information.qsf"),
    _m("Qs", "piella.qs"),
    _m("Qw", "piella.qw"),
    _m("Qe", "piella.qe"),
    _m("Qc", "piella.qc"),
    _m("Qy", "piella.qy"),
    _m("Qcv", "hvs.qcv", lower=True),
    _m("Qcb", "hvs.qcb"),
)

_TANG_BY_NAME = {m.name: m for m in _TANG}

PROFILES: dict[str, Profile] = {
    p.name: p
    for p in (
        Profile("cddfuse", "CDDFuse utils/Evaluator.py (also SFDFuse, EMMA)", np.float32, "cv2", _CDDFUSE),
        Profile("smfnet", "SMFNet Evaluator.py", np.float32, "cv2", _SMFNET),
        Profile("tang", "Linfeng-Tang Image-Fusion MATLAB metrics", np.float64, "matlab", _TANG),
        Profile("vifb", "VIFB benchmark MATLAB metrics", np.float64, "matlab", _VIFB, per_channel=True),
        Profile("liu", "Zheng Liu et al. objective metrics toolbox (TPAMI 2012)", np.float64, "matlab", _LIU),
        Profile("paper", "MLFuse paper's six metrics (tang convention)", np.float64, "matlab",
                tuple(_TANG_BY_NAME[n] for n in ("VIF", "SCD", "Qabf", "CC", "SSIM", "FMI_pixel"))),
    )
}


def get_profile(name: str) -> Profile:
    try:
        return PROFILES[name]
    except KeyError:
        raise MLFuseError(f"unknown metric profile '{name}' (choose from {', '.join(PROFILES)})") from None
