"""Every fusion method, one sub-package each; importing this package registers them all."""

from mlfuse.models import cddfuse as _cddfuse  # noqa: F401
from mlfuse.models import classical as _classical  # noqa: F401
from mlfuse.models import emma as _emma  # noqa: F401
from mlfuse.models import mlfuse as _mlfuse  # noqa: F401
from mlfuse.models import sfdfuse as _sfdfuse  # noqa: F401
from mlfuse.models import smfnet as _smfnet  # noqa: F401
