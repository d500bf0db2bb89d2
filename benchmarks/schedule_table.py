"""The schedule table of issue 12: how each MLFuse training schedule that was run did, from files on disk.

Rows are the releases and ablation runs trained by mlfuse (their schedule read from the run configuration in the
weights' metadata) and the authors' checkpoint (their schedule from ``shared/specs/mlfuse.md``); the
scores are the MLFuse paper's six metrics on the Harvard validation split, pooled over its 60 pairs, from
the report of ``mlfuse bench --config benchmarks/schedule_val.toml``. A run folder's ``epochs.csv`` and
``val.csv`` give its loss curve and validation curve.

    python benchmarks/schedule_table.py benchmarks/results/schedule_val/bench.json \\
        --run mlfuse-own-v2=benchmarks/runs/mlfuse-own-v2 --out benchmarks/results/schedule_table.md
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
from pathlib import Path

PAPER_METRICS = ("VIF", "SCD", "Qabf", "CC", "SSIM", "FMI_pixel")
LOSSES = ("L_edg", "L_ssd", "L_cmk", "L_fus", "total")
# The authors' schedule (their train.py; shared/specs/mlfuse.md section 8): no run folder to read it from.
AUTHORS = {"schedule": "authors", "epochs": 501, "lr": 1e-4, "warmup_epochs": 0.0, "eta_min": 0.0,
           "batch_size": 16, "crop": 128}
# The authors' step count: their checkpoint's BatchNorm num_batches_tracked, 13,527 = 501 epochs x 27 iterations
# (about 440 pairs, half RoadScene, half medical; their split is unpublished; spec section 8)
AUTHORS_STEPS = 13_527


def pooled(report: dict, label: str, profile: str = "paper") -> dict[str, float]:
    """Each metric's mean over every pair of every dataset in ``report`` (datasets weighted by pairs)."""
    out = {}
    for metric in PAPER_METRICS:
        total = count = 0.0
        for ds in report["datasets"]:
            entry = ds["summary"].get(profile, {}).get(label, {}).get(metric)
            if entry is None or not entry.get("n"):
                raise SystemExit(f"{ds['name']}: no {metric} for {label} in the report")
            total += entry["mean"] * entry["n"]
            count += entry["n"]
        out[metric] = total / count
    return out


def release_config(label: str, weights: str | None = None) -> tuple[dict, dict]:
    """(run configuration, metadata) recorded in the safetensors file of a method: the packaged release that
    ``weights`` names (``own-v2`` or ``mlfuse-own-v2``; without ``weights``, the one the label names), else
    the file ``weights`` (an ablation run's ``model.safetensors``, given to the bench as ``LABEL=mlfuse:FILE``)."""
    from safetensors import safe_open

    from mlfuse.registry import get_card
    from mlfuse.weights.store import release_path

    choice = weights or label.split(":", 1)[-1]
    release = get_card("mlfuse").release_named(choice)
    path = release_path(release) if release else Path(choice)
    if path.suffix != ".safetensors" or not path.is_file():
        raise SystemExit(f"{label}: {choice} is neither an MLFuse release nor a .safetensors file of a run "
                         "(mlfuse train's model.safetensors or mlfuse weights package's output)")
    with safe_open(str(path), framework="pt") as fh:
        meta = dict(fh.metadata() or {})
    return json.loads(meta.get("config", "{}")), meta


def crops_cell(data: list[dict]) -> str:
    """Crops per pair per epoch: "1", or each entry's ``repeat`` where they differ (data entries named by
    their folder below ``data/``)."""
    repeats = [int(e.get("repeat", 1)) for e in data]
    if all(r == 1 for r in repeats):
        return "1"

    def name(entry: dict) -> str:
        parts = Path(str(entry["root"])).parts
        return "/".join(parts[parts.index("data") + 1:] if "data" in parts else parts[-2:])

    return ", ".join(f"{r} {name(e)}" for e, r in zip(data, repeats, strict=True))


def lr_sum(cfg: dict, steps: int) -> float:
    """The learning rate summed over every optimiser step of a finished run of ``steps`` steps (its schedule
    replayed as the recipe sets it: ``authors`` cosine per epoch, ``cpu`` warm-up + cosine per step; a
    stopped run or an epoch snapshot needs the sum over its first steps instead). With Adam, whose steps are
    about lr in size whatever the gradient's scale, this is how far a weight can travel; the
    night-scene analysis in ``results/train_schedule.md`` compares runs by it."""
    from mlfuse.models.mlfuse.recipe import warmup_cosine_lr

    epochs = int(cfg["epochs"])
    per_epoch = steps / epochs
    peak, floor = float(cfg["lr"]), float(cfg.get("eta_min", 0.0))
    if cfg.get("schedule", "authors") == "authors":  # CosineAnnealingLR(T_max=epochs) stepped once per epoch
        return per_epoch * sum(floor + (peak - floor) * 0.5 * (1 + math.cos(math.pi * e / epochs))
                               for e in range(epochs))
    spe = round(per_epoch)
    return sum(warmup_cosine_lr(e + i / spe, epochs, float(cfg.get("warmup_epochs", 0.0)), peak, floor)
               for e in range(epochs) for i in range(spe))


