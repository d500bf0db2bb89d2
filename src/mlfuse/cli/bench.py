"""``mlfuse bench``: methods x datasets -> metric tables, efficiency table, figures, results page."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from tqdm import tqdm

from mlfuse.bench.config import (
    BenchConfig,
    DatasetSpec,
    MethodSpec,
    load_config,
    parse_figure,
    parse_size,
    parse_subdirs,
)
from mlfuse.bench.runner import run_bench, update_efficiency
from mlfuse.bench.tables import efficiency_markdown
from mlfuse.cli import DEVICE_METAVAR, device_arg
from mlfuse.data.color import COLOR_MODES
from mlfuse.data.pairs import read_names
from mlfuse.errors import MLFuseError
from mlfuse.metrics.profiles import PROFILES
from mlfuse.runtime import PRECISIONS


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "bench", help="benchmark methods on datasets: metric tables, efficiency, figures",
        description="Fuse every dataset with every method (results cached: re-runs skip what exists), score "
                    "them under metric profiles and write per-dataset tables (Markdown, CSV; best value "
                    "marked), an efficiency table, comparison figures and a results page README.md. Options "
                    "given here replace the config file's values.",
    )
    p.add_argument("--config", metavar="FILE", help="TOML or JSON file describing the bench (see docs)")
    p.add_argument("-m", "--method", dest="methods", action="append", metavar="[LABEL=]MODEL[:WEIGHTS]",
                   help="a method, e.g. gff, mlfuse (default weights), mlfuse:paper (release mlfuse-paper), "
                        "mlfuse:ckpt.pth; repeatable")
    p.add_argument("-d", "--dataset", dest="datasets", action="append", metavar="NAME=ROOT",
                   help="a folder with two modality sub-folders (paired as `mlfuse fuse --root`); repeatable")
    p.add_argument("--subdirs", action="append", metavar="NAME=S,F", help="a dataset's sub-folder names")
    p.add_argument("--names", action="append", metavar="NAME=FILE",
                   help="only the pairs listed in FILE (one name per line) for dataset NAME")
    p.add_argument("--weights-file", action="append", metavar="RELEASE=FILE",
                   help="use a local copy of a weights release (sha256-checked), e.g. mlfuse-paper=model_fuse.pth")
    p.add_argument("--profile", dest="profiles", action="append", choices=tuple(PROFILES),
                   help="metric profile (default cddfuse); repeatable")
    p.add_argument("--no-slow", action="store_true", help="skip the slow metrics (FMI)")
    p.add_argument("-o", "--out", metavar="DIR", help="output folder for the tables, figures and README.md")
    p.add_argument("--cache", metavar="DIR", help="fused-result cache (default: <mlfuse cache>/bench)")
    p.add_argument("--figure", dest="figures", action="append", metavar="DATASET[:PAIR][@X,Y,W,H]",
                   help="a comparison figure (default: the first pair of every dataset); @ adds a zoomed inset")
    p.add_argument("--tile", type=int, help="figure tile height in pixels (default 256)")
    p.add_argument("--size", metavar="HxW", help="efficiency input size (default 480x640)")
    p.add_argument("--repeats", type=int, help="timed runs per method (default 5)")
    p.add_argument("--no-efficiency", action="store_true", help="skip the efficiency table")
    p.add_argument("--efficiency-only", action="store_true",
                   help="only measure the efficiency table again and update it in the existing results page in "
                        "--out (the quality tables are left as they are)")
    p.add_argument("--device", type=device_arg, metavar=DEVICE_METAVAR,
                   help="device for fusing (default auto)")
    p.add_argument("--threads", type=int, help="torch CPU threads")
    p.add_argument("--color", choices=COLOR_MODES, help="colour mode (default ycbcr)")
    p.add_argument("--precision", choices=tuple(PRECISIONS), help="default fp32")
    p.add_argument("--recompute", action="store_true", help="ignore cached fused results")
    p.add_argument("--overwrite", action="store_true", help="replace an existing results page")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    p.set_defaults(run=run)


def _pairs(values: list[str] | None, what: str) -> dict[str, str]:
    out = {}
    for v in values or []:
        key, sep, val = v.partition("=")
        if not sep or not key or not val:
            raise MLFuseError(f"{what} '{v}': expected NAME=VALUE")
        out[key] = val
    return out


def build_config(args: argparse.Namespace, argv: list[str] | None = None) -> BenchConfig:
    """The config file (if any) with the command-line options applied on top."""
    cfg = load_config(args.config) if args.config else BenchConfig(methods=[], datasets=[], out=Path("bench"))
    if args.methods:
        cfg.methods = [MethodSpec.parse(m) for m in args.methods]
    if args.datasets:
        cfg.datasets = [DatasetSpec(name, Path(root), display=root)
                        for name, root in _pairs(args.datasets, "--dataset").items()]
    known = {d.name: i for i, d in enumerate(cfg.datasets)}
    for option, values in (("--subdirs", args.subdirs), ("--names", args.names)):
        for name, value in _pairs(values, option).items():
            if name not in known:
                raise MLFuseError(f"{option} {name}=...: no dataset named '{name}'")
            d = cfg.datasets[known[name]]
            if option == "--subdirs":
                cfg.datasets[known[name]] = DatasetSpec(d.name, d.root, parse_subdirs(value), d.names, d.display)
            else:
                cfg.datasets[known[name]] = DatasetSpec(d.name, d.root, d.subdirs, read_names(Path(value)), d.display)
    cfg.weights_files.update({k: Path(v) for k, v in _pairs(args.weights_file, "--weights-file").items()})
    if args.profiles:
        cfg.profiles = list(dict.fromkeys(args.profiles))
    if args.no_slow:
        cfg.slow = False
    if args.out:
        cfg.out = Path(args.out)
    if args.cache:
        cfg.cache = Path(args.cache)
    if args.figures:
        cfg.figures = [parse_figure(f) for f in args.figures]
    if args.size:
        cfg.size = parse_size(args.size)
    for name in ("repeats", "device", "threads", "color", "precision", "tile"):
        if getattr(args, name) is not None:
            setattr(cfg, name, getattr(args, name))
    if args.no_efficiency:
        cfg.efficiency = False
    if cfg.command is None:
        if argv is None and Path(sys.argv[0]).name in ("mlfuse", "__main__.py"):
            argv = sys.argv[1:]
        cfg.command = "mlfuse " + " ".join(shlex.quote(a) for a in argv) if argv is not None else None
    return cfg


def summary_lines(result: object) -> list[str]:
    """A short terminal summary of a bench: per dataset and profile, how many metrics each method is
    best on (direction-aware, ties count for each), best first; the tables hold the values."""
    from collections import Counter

    from mlfuse.metrics.report import best_methods

    lines = []
    for ds in result.datasets:
        for profile, report in ds.reports.items():
            best = best_methods(report)
            wins = Counter(m for winners in best.values() for m in winners)
            if not best or not report.methods:
                continue
            counts = ", ".join(f"{m} {wins.get(m, 0)}" for m in sorted(report.methods, key=lambda m: -wins.get(m, 0)))
            lines.append(f"{ds.spec.name} [{profile}]: metrics won of {len(best)}: {counts}")
    return lines


def run(args: argparse.Namespace) -> int:
    cfg = build_config(args)
    if args.efficiency_only:
        if args.no_efficiency:
            raise MLFuseError("--efficiency-only and --no-efficiency exclude each other")
        invoked = "mlfuse " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if Path(sys.argv[0]).name in (
            "mlfuse", "__main__.py") else None
        rows = update_efficiency(cfg, quiet=args.quiet, report=lambda line: tqdm.write(line, file=sys.stderr),
                                 command=invoked)
        print(efficiency_markdown(rows), end="")
        print(f"updated the efficiency table of {Path(cfg.out) / 'README.md'}", file=sys.stderr)
        return 1 if any(r.error for r in rows) else 0
    result = run_bench(cfg, overwrite=args.overwrite, recompute=args.recompute, quiet=args.quiet,
                       report=lambda line: tqdm.write(line, file=sys.stderr))
    for ds in result.datasets:
        done = sum(1 for m in ds.methods.values() if not m.error)
        new = sum(m.written for m in ds.methods.values())
        reused = sum(m.reused for m in ds.methods.values())
        print(f"{ds.spec.name}: {len(ds.pairs)} pairs x {done}/{len(ds.methods)} methods "
              f"({new} fused, {reused} from the cache)", file=sys.stderr)
    print(f"wrote {Path(cfg.out) / 'README.md'}", file=sys.stderr)
    if not args.quiet:
        for line in summary_lines(result):
            print(line)
    failed = any(ds.failed() or ds.problems for ds in result.datasets)
    return 1 if failed else 0
