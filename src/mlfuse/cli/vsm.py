"""``mlfuse vsm IN OUT``: visual saliency maps (Ma et al. 2017) of one image or a folder."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tqdm import tqdm


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("vsm", help="visual saliency map (histogram contrast) of an image or a folder")
    p.add_argument("input", help="image file or folder of images")
    p.add_argument("output", help="output file (for a file) or folder (for a folder)")
    p.add_argument("--color", action="store_true",
                   help="for colour images, one map per RGB channel (as the authors stored them) instead of "
                        "the map of the luma")
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("-q", "--quiet", action="store_true")
    p.set_defaults(run=run)


def _one(src: Path, dst: Path, color: bool, overwrite: bool) -> None:
    from mlfuse.data.color import pil_luma
    from mlfuse.data.io import read_image, write_image
    from mlfuse.data.vsm import vsm
    from mlfuse.errors import InputError

    img = read_image(src)
    px = img.pixels
    if img.maxval != 255:
        raise InputError(f"{src}: VSM is defined on 8-bit images (this one is {img.maxval + 1}-level)")
    if img.is_color and not color:
        px = pil_luma(px)
    write_image(vsm(px), dst, overwrite=overwrite)


def run(args: argparse.Namespace) -> int:
    from mlfuse.data.pairs import list_images
    from mlfuse.errors import MLFuseError

    src, dst = Path(args.input), Path(args.output)
    if src.is_file():
        _one(src, dst, args.color, args.overwrite)
        return 0
    files, dups = list_images(src)
    for line in dups.values():
        print(f"mlfuse: {line}", file=sys.stderr)
    failed = bool(dups)
    for stem in tqdm(sorted(files), desc="vsm", disable=args.quiet):
        try:
            _one(files[stem], dst / f"{stem}.png", args.color, args.overwrite)
        except MLFuseError as exc:
            print(f"mlfuse: {exc}", file=sys.stderr)
            failed = True
    return 1 if failed else 0
