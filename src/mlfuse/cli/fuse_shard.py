"""``mlfuse fuse`` folder runs split into shards (torchrun, srun, ``--shard K/N``); see
:mod:`mlfuse.inference.shard`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from torch import nn
from tqdm import tqdm

from mlfuse.data.pairs import Pair, pair_folders
from mlfuse.errors import InputError, MLFuseError
from mlfuse.inference.fuse import FuseOptions
from mlfuse.inference.shard import MANIFEST_DIR, Shard, merge_manifests, resolve_shard, run_shard, wait_for_launch


def add_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group(
        "sharded folder runs",
        "Under torchrun (RANK/WORLD_SIZE), an srun job step (SLURM_PROCID/SLURM_NTASKS) or with --shard, each "
        "process fuses every N-th pair of the sorted list on its own device (cuda:LOCAL_RANK where there are "
        f"GPUs) and logs each pair to OUT/{MANIFEST_DIR}/shard-K-of-N.jsonl; relaunch with --skip-existing to "
        "finish only what is missing.")
    g.add_argument("--shard", metavar="K/N", default=None,
                   help="fuse shard K of N (K counts from 0) instead of the launcher's RANK/WORLD_SIZE")
    g.add_argument("--merge-manifests", action="store_true",
                   help="fuse nothing: merge the shard manifests under OUT and report the pairs still missing "
                        "(exit status 1 if any)")
    g.add_argument("--merge-wait", type=float, default=600.0, metavar="S",
                   help="rank 0 waits for the other shards of its launch to finish, then prints the merged "
                        "report; it stops waiting once no shard has logged anything for S seconds (default 600). "
                        "A launch is known from torchrun, an srun step, or MLFUSE_LAUNCH_ID set by your launcher")


def from_args(args: argparse.Namespace, folder_mode: bool) -> Shard | None:
    """The shard of a sharded folder run (or a --merge-manifests run); None for a plain run."""
    if not args.merge_wait >= 0:
        raise MLFuseError(f"--merge-wait {args.merge_wait}: expected seconds >= 0")
    shard = resolve_shard(args.shard)
    if not folder_mode:
        if args.shard or args.merge_manifests or shard.count > 1:
            raise MLFuseError("sharding splits folder runs: give two folders or --root (got single files"
                              + (f"; the launcher says WORLD_SIZE={shard.count}" if shard.count > 1 else "") + ")")
        return None
    if args.shard is None and shard.count == 1 and not args.merge_manifests:
        return None
    return shard


def _say(line: str) -> None:
    tqdm.write(line, file=sys.stderr)


def _pairs(s_path: Path, f_path: Path, show_problems: bool) -> list[Pair]:
    pairing = pair_folders(s_path, f_path)
    if show_problems:
        for line in pairing.problems():
            _say(f"unpaired: {line}")
    if not pairing.pairs:
        raise InputError(f"no pairs found between {s_path} and {f_path} (files pair by identical stem)")
    return pairing.pairs


def merge(args: argparse.Namespace, s_path: Path, f_path: Path, out: Path) -> int:
    """``--merge-manifests``: the merged report; status 1 while pairs are missing."""
    if not out.is_dir():
        raise MLFuseError(f"{out}: no such output folder (nothing to merge)")
    report = merge_manifests(_pairs(s_path, f_path, True), out, ext=args.ext)
    for line in report.summary(out):
        print(line, file=sys.stderr)
    return 0 if report.complete else 1


def run_folder(args: argparse.Namespace, model: nn.Module, s_path: Path, f_path: Path, out: Path, shard: Shard,
               opts: FuseOptions) -> int:
    """Fuse this process's shard; rank 0 then waits for its launch's other shards and merges."""
    if out.exists() and not out.is_dir():
        raise MLFuseError(f"{out}: is a file; folder runs need an output folder")
    pairs = _pairs(s_path, f_path, shard.index == 0)
    quiet = args.quiet or (shard.index != 0 and args.shard is None)  # one bar per launch on a shared terminal
    rep = run_shard(model, pairs, out, shard, ext=args.ext, overwrite=args.overwrite,
                    skip_existing=args.skip_existing, quiet=quiet, report=_say, options=opts)
    print(f"shard {shard.label}: {len(rep.written)} of {rep.pairs} pairs fused into {out}"
          + (f", {len(rep.skipped)} skipped (exist)" if rep.skipped else "")
          + (f", {len(rep.failed)} failed" if rep.failed else "") + f"; manifest {rep.manifest}", file=sys.stderr)
    status = 1 if rep.failed else 0
    if shard.index != 0:
        return status
    if not wait_for_launch(out, shard, stall_s=args.merge_wait, say=None if args.quiet else _say):
        print("not every shard of this launch has finished; when they have, run the same command with "
              "--merge-manifests for the merged report", file=sys.stderr)
        return status
    report = merge_manifests(pairs, out, ext=args.ext)
    for line in report.summary(out):
        print(line, file=sys.stderr)
    return max(status, 0 if report.complete else 1)
