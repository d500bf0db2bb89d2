"""Fine-tune MLFuse weights for a few hundred steps on a chosen data mixture, saving snapshots.

Issue 12's probe of why own-v2 crushes night-scene texture (``benchmarks/results/train_schedule.md``):
from the same weights, the same number of steps at the same constant learning rate, once on
``configs/mlfuse_train.toml``'s mixture (853 pairs, 79 % medical) and once with the first data entry
(RoadScene) repeated so that about half the crops are RoadScene (the MLFuse authors' mixture, spec
``mlfuse.md`` section 8); ``benchmarks/dark_detail.py`` then scores each snapshot. The authors' losses
and loss weights, Adam with their weight decay, batch 16, 128 x 128 seeded crops, train mode.

    python benchmarks/finetune_probe.py --name original --steps 240 --every 80 --lr 3e-4 --out /tmp/mix
    python benchmarks/finetune_probe.py --name balanced --repeat-first 4 --steps 240 --every 80 --lr 3e-4 --out /tmp/mix
    python benchmarks/dark_detail.py --weights /tmp/mix/original_80.safetensors ... --out ...
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

import mlfuse
from mlfuse.models.mlfuse.recipe import RECIPE
from mlfuse.train.config import build_config


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--name", required=True, help="snapshot file prefix")
    ap.add_argument("--weights", default="mlfuse-own-v2", help="starting MLFuse weights (release or file)")
    ap.add_argument("--config", default="configs/mlfuse_train.toml", help="its [[data]] entries are the data")
    ap.add_argument("--repeat-first", type=int, default=1, help="crops per pair per epoch of the first entry")
    ap.add_argument("--steps", type=int, default=240)
    ap.add_argument("--every", type=int, default=80, help="snapshot every N steps")
    ap.add_argument("--lr", type=float, default=3e-4, help="constant learning rate")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, required=True, help="folder for NAME_STEP.safetensors")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    # the recipe's own dataset (128 x 128 crops, VSM maps), Adam and losses; seed 7, a constant lr
    cfg = build_config(RECIPE.defaults, file=args.config, sets=[f"data.0.repeat={args.repeat_first}"],
                       overrides={"seed": 7, "lr": args.lr})
    data = RECIPE.train_dataset(cfg)
    print(f"{args.name}: {len(data)} crops per epoch", flush=True)
    net = mlfuse.create_model("mlfuse", weights=args.weights).train()
    (opt,) = RECIPE.optimizers(net, cfg)
    order_rng = np.random.default_rng(0)
    args.out.mkdir(parents=True, exist_ok=True)
    step, epoch, t0 = 0, 0, time.perf_counter()
    while step < args.steps:
        data.set_epoch(epoch)
        order = order_rng.permutation(len(data))
        for i in range(0, len(order) - 15, 16):
            items = [data[int(j)] for j in order[i:i + 16]]
            batch = {k: torch.stack([it[k] for it in items]) for k in items[0]}
            loss = RECIPE.losses(net, batch, epoch, cfg)["total"]
            opt.zero_grad()
            loss.backward()
            opt.step()
            step += 1
            if step % args.every == 0:
                net.eval()
                save_file({k: v.contiguous() for k, v in net.state_dict().items()},
                          str(args.out / f"{args.name}_{step}.safetensors"))
                net.train()
                print(f"{args.name}: step {step}, {time.perf_counter() - t0:.0f} s", flush=True)
            if step >= args.steps:
                break
        epoch += 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
