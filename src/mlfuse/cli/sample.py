"""``mlfuse sample DIR``: write the rendered visible/infrared sample pair."""

from __future__ import annotations

import argparse
import sys

from mlfuse.data.sample import write_sample


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "sample", help="write mlfuse's rendered sample pair (vis.png, ir.png)",
        description="Write the visible/infrared sample pair that mlfuse renders itself (a dusk street whose "
                    "pedestrians and car are dark in the visible image and warm in the infrared one) into FOLDER "
                    "as vis.png and ir.png: a pair to try `mlfuse fuse` on without any data set.",
    )
    p.add_argument("folder", help="where to write the images (created if missing)")
    p.add_argument("--overwrite", action="store_true", help="replace existing files")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    for path in write_sample(args.folder, overwrite=args.overwrite):
        print(path, file=sys.stderr)
    return 0
