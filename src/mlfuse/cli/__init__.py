"""The ``mlfuse`` command line."""

from __future__ import annotations

import argparse

#: device names every command accepts (plus ``cuda:N``); mlfuse.fuse.resolve_device checks availability
DEVICE_NAMES = ("auto", "cpu", "cuda", "mps")
DEVICE_METAVAR = "{auto,cpu,cuda,cuda:N,mps}"


def device_arg(text: str) -> str:
    """argparse type for ``--device``: auto | cpu | cuda | cuda:N | mps (availability is checked when
    the command runs, by :func:`mlfuse.fuse.resolve_device`). Kept free of torch so ``--help`` stays fast."""
    kind, sep, index = text.partition(":")
    if text in DEVICE_NAMES or (kind == "cuda" and sep and index.isdigit()):
        return text
    raise argparse.ArgumentTypeError(f"invalid device '{text}' (choose from {', '.join(DEVICE_NAMES)}, cuda:N)")
