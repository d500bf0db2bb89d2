"""Exceptions whose message is a complete one-line explanation for the user.

Every error a user can cause (bad file, bad option, bad checkpoint) is raised as an
`MLFuseError`; the CLI prints its message on one line, never a traceback.
"""

from __future__ import annotations


class MLFuseError(Exception):
    """Base class: ``str(err)`` is a single line naming the file or option and the problem."""


class InputError(MLFuseError):
    """An input image cannot be used (missing, empty, corrupt, unsupported, wrong size)."""


class OutputError(MLFuseError):
    """An output cannot be written (exists without --overwrite, unwritable location)."""


class CheckpointError(MLFuseError):
    """A checkpoint cannot be loaded into the requested model."""


class WeightsNotFoundError(MLFuseError):
    """No weights are available for a model; the message says how to get them."""
