"""``mlfuse fuse``: one pair or two folders, roles always explicit."""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from tqdm import tqdm

from mlfuse.cli import DEVICE_METAVAR, device_arg, fuse_shard
from mlfuse.data.color import COLOR_MODES
from mlfuse.data.io import write_image
from mlfuse.data.pairs import find_modality_dirs
from mlfuse.errors import InputError, MLFuseError
from mlfuse.inference.fuse import (
    OUTPUT_RULES,
    FuseOptions,
    check_distinct_inputs,
    check_folder_output,
    check_output_not_input,
    existing_outputs,
    fuse_folder,
    fuse_pair,
    refuse_existing,
)
from mlfuse.inference.shard import shard_device
from mlfuse.progress import show_bars
from mlfuse.registry import create_model, get_card, model_for_weights
from mlfuse.runtime import PRECISIONS, resolve_device


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "fuse", help="fuse an image pair or two folders of pairs",
        description="Fuse a structural image (visible/MRI) with a functional one (infrared/CT/PET/SPECT). "
                    "Give files, folders (paired by file stem), or --root with two modality sub-folders.",
    )
    add_source_options(p)
    p.add_argument("-o", "--output", required=True, metavar="PATH",
                   help="output file (one pair) or folder (folders)")
    p.add_argument("--model", default=None, help="registered method (see `mlfuse models`; default: the method "
                   "of the --weights release, else mlfuse)")
    p.add_argument("--weights", default="default", help="checkpoint file or release name (default: the model's)")
    p.add_argument("--task", default=None, metavar="TASK",
                   help="model variant for methods that have several, e.g. cddfuse: ivf (default), mif "
                        "(its MIF checkpoint), mif-ivfckpt (its IVF checkpoint on medical pairs)")
    p.add_argument("--device", default="auto", type=device_arg, metavar=DEVICE_METAVAR)
    p.add_argument("--precision", default="fp32", choices=tuple(PRECISIONS))
    p.add_argument("--color", default="ycbcr", choices=COLOR_MODES,
                   help="colour output: full-range YCbCr (default); paper: the method authors' own colour code "
                        "(MLFuse: their MATLAB tool, SMFNet: float YCrCb); or gray")
    p.add_argument("--output-rule", "--intensity", dest="output_rule", default=None, choices=OUTPUT_RULES,
                   help="minmax: per-image stretch, truncated; minmax-round: rounded; clamp: unstretched "
                        "(default: the method's own rule)")
    p.add_argument("--tile", default="auto", metavar="auto|N|off",
                   help="exact tiled inference (same output, bounded memory): auto tiles only images that do "
                        "not fit --tile-budget (default), N uses N x N-pixel tiles, off never tiles")
    p.add_argument("--tile-budget", type=float, default=None, metavar="MB",
                   help="memory for --tile auto: images that fit it run whole, larger ones in tiles that fit it "
                        "(default: 1024, less if the machine has less free)")
    p.add_argument("--fast", action="store_true",
                   help="optimised copy of the network: BN folded, fused conv+activation, channels-last, "
                        "cache-blocked tiles on the CPU (same output to ~1e-6)")
    p.add_argument("--ext", default="png", help="output format for folder runs (default png)")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    p.add_argument("--skip-existing", action="store_true", help="folder runs: leave existing outputs alone")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    fuse_shard.add_options(p)
    p.set_defaults(run=run)


def add_source_options(p: argparse.ArgumentParser) -> None:
    """The role options shared by every command that reads source pairs (fuse, eval)."""
    p.add_argument("--structural", "--vis", "--mri", dest="structural", metavar="PATH",
                   help="visible / MRI image or folder")
    p.add_argument("--functional", "--ir", "--ct", "--pet", "--spect", dest="functional", metavar="PATH",
                   help="infrared / CT / PET / SPECT image or folder")
    p.add_argument("--root", metavar="DIR", help="folder holding two modality sub-folders (vi/ir, mri/ct, ...)")
    p.add_argument("--subdirs", metavar="S,F", help="names of the structural and functional sub-folders "
                   "under --root (default: detect vi|visible|mri and ir|ct|pet|spect)")


def source_dirs(args: argparse.Namespace) -> tuple[Path, Path]:
    """(structural, functional) from the role options; for commands that need folders."""
    s_path, f_path = source_paths(args)
    for p in (s_path, f_path):
        if not p.is_dir():
            raise InputError(f"{p}: not a folder (give source folders, or --root)")
    return s_path, f_path


