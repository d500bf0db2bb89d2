"""``mlfuse vsm IN OUT``: visual saliency maps (Ma et al. 2017) of one image or a folder."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tqdm import tqdm

from mlfuse.progress import bar_disabled


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "vsm", help="visual saliency map (histogram contrast) of an image or a folder",
        description="Visual saliency maps (Ma et al., Infrared Physics & Technology 2017): V(i) = sum_j h(j)|i - j| "
                    "over the 8-bit histogram, min-max normalised to 0..255. Give an image and an output file, or a "
                    "folder and an output folder (one PNG per image, named by stem). The MLFuse recipe computes "
                    "these maps itself; this command is for inspecting them.",
    )
    p.add_argument("input", help="image file or folder of images")
    p.add_argument("output", help="output file (for a file) or folder (for a folder)")
    p.add_argument("--color", action="store_true",
                   help="for colour images, one map per RGB channel (as the authors stored them) instead of "
                        "the map of the luma")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar and no summary line")
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
    from mlfuse.data.io import check_output_not_input
    from mlfuse.data.pairs import list_images
    from mlfuse.errors import MLFuseError

    check_output_not_input(args.output, [args.input])  # never write over the sources (nor -o '')
    src, dst = Path(args.input), Path(args.output)
    if src.is_file():
        _one(src, dst, args.color, args.overwrite)
        if not args.quiet:
            print(f"wrote {dst}", file=sys.stderr)
        return 0
    files, dups = list_images(src)
    for line in dups.values():
        print(f"mlfuse: {line}", file=sys.stderr)
    failed = len(dups)
    written = 0
    for stem in tqdm(sorted(files), desc="vsm", disable=bar_disabled(args.quiet)):
        try:
            check_output_not_input(dst / f"{stem}.png", [files[stem]])
            _one(files[stem], dst / f"{stem}.png", args.color, args.overwrite)
            written += 1
        except MLFuseError as exc:
            tqdm.write(f"mlfuse: {exc}", file=sys.stderr)
            failed += 1
    if not args.quiet:
        print(f"{written} saliency map(s) written into {dst}" + (f", {failed} failed" if failed else ""),
              file=sys.stderr)
    return 1 if failed else 0
