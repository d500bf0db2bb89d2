"""``python -m mlfuse`` = the ``mlfuse`` command."""

import sys

from mlfuse.cli.main import main

sys.exit(main())
