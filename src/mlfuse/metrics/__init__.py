"""Fusion quality metrics, each computed once with its convention named (spec ``metrics.md``).

Plain functions over 2-D arrays on the 0-255 scale (``fused, a, b`` with a = functional / "ir"
slot, b = structural / "vi" slot); profiles (``profiles.py``) select the conventions of one
reference code so a paper's table can be reproduced exactly.

``mlfuse.metrics.evaluate(fused, a, b, profile=...)`` scores one triple under a profile; every metric
function is exported here too (``mlfuse.metrics.qabf``, ``mlfuse.metrics.ssim``, ...). No submodule
shares a name with a function, so ``mlfuse.metrics.<name>`` is always the function.
"""

from __future__ import annotations

import importlib
from typing import Any

#: public name -> the submodule that defines it (imported on first use: ``import mlfuse.metrics`` stays cheap)
_EXPORTS: dict[str, str] = {
    **dict.fromkeys(("prepare", "to_255", "to_gray"), "_common"),
    **dict.fromkeys(("EvalReport", "evaluate", "evaluate_folders"), "evaluation"),
    "fmi": "feature_mi",
    "vif": "fidelity",
    **dict.fromkeys(("nabf", "qabf", "qg"), "gradient"),
    **dict.fromkeys(("qcb", "qcv"), "hvs"),
    **dict.fromkeys(("cross_entropy", "mi", "qmi", "qncie", "qsf", "qte"), "information"),
    **dict.fromkeys(("qc", "qe", "qs", "qw", "qy"), "piella"),
    **dict.fromkeys(("PROFILES", "get_profile"), "profiles"),
    **dict.fromkeys(("ms_ssim", "ssim"), "similarity"),
    **dict.fromkeys(("ag", "cc", "edge_intensity", "en", "mse", "psnr", "rmse_vifb", "scd", "sd", "sf"), "statistics"),
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'mlfuse.metrics' has no attribute '{name}'")
    value = getattr(importlib.import_module(f"mlfuse.metrics.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
