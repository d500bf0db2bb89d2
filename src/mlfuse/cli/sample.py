"""``mlfuse sample DIR``: write the rendered visible/infrared sample pair."""

from __future__ import annotations

import argparse
import sys

from mlfuse.data.sample import write_sample, write_scenes
from mlfuse.errors import MLFuseError


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "sample", help="write mlfuse's rendered sample pair (vis.png, ir.png)",
        description="Write the visible/infrared sample pair that mlfuse renders itself (a dusk street whose "
                    "pedestrians and car are dark in the visible image and warm in the infrared one) into FOLDER "
                    "as vis.png and ir.png: a pair to try `mlfuse fuse` on without any data set.",
    )
    p.add_argument("folder", help="where to write the images (created if missing)")
    p.add_argument("--overwrite", action="store_true", help="replace existing files")
    p.add_argument("--scenes", type=int, metavar="N",
                   help="instead: N labelled street scenes (MSRS layout: masks, YOLO boxes) for `mlfuse downstream`")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if args.scenes is not None:
        if args.scenes < 2:
            raise MLFuseError(f"--scenes {args.scenes}: need at least 2 (a train and a test scene)")
        root = write_scenes(args.folder, args.scenes, overwrite=args.overwrite)
        print(f"{root}: {args.scenes} labelled scenes (train/, test/, classes.txt, seg_classes.txt)", file=sys.stderr)
        return 0
    for path in write_sample(args.folder, overwrite=args.overwrite):
        print(path, file=sys.stderr)
    return 0
