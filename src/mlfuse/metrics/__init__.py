"""Fusion quality metrics, each computed once with its convention named (spec ``metrics.md``).

Plain functions over 2-D arrays on the 0-255 scale (``fused, a, b`` with a = functional / "ir"
slot, b = structural / "vi" slot); profiles (``profiles.py``) select the conventions of one
reference code so a paper's table can be reproduced exactly.
"""

from mlfuse.metrics._common import prepare, to_255, to_gray

__all__ = ["prepare", "to_255", "to_gray"]