def schedule_cells(cfg: dict, steps: int | None) -> list[str]:
    schedule = cfg.get("schedule", "authors")
    decay = "cosine per epoch" if schedule == "authors" else "cosine per step"
    n_steps = f"{steps:,}" if steps is not None else "?"
    total = f"{lr_sum(cfg, steps):.2f}" if steps else "?"
    return [schedule, f"{int(cfg['epochs'])}", n_steps, f"{cfg['lr']:g}",
            f"{float(cfg.get('warmup_epochs', 0.0)):g} ep", f"{decay} to {float(cfg.get('eta_min', 0.0)):g}",
            total, f"{cfg['batch_size']}", crops_cell(cfg.get("data") or [])]


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("report", type=Path, help="bench.json of benchmarks/schedule_val.toml")
    ap.add_argument("--run", action="append", default=[], metavar="NAME=DIR",
                    help="a run folder whose epochs.csv / val.csv give the loss and validation curves")
    ap.add_argument("--every", type=int, default=5, help="loss-curve rows every N epochs")
    ap.add_argument("--out", type=Path, help="write the Markdown here (default: print)")
    args = ap.parse_args(argv)
    report = json.loads(args.report.read_text())
    labels = [m["label"] for m in report["methods"]]
    weights = {m["label"]: m.get("weights") for m in report["methods"]}
    n_pairs = sum(ds["pairs"] for ds in report["datasets"])
    head = ["release", "schedule", "epochs", "steps", "peak lr", "warm-up", "decay", "Σ lr",
            "batch", "crops/pair/epoch", *PAPER_METRICS]
    sets = ", ".join(f"{ds['name']} {ds['pairs']}" for ds in report["datasets"])
    lines = [f"Harvard validation split, {n_pairs} pairs pooled ({sets}); "
             "bold: the best of the column.", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    scores = {lb: pooled(report, lb) for lb in labels}
    best = {m: max(s[m] for s in scores.values()) for m in PAPER_METRICS}
    for lb in labels:
        if lb == "mlfuse:paper":
            cfg, steps = AUTHORS, AUTHORS_STEPS
        else:
            cfg, meta = release_config(lb, weights[lb])
            steps = int(meta["steps"]) if "steps" in meta else None
        cells = [f"`{lb}`", *schedule_cells(cfg, steps)]
        cells += [(f"**{scores[lb][m]:.4f}**" if scores[lb][m] == best[m] else f"{scores[lb][m]:.4f}")
                  for m in PAPER_METRICS]
        lines.append("| " + " | ".join(cells) + " |")
    for spec in args.run:
        name, _, folder = spec.partition("=")
        run = Path(folder)
        epochs = read_csv(run / "epochs.csv")
        lines += ["", f"### {name}: loss curve (mean over each epoch) and validation", "",
                  "| epoch | step | lr | " + " | ".join(LOSSES) + " | hours |", "|" + "---|" * (len(LOSSES) + 4)]
        keep = [r for r in epochs if int(r["epoch"]) in (1, 2) or int(r["epoch"]) % args.every == 0
                or r is epochs[-1]]
        for r in keep:
            lines.append(f"| {r['epoch']} | {r['step']} | {float(r['lr']):.2e} | "
                         + " | ".join(f"{float(r[k]):.4f}" for k in LOSSES) + f" | {float(r['seconds']) / 3600:.2f} |")
        val_path = run / "val.csv"
        if val_path.is_file():
            val = read_csv(val_path)
            metrics = [k for k in val[0] if k not in ("epoch", "step")]
            lines += ["", "Validation during training (the trainer's check: the same split, "
                      + ", ".join(metrics) + "; FMI is left out there for time):", "",
                      "| epoch | step | " + " | ".join(metrics) + " |", "|" + "---|" * (len(metrics) + 2)]
            for r in val:
                lines.append(f"| {r['epoch']} | {r['step']} | " + " | ".join(f"{float(r[k]):.4f}" for k in metrics)
                             + " |")
    text = "\n".join(lines) + "\n"
    if args.out:
        args.out.write_text(text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
