"""When to draw progress bars: on a terminal only, so log files and pipes stay free of bar lines.

``--quiet`` turns them off everywhere; ``MLFUSE_PROGRESS=1`` asks for them even when standard error
is not a terminal (``MLFUSE_PROGRESS=0`` turns them off). Bars go to standard error (tqdm's default).
"""

from __future__ import annotations

import os
import sys

ENV = "MLFUSE_PROGRESS"


def show_bars(quiet: bool = False) -> bool:
    """True if a progress bar should be drawn: not ``quiet``, and standard error is a terminal or
    ``MLFUSE_PROGRESS`` asks for bars."""
    if quiet:
        return False
    forced = os.environ.get(ENV, "").strip().lower()
    if forced in ("1", "true", "yes", "on"):
        return True
    if forced in ("0", "false", "no", "off"):
        return False
    stream = sys.stderr
    try:
        return bool(stream is not None and stream.isatty())
    except (AttributeError, ValueError):  # replaced or closed stream
        return False


def bar_disabled(quiet: bool = False) -> bool:
    """tqdm's ``disable`` argument: the negation of :func:`show_bars`."""
    return not show_bars(quiet)
