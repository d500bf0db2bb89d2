"""Downstream results in the ``mlfuse bench`` style: Markdown tables (best value in bold), long-format
CSV, a JSON with everything (protocol, split, seed, machine), prediction figures and a results page
``README.md``. Files are written atomically."""

from __future__ import annotations

import csv
import datetime
import io
import json
import math
from pathlib import Path

import numpy as np
from PIL import Image as PILImage
from PIL import ImageDraw

from mlfuse import __version__
from mlfuse.bench.figures import comparison_figure, write_png
from mlfuse.bench.tables import markdown_grid
from mlfuse.data.io import read_image
from mlfuse.downstream.metrics import Detections
from mlfuse.downstream.runner import DownstreamResult, InputResult
from mlfuse.metrics.report import write_text
from mlfuse.runtime import machine

#: colours of classes 1.. in figures (class 0 of a segmentation is left uncoloured)
PALETTE = np.array([(0, 0, 0), (230, 40, 40), (40, 200, 60), (50, 110, 240), (240, 200, 30), (200, 60, 220),
                    (40, 210, 210), (250, 130, 20), (150, 150, 150), (255, 255, 255)], np.uint8)


def _pct(v: float) -> str:
    return "—" if v is None or math.isnan(v) else f"{100 * v:.1f}"


def score_columns(result: DownstreamResult, convention: str | None = None) -> tuple[list[str], list[list[float]]]:
    """Column names and, per input (table order), the values in [0, 1] (NaN: undefined or failed)."""
    classes = list(result.data.classes)
    if result.data.task == "seg":
        header = [f"IoU {c}" for c in classes] + ["mIoU", "pixel acc"]
        rows = [(r.iou or [math.nan] * len(classes)) + [r.miou, r.pixel_accuracy] for r in result.results]
    else:
        header = [f"AP50 {c}" for c in classes] + ["mAP@0.5", "mAP@0.5:0.95"]
        rows = []
        for r in result.results:
            s = r.detection.get(convention or "")
            rows.append([math.nan] * (len(classes) + 2) if s is None else
                        [s.ap50()[i] for i in range(len(classes))] + [s.map50(), s.map50_95()])
    return header, rows


def _best(rows: list[list[float]], results: list[InputResult]) -> set[tuple[int, int]]:
    """(row, column) of the best value per column (ties all marked); none with fewer than two rows."""
    out: set[tuple[int, int]] = set()
    ok = [i for i, r in enumerate(results) if r.error is None]
    if len(ok) < 2:
        return out
    for j in range(len(rows[0]) if rows else 0):
        vals = {i: round(100 * rows[i][j], 1) for i in ok if not math.isnan(rows[i][j])}
        if vals:
            top = max(vals.values())
            out |= {(i, j + 1) for i, v in vals.items() if v == top}
    return out


def markdown(result: DownstreamResult, convention: str | None = None) -> str:
    header, rows = score_columns(result, convention)
    cells = []
    for r, vals in zip(result.results, rows, strict=True):
        if r.error:
            cells.append([r.label, f"failed: {r.error}"] + ["—"] * (len(header) - 1))
        else:
            cells.append([r.label] + [_pct(v) for v in vals])
    return markdown_grid(["input", *[f"{h} ↑" for h in header]], cells, _best(rows, result.results))


def summary_csv(result: DownstreamResult, convention: str | None = None) -> str:
    """Long format, one line per input and score (percent), with the best flag and status."""
    header, rows = score_columns(result, convention)
    best = _best(rows, result.results)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["input", "metric", "convention", "value_percent", "best", "status"])
    for i, (r, vals) in enumerate(zip(result.results, rows, strict=True)):
        for j, (name, v) in enumerate(zip(header, vals, strict=True)):
            if r.error:
                w.writerow([r.label, name, convention or "", "", False, f"failed: {r.error}"])
            else:
                w.writerow([r.label, name, convention or "", "" if math.isnan(v) else repr(round(100 * v, 4)),
                            (i, j + 1) in best, "ok" if not math.isnan(v) else "undefined"])
    return buf.getvalue()


