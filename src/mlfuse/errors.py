"""Exceptions whose message is a complete one-line explanation for the user.

Every error a user can cause (bad file, bad option, bad checkpoint) is raised as an
`MLFuseError`; the CLI prints its message on one line, never a traceback. Errors about the
arguments given (an unusable input, an output that cannot be written) are also `ValueError`s, so
library callers can catch them the ordinary way.
"""

from __future__ import annotations


class MLFuseError(Exception):
    """Base class: ``str(err)`` is a single line naming the file or option and the problem."""


class InputError(MLFuseError, ValueError):
    """An input image cannot be used (missing, empty, corrupt, unsupported, wrong size)."""


class InputTypeError(InputError, TypeError):
    """An input of a type the API does not accept (the message lists the accepted types)."""


class OutputError(MLFuseError, ValueError):
    """An output cannot be written (exists without --overwrite, unwritable location, resolves to an input)."""


class OutputExistsError(OutputError):
    """The output file exists (or appeared while the result was computed) and may not be replaced."""


class FusionError(MLFuseError):
    """A forward pass produced an unusable result (NaN or infinity in the raw output)."""


class CheckpointError(MLFuseError):
    """A checkpoint cannot be loaded into the requested model."""


class WeightsNotFoundError(MLFuseError):
    """No weights are available for a model; the message says how to get them."""
