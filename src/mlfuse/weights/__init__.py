"""Weights: safe checkpoint loading, named releases and the download cache.

Importing this package declares every shipped release (:mod:`mlfuse.weights.releases`), so the release
table of :mod:`mlfuse.weights.store` is complete before any lookup, without importing the models.
"""

from mlfuse.weights import releases as _releases  # noqa: F401  (declares the shipped releases)
from mlfuse.weights.checkpoint import extract_state_dict, load_into, read_checkpoint
from mlfuse.weights.store import WeightsRelease, cache_dir, fetch, get_release, list_releases, release_path

__all__ = ["WeightsRelease", "cache_dir", "extract_state_dict", "fetch", "get_release", "list_releases",
           "load_into", "read_checkpoint", "release_path"]