def source_paths(args: argparse.Namespace) -> tuple[Path, Path]:
    if args.root:
        if args.structural or args.functional:
            raise MLFuseError("give either --root or the two role options, not both")
        subdirs = None
        if args.subdirs:
            names = [n.strip() for n in args.subdirs.replace("/", ",").split(",")]
            if len(names) != 2 or not all(names):
                raise MLFuseError(f"--subdirs '{args.subdirs}': expected STRUCTURAL,FUNCTIONAL, e.g. mri,ct")
            subdirs = (names[0], names[1])
        return find_modality_dirs(args.root, subdirs)
    if not args.structural or not args.functional:
        raise MLFuseError("need both roles: --vis/--mri/--structural and --ir/--ct/--pet/--spect/--functional "
                          "(or --root DIR)")
    check_distinct_inputs(args.structural, args.functional)
    return Path(args.structural), Path(args.functional)


def task_option(model: str, task: str | None) -> dict[str, str]:
    """``{"task": task}`` for the model builder, checked against the card's ``tasks``."""
    if task is None:
        return {}
    tasks = get_card(model).tasks
    if task not in tasks:
        have = f"its tasks are {', '.join(tasks)}" if tasks else "it has no task variants"
        raise MLFuseError(f"--task {task}: not available for model '{model}' ({have})")
    return {"task": task}


def run(args: argparse.Namespace) -> int:
    s_path, f_path = source_paths(args)
    folder_mode = s_path.is_dir() or f_path.is_dir()
    if folder_mode and not (s_path.is_dir() and f_path.is_dir()):
        file_one = f_path if s_path.is_dir() else s_path
        raise InputError(f"{file_one}: expected a folder like the other role's input (or give two files)")
    if args.tile_budget is not None and not (math.isfinite(args.tile_budget) and args.tile_budget > 0):
        raise MLFuseError(f"--tile-budget {args.tile_budget}: expected a positive number of megabytes")
    opts = FuseOptions(color=args.color, output_rule=args.output_rule, precision=args.precision, tile=args.tile,
                       tile_budget_mb=args.tile_budget,
                       progress=not folder_mode and show_bars(args.quiet))  # folders: a pair bar
    check_output_not_input(args.output, [s_path, f_path])  # also refuses -o ''
    out = Path(args.output)
    if not folder_mode:  # read inputs and check the output before building the model: fail fast
        from mlfuse.data.io import check_output_format, check_writable_folder, clean_stale_temps, read_image

        s_img, f_img = read_image(s_path), read_image(f_path)
        if out.is_dir():
            out = out / f"{s_path.stem}.png"
        check_output_not_input(out, [s_path, f_path])
        check_output_format(out)
        check_writable_folder(out.parent)
        clean_stale_temps(out.parent)
        if out.exists() and not args.overwrite:
            raise MLFuseError(f"{out}: already exists (pass --overwrite to replace it)")
    shard = fuse_shard.from_args(args, folder_mode)  # None: not a sharded folder run
    if shard is not None and args.merge_manifests:
        return fuse_shard.merge(args, s_path, f_path, out)
    if folder_mode:  # every output problem is found before the model is built or any pair computed
        check_folder_output(out, args.ext, [s_path, f_path])
        if shard is None and not (args.overwrite or args.skip_existing):
            from mlfuse.data.pairs import pair_folders

            pairing = pair_folders(s_path, f_path)
            refuse_existing(existing_outputs(pairing, out, args.ext), len(pairing.pairs), out)
    device = resolve_device(args.device) if shard is None else shard_device(args.device, shard)
    name = args.model or model_for_weights(args.weights) or "mlfuse"  # a release knows its model
    model = create_model(name, weights=args.weights, device=device, **task_option(name, args.task))
    if args.fast:
        from mlfuse.inference.fastpath import optimize_for_inference

        model = optimize_for_inference(model)
    if not folder_mode:
        fused = fuse_pair(model, s_img, f_img, opts)
        del s_img, f_img  # the inputs' pixels are not needed while the output is encoded
        write_image(fused, out, overwrite=args.overwrite)
        if not args.quiet:
            print(f"wrote {out}", file=sys.stderr)
        return 0
    if shard is not None:
        return fuse_shard.run_folder(args, model, s_path, f_path, out, shard, opts)
    if out.exists() and not out.is_dir():
        raise MLFuseError(f"{out}: is a file; folder runs need an output folder")
    report = fuse_folder(model, s_path, f_path, out, ext=args.ext, overwrite=args.overwrite,
                         skip_existing=args.skip_existing, quiet=args.quiet,
                         report=lambda line: tqdm.write(line, file=sys.stderr), options=opts)
    n_pairs = len(report.pairing.pairs)
    unpaired = len(report.pairing.problems())
    summary = (f"{len(report.written)} of {n_pairs} pairs fused into {out}"
               + (f", {len(report.skipped)} skipped (exist)" if report.skipped else "")
               + (f", {len(report.failed)} failed" if report.failed else "")
               + (f", {unpaired} file(s) unpaired" if unpaired else ""))
    print(summary, file=sys.stderr)
    if n_pairs == 0:
        raise InputError(f"no pairs found between {s_path} and {f_path} (files pair by identical stem)")
    return 1 if report.failed else 0