def _nan_none(v: float) -> float | None:
    return None if v is None or (isinstance(v, float) and math.isnan(v)) else v


def to_json(result: DownstreamResult, command: str | None = None) -> str:
    d, cfg = result.data, result.config
    doc = {
        "mlfuse": __version__, "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "command": command, "machine": machine(), "device": result.device,
        "task": d.task, "data": {"root": str(d.root), "layout": d.layout, "split": d.split,
                                 "train_pairs": len(d.train), "test_pairs": len(d.test), "classes": list(d.classes)},
        "network": "Segmenter (DeepLabV3+-style)" if d.task == "seg" else "Detector (CenterNet-style)",
        "config": cfg.describe(), "backbone": result.backbone,
        "inputs": [], "problems": result.problems,
    }
    for spec, r in zip(result.inputs, result.results, strict=True):
        entry = {"label": r.label, "source": spec.describe(), "error": r.error,
                 "train_seconds": round(r.train_seconds, 2), "final_loss": _nan_none(r.final_loss)}
        if d.task == "seg":
            entry |= {"iou": {c: _nan_none(v) for c, v in zip(d.classes, r.iou, strict=False)},
                      "miou": _nan_none(r.miou), "pixel_accuracy": _nan_none(r.pixel_accuracy)}
        else:
            entry["ap"] = {conv: {"ap50": {d.classes[c]: _nan_none(v) for c, v in s.ap50().items()},
                                  "map50": _nan_none(s.map50()), "map50_95": _nan_none(s.map50_95()),
                                  "per_threshold": {str(t): [_nan_none(float(x)) for x in s.ap[:, j]]
                                                    for j, t in enumerate(s.thresholds)}}
                           for conv, s in r.detection.items()}
        doc["inputs"].append(entry)
    return json.dumps(doc, indent=1, default=str) + "\n"


def overlay(rgb: np.ndarray, pred: np.ndarray | Detections, min_score: float = 0.3) -> np.ndarray:
    """A prediction drawn on its image: class colours blended on a mask, or boxes with scores."""
    if isinstance(pred, np.ndarray):
        col = PALETTE[np.clip(pred, 0, len(PALETTE) - 1)]
        out = rgb.astype(np.float32)
        m = (pred > 0) & (pred != 255)
        out[m] = 0.45 * out[m] + 0.55 * col[m]
        return np.clip(np.rint(out), 0, 255).astype(np.uint8)
    im = PILImage.fromarray(rgb).convert("RGB")
    draw = ImageDraw.Draw(im)
    line = max(1, round(max(im.size) / 200))
    for b, c, s in zip(pred.boxes, pred.classes, pred.scores if len(pred.scores) else [1.0] * len(pred.boxes),
                       strict=True):
        if s < min_score:
            continue
        draw.rectangle(tuple(float(v) for v in b), outline=tuple(int(x) for x in PALETTE[1 + int(c) % 9]),
                       width=line)
    return np.asarray(im)


