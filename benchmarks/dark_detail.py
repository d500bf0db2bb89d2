"""How much of the visible image's detail a fusion keeps in the dark parts of night scenes.

Issue 12's default rule failed on MSRS's night pairs (``benchmarks/results/train_schedule.md``): this
measures the failure directly. Dark region: pixels where both sources are below ``--dark`` (0-255).
Per weights, over every pair whose name ends in ``N`` (MSRS night scenes):

* ``corr_vi``: correlation of the fused image with the visible one inside the dark region;
* ``flat_blocks``: share of the dark region's 8 x 8 blocks (at least 75 % dark) where the visible
  image has texture (std >= 1 grey level) but the fused image keeps under a quarter of it (crushed
  to a flat level);
* ``mean``: mean fused grey level there.

Reproduce (MLFuse authors' checkpoint fetched as ``mlfuse weights fetch mlfuse-paper --url file://...``):

    python benchmarks/dark_detail.py --weights mlfuse-paper mlfuse-own-v1 mlfuse-own-v2 \
        benchmarks/runs/mlfuse-cpu-30ep.safetensors \
        --out benchmarks/results/dark_detail.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np
import torch

import mlfuse
from mlfuse.data.io import atomic_write, read_image
from mlfuse.runtime import machine

BLOCK = 8


def dark_stats(fused: np.ndarray, vi: np.ndarray, ir: np.ndarray, dark: int) -> dict[str, float]:
    """The three figures of the module docstring for one pair (2-D arrays, 0-255)."""
    f, v = fused.astype(np.float64), vi.astype(np.float64)
    mask = (v < dark) & (ir < dark)
    h, w = (s // BLOCK * BLOCK for s in f.shape)

    def blocks(x: np.ndarray) -> np.ndarray:
        return x[:h, :w].reshape(h // BLOCK, BLOCK, w // BLOCK, BLOCK).swapaxes(1, 2).reshape(-1, BLOCK * BLOCK)

    fb, vb, mb = blocks(f), blocks(v), blocks(mask.astype(np.float64))
    chosen = (mb.mean(1) >= 0.75) & (vb.std(1) >= 1.0)
    flat = fb[chosen].std(1) < 0.25 * vb[chosen].std(1)
    return {"dark_share": float(mask.mean()),
            "corr_vi": float(np.corrcoef(f[mask], v[mask])[0, 1]) if mask.sum() > 1 else float("nan"),
            "flat_blocks": float(flat.mean()) if chosen.any() else float("nan"),
            "mean": float(f[mask].mean()) if mask.any() else float("nan")}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--weights", nargs="+", required=True, help="MLFuse weights: release names or files")
    ap.add_argument("--root", default=str(Path(__file__).resolve().parents[2] / "shared/data/msrs/test"),
                    help="a folder with vi/ and ir/ (default: ../shared/data/msrs/test)")
    ap.add_argument("--dark", type=float, default=20.0, help="dark: both sources below this grey level")
    ap.add_argument("--out", help="JSON file to write (atomically)")
    args = ap.parse_args(argv)
    root = Path(args.root)
    names = sorted(p.stem for p in (root / "ir").iterdir() if p.stem.endswith("N"))
    if not names:
        print(f"{root / 'ir'}: no night pairs (names ending in N)", file=sys.stderr)
        return 1
    torch.set_num_threads(1)
    sources = {}
    for n in names:
        vi_path = next((root / "vi").glob(f"{n}.*"))
        ir_path = next((root / "ir").glob(f"{n}.*"))
        sources[n] = (vi_path, ir_path)
    rows = {}
    for weights in args.weights:
        model = mlfuse.create_model("mlfuse", weights=weights)
        per = {}
        for n, (vi_path, ir_path) in sources.items():
            vi, ir = read_image(vi_path).luma(), read_image(ir_path).luma()
            per[n] = dark_stats(model.fuse(vi, ir, color="gray"), vi, ir, args.dark)
        mean = {k: float(np.nanmean([p[k] for p in per.values()])) for k in ("corr_vi", "flat_blocks", "mean")}
        rows[weights] = {"mean": mean, "per_pair": per}
        print(f"{weights}: corr_vi {mean['corr_vi']:.3f}  flat_blocks {mean['flat_blocks']:.3f}  "
              f"mean {mean['mean']:.1f}  ({len(per)} night pairs)", flush=True)
    if args.out:
        doc = {"root": os.path.relpath(root, Path.cwd()), "dark": args.dark, "pairs": names, "weights": rows,
               "machine": machine(), "reproduce": "python benchmarks/dark_detail.py " + " ".join(argv or sys.argv[1:])}
        text = (json.dumps(doc, indent=1) + "\n").encode()
        atomic_write(args.out, lambda fh: fh.write(text), overwrite=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
