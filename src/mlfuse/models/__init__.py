"""Every fusion method, one sub-package each; importing this package registers them all."""

from mlfuse.models import mlfuse as _mlfuse  # noqa: F401
