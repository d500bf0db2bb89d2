"""``mlfuse eval``: metric tables for one or several methods' result folders."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tqdm import tqdm

from mlfuse.cli.fuse import add_source_options, source_dirs
from mlfuse.errors import MLFuseError
from mlfuse.metrics.evaluation import evaluate_folders
from mlfuse.metrics.profiles import PROFILES
from mlfuse.metrics.report import markdown_table, per_image_csv, text_table, to_json, write_text


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "eval", help="compute fusion metrics over folders of results",
        description="Score fused results against their sources under a metric profile. Sources pair by file "
                    "stem as in `mlfuse fuse`; each result folder is matched to the pairs by stem.",
    )
    p.add_argument("--fused", "--methods", dest="methods", nargs="+", required=True, metavar="[NAME=]DIR",
                   help="result folder(s), one per method (label = folder name unless NAME= is given)")
    add_source_options(p)
    p.add_argument("--profile", default="cddfuse", choices=tuple(PROFILES),
                   help="metric conventions (default cddfuse); 'paper' = MLFuse's six")
    p.add_argument("--metrics", help="comma-separated subset of the profile's metrics")
    p.add_argument("--no-slow", action="store_true", help="skip the slow metrics (FMI)")
    p.add_argument("--per-image", action="store_true", help="print per-image rows too")
    p.add_argument("--csv", metavar="FILE", help="write per-image values as CSV")
    p.add_argument("--json", metavar="FILE", help="write summary, per-image values and problems as JSON")
    p.add_argument("--md", metavar="FILE", help="write the summary table as Markdown")
    p.add_argument("--overwrite", action="store_true", help="replace existing output files")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=run)


def _methods(specs: list[str]) -> dict[str, Path]:
    out: dict[str, Path] = {}
    for spec in specs:
        name, _, folder = spec.rpartition("=") if "=" in spec else ("", "", spec)
        path = Path(folder)
        label = name or path.name or str(path)
        if label in out:
            raise MLFuseError(f"two result folders are labelled '{label}'; name them with NAME=DIR")
        if not path.is_dir():
            raise MLFuseError(f"{path}: no such result folder")
        out[label] = path
    return out


def run(args: argparse.Namespace) -> int:
    methods = _methods(args.methods)
    s_dir, f_dir = source_dirs(args)
    outputs = [(args.csv, per_image_csv), (args.json, to_json), (args.md, markdown_table)]
    for path, _ in outputs:  # refuse before computing anything
        if path and Path(path).exists() and not args.overwrite:
            raise MLFuseError(f"{path}: already exists (pass --overwrite to replace it)")
    metrics = [m.strip() for m in args.metrics.split(",")] if args.metrics else None
    report = evaluate_folders(methods, s_dir, f_dir, args.profile, metrics=metrics, slow=not args.no_slow,
                              quiet=args.quiet, report=lambda line: tqdm.write(line, file=sys.stderr))
    if not report.rows:
        raise MLFuseError("nothing could be evaluated (see the problems listed above)")
    for path, render in outputs:  # files first: what was computed is kept whatever happens next
        if path:
            write_text(path, render(report), overwrite=args.overwrite)
            print(f"wrote {path}", file=sys.stderr)
    print(text_table(report, per_image=args.per_image))
    if report.interrupted:
        return 130
    return 1 if report.problems else 0
