"""The ``mlfuse`` command line."""

from __future__ import annotations

import argparse

from mlfuse.runtime import DEVICES, is_device_name

DEVICE_METAVAR = "{auto,cpu,cuda,cuda:N,mps}"


def device_arg(text: str) -> str:
    """argparse type for ``--device``: auto | cpu | cuda | cuda:N | mps (availability is checked when
    the command runs, by :func:`mlfuse.runtime.resolve_device`). Free of torch so ``--help`` stays fast."""
    if is_device_name(text):
        return text
    raise argparse.ArgumentTypeError(f"invalid device '{text}' (choose from {', '.join(DEVICES)}, cuda:N)")
