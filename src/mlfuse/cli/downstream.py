"""``mlfuse downstream seg|det``: how much does fusion help a segmenter or a detector?"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from mlfuse.errors import MLFuseError, OutputError


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "downstream", help="train a segmenter/detector on each method's fused images and on each modality; tables",
        description="For every input (each method's fused images, the infrared images alone, the visible images "
                    "alone) train the same task network from scratch with one seed and schedule on the training "
                    "split, evaluate it on the test split, and write tables (Markdown, CSV, JSON; best value in "
                    "bold), prediction figures and a results page README.md. seg: per-class IoU, mIoU; det: "
                    "per-class AP@0.5, mAP@0.5, mAP@0.5:0.95 in the coco and yolov5 conventions.",
    )
    p.add_argument("task", choices=("seg", "det"), help="seg = semantic segmentation, det = object detection")
    p.add_argument("--data", required=True, metavar="ROOT",
                   help="MSRS ({train,test}/{vi,ir,Segmentation_labels}), M3FD (Vis/, Ir/, Annotation/) or a folder "
                        "pair with masks/ or labels/ (YOLO txt); see `mlfuse sample --scenes`")
    p.add_argument("--methods", nargs="+", default=[], metavar="LABEL=DIR",
                   help="folders of fused images named like the pairs (flat, or with train/ and test/)")
    p.add_argument("-m", "--method", dest="models", action="append", default=[], metavar="[LABEL=]MODEL[:WEIGHTS]",
                   help="fuse the pairs on the fly with a registered method, e.g. mlfuse:paper, gff; repeatable")
    p.add_argument("--no-single", action="store_true", help="skip the infrared-only and visible-only baselines")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (tables/, figures/, README.md, JSON)")
    p.add_argument("--config", metavar="FILE",
                   help="task config TOML (default: the CPU smoke config; configs/downstream_*_{cpu,gpu}.toml)")
    p.add_argument("--epochs", type=int, help="replace the config's epochs")
    p.add_argument("--seed", type=int, help="replace the config's seed")
    p.add_argument("--split", metavar="FILE", help="split file ('train|val|test NAME' lines); default: the "
                                                   "published split, or mlfuse's shipped seeded 8:1:1 for M3FD")
    p.add_argument("--label-set", default="fusion", choices=("fusion", "infrared", "visible"),
                   help="MSRS detection pack: boxes drawn on fused (default), infrared or visible images")
    p.add_argument("--backbone", metavar="FILE", help="initialise the backbone from this state dict (weights_only)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N, mps")
    p.add_argument("--threads", type=int, help="torch CPU threads (1 is fastest on a loaded machine)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing results page in --out")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from mlfuse.downstream.config import TaskConfig, load_task_config
    from mlfuse.downstream.data import open_dataset
    from mlfuse.downstream.report import write_outputs
    from mlfuse.downstream.runner import INFRARED, VISIBLE, InputSpec, run_downstream
    from mlfuse.runtime import resolve_device

    out = Path(args.out)
    page = out / "README.md"
    if page.exists() and not args.overwrite:
        raise OutputError(f"{page}: already exists (pass --overwrite to replace the results)")
    cfg = load_task_config(args.config) if args.config else TaskConfig(name=f"{args.task}-cpu")
    if args.epochs is not None:
        cfg.epochs = args.epochs
    if args.seed is not None:
        cfg.seed = args.seed
    if args.threads:
        torch.set_num_threads(args.threads)
    inputs = [InputSpec.folder_of(t) for t in args.methods] + [InputSpec.model(t) for t in args.models]
    if not args.no_single:
        inputs += [InputSpec(INFRARED, INFRARED), InputSpec(VISIBLE, VISIBLE)]
    if not inputs:
        raise MLFuseError("nothing to compare: give --methods LABEL=DIR, -m MODEL, or drop --no-single")
    labels = [i.label for i in inputs]
    dup = sorted({x for x in labels if labels.count(x) > 1})
    if dup:
        raise MLFuseError(f"input label(s) used twice: {', '.join(dup)}")
    data = open_dataset(args.data, args.task, split_file=args.split, label_set=args.label_set, seed=cfg.seed)
    say = lambda line: print(f"mlfuse downstream: {line}", file=sys.stderr)  # noqa: E731
    result = run_downstream(data, inputs, cfg, device=resolve_device(args.device), backbone=args.backbone,
                            quiet=args.quiet, report=say)
    command = "mlfuse " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if sys.argv[1:2] == ["downstream"] else None
    for f in write_outputs(result, out, command):
        if f.name == "README.md":
            print(f, file=sys.stderr)
    failed = [r for r in result.results if r.error]
    return 1 if failed else 0
