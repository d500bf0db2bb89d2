"""``mlfuse train METHOD``: run a method's training recipe (also under ``torchrun -m mlfuse train``)."""

from __future__ import annotations

import argparse
import sys


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a method with its recipe (resumable; torchrun for several processes)",
                       description="Train METHOD with its authors' recipe. Every recipe setting can be changed "
                                   "from a config file (--config, TOML or JSON) and with --set KEY=VALUE. "
                                   "For data-parallel training run `torchrun --nproc_per_node=N -m mlfuse train ...`.")
    p.add_argument("method", help="registered method with a recipe (see `mlfuse models`)")
    p.add_argument("--config", help="TOML or JSON file of settings")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                   help="override one setting (JSON values; nested keys with dots, e.g. loss_weights.ssd=2)")
    p.add_argument("--data", action="append", metavar="ROOT[:STRUCT,FUNC]",
                   help="a training set: a folder with two modality sub-folders (repeat to mix several)")
    p.add_argument("--val", action="append", metavar="ROOT[:STRUCT,FUNC]", help="a validation set (repeatable)")
    p.add_argument("--out", dest="out_dir", help="run folder (checkpoints, logs, final weights)")
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", dest="batch_size", type=int, help="global batch size")
    p.add_argument("--seed", type=int)
    p.add_argument("--device", help="auto | cpu | cuda | cuda:N | mps")
    p.add_argument("--precision", choices=("fp32", "bf16", "fp16"))
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    p.add_argument("--print-config", action="store_true", help="print the resolved settings and exit")
    p.add_argument("-q", "--quiet", action="store_true")
    p.set_defaults(run=run)


def _entries(specs: list[str] | None) -> list[dict] | None:
    if not specs:
        return None
    out = []
    for spec in specs:
        root, sep, dirs = spec.rpartition(":") if ":" in spec and "," in spec.rpartition(":")[2] else (spec, "", "")
        entry: dict = {"root": root}
        if sep:
            entry["dirs"] = dirs.split(",")
        out.append(entry)
    return out


def run(args: argparse.Namespace) -> int:
    import json

    from mlfuse.train import Trainer, build_config, get_recipe

    recipe = get_recipe(args.method)
    overrides = {k: getattr(args, k) for k in ("out_dir", "epochs", "batch_size", "seed", "device", "precision")}
    overrides["data"] = _entries(args.data)
    overrides["val"] = _entries(args.val)
    cfg = build_config(recipe.defaults, file=args.config, sets=args.sets, overrides=overrides,
                       presets=recipe.presets)
    if args.print_config:
        print(json.dumps(cfg, indent=1))
        return 0
    if not cfg.data:
        from mlfuse.errors import MLFuseError

        raise MLFuseError("no training data: give --data ROOT (repeatable) or `data` in --config")
    result = Trainer(recipe, cfg, resume=args.resume, quiet=args.quiet).run()
    if result.stopped:  # said even with --quiet: the weights are not the run's final ones
        print(f"{result.out_dir}: stopped at step {result.steps} ({result.stopped}), checkpointed; "
              "add --resume to the same command to continue", file=sys.stderr)
    elif not args.quiet and result.out_dir.exists():
        print(f"trained {result.epochs_done} epoch(s), {result.steps} steps in {result.seconds:.1f} s; "
              f"weights: {result.out_dir / 'model.safetensors'}", file=sys.stderr)
    return 0
