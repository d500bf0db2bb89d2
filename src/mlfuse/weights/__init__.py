"""Weights: safe checkpoint loading, named releases and the download cache."""

from mlfuse.weights.checkpoint import extract_state_dict, load_into, read_checkpoint
from mlfuse.weights.store import WeightsRelease, cache_dir, fetch, get_release, list_releases, release_path

__all__ = ["WeightsRelease", "cache_dir", "extract_state_dict", "fetch", "get_release", "list_releases",
           "load_into", "read_checkpoint", "release_path"]