def figures(result: DownstreamResult, out_dir: Path) -> list[Path]:
    """One figure per preview pair: the visible and infrared sources, the ground truth, then each input's
    prediction drawn on that input's image."""
    files = []
    for k, (item, truth) in enumerate(zip(result.figure_items, result.truths, strict=True)):
        vis = read_image(item.visible).pixels
        vis = np.repeat(vis[..., None], 3, -1) if vis.ndim == 2 else vis
        if vis.dtype != np.uint8:
            vis = (vis // 257).astype(np.uint8)
        panels = [("visible", vis), ("infrared", read_image(item.infrared).pixels),
                  ("ground truth", overlay(vis, truth))]
        for r in result.results:
            panels.append((f"{r.label}: predicted", overlay(*r.previews[k]) if len(r.previews) > k else None))
        fig = comparison_figure(panels, tile_height=min(192, vis.shape[0] * 2),
                                title=f"{result.data.task} predictions on test pair {item.name}")
        files.append(write_png(fig, out_dir / "figures" / f"{result.data.task}_{item.name}.png", overwrite=True))
    return files


def render_page(result: DownstreamResult, out_dir: Path, command: str | None, figure_files: list[Path]) -> str:
    d, cfg, mach = result.data, result.config, machine()
    task_name = "Semantic segmentation" if d.task == "seg" else "Object detection"
    lines = [f"# Downstream {task_name.lower()}: fused images vs single modalities", ""]
    if command:
        lines += ["Regenerate:", "", "```bash", command, "```", ""]
    lines += [f"Generated {datetime.date.today().isoformat()} by mlfuse {__version__} on: {mach.get('cpu')} "
              f"({mach.get('logical_cpus')} logical CPUs, torch {mach.get('torch')} with {mach.get('torch_threads')} "
              f"thread(s), device {result.device}"
              + (f"; 1-minute load average {mach['load_avg'][0]} when the run ended" if mach.get("load_avg") else "")
              + ").", ""]
    net = ("DeepLabV3+-style segmenter (ASPP on a light residual backbone)" if d.task == "seg"
           else "CenterNet-style anchor-free detector (stride-4 heat map, size, offset)")
    lines += [f"Protocol: data `{d.root}` ({d.layout} layout; split: {d.split}; {len(d.train)} train / "
              f"{len(d.test)} test pairs), classes {', '.join(d.classes)}. The same {net}, config "
              f"`{cfg.name}` (input {cfg.size[0]}×{cfg.size[1]}, widths {list(cfg.network.widths)}), trained from "
              f"scratch for every input with seed {cfg.seed}, {cfg.epochs} epochs, batch {cfg.batch_size}, AdamW lr "
              f"{cfg.lr} (warm-up + cosine), random horizontal flips"
              + (f", backbone initialised from `{result.backbone}`" if result.backbone else ", no pretrained weights")
              + "; evaluated once on the test split at the labels' resolution.", ""]
    lines += ["Inputs:", ""] + [f"* `{s.label}`: {s.describe()}" for s in result.inputs] + [""]
    if d.task == "seg":
        lines += ["Scores in percent: per-class IoU from one confusion matrix over the test split (label 255 "
                  "ignored), mIoU over the classes present in ground truth or prediction (— = undefined), pixel "
                  "accuracy. Best value per column in bold. [CSV](tables/seg.csv)", "", markdown(result)]
    else:
        for conv in cfg.conventions:
            lines += [f"AP convention `{conv}` (see `mlfuse.downstream.metrics`), in percent: AP@0.5 per class, "
                      f"mAP@0.5, mAP@0.5:0.95. Best value per column in bold. [CSV](tables/det.{conv}.csv)", "",
                      markdown(result, conv)]
    times = ", ".join(f"{r.label} {r.train_seconds:.0f} s" for r in result.results if r.error is None)
    lines += [f"Training time per input: {times}.", ""]
    for f in figure_files:
        rel = f.relative_to(out_dir) if f.is_relative_to(out_dir) else f
        lines += [f"![{rel.stem}]({rel.as_posix()})", ""]
    if result.problems:
        lines += ["<details><summary>Problems</summary>", ""] + [f"* {p}" for p in result.problems] + ["",
                                                                                                      "</details>", ""]
    return "\n".join(lines).rstrip() + "\n"


def write_outputs(result: DownstreamResult, out_dir: str | Path, command: str | None = None) -> list[Path]:
    """Tables, JSON, figures and the page; returns the files written."""
    out_dir = Path(out_dir)
    files = []
    task = result.data.task
    if task == "seg":
        files.append(write_text(out_dir / "tables" / "seg.md", markdown(result), overwrite=True))
        files.append(write_text(out_dir / "tables" / "seg.csv", summary_csv(result), overwrite=True))
    else:
        for conv in result.config.conventions:
            files.append(write_text(out_dir / "tables" / f"det.{conv}.md", markdown(result, conv), overwrite=True))
            files.append(write_text(out_dir / "tables" / f"det.{conv}.csv", summary_csv(result, conv), overwrite=True))
    figs = figures(result, out_dir)
    files += figs
    files.append(write_text(out_dir / f"{task}.json", to_json(result, command), overwrite=True))
    files.append(write_text(out_dir / "README.md", render_page(result, out_dir, command, figs), overwrite=True))
    return files
