"""Image I/O, colour conversions, folder pairing and the rendered sample pair."""

from mlfuse.data.color import colorize
from mlfuse.data.io import Image, as_image, from_array, read_image, write_image
from mlfuse.data.pairs import Pair, Pairing, find_modality_dirs, natural_key, pair_folders

__all__ = ["Image", "Pair", "Pairing", "as_image", "colorize", "find_modality_dirs", "from_array",
           "natural_key", "pair_folders", "read_image", "write_image"]
