"""The ``mlfuse`` command line."""
