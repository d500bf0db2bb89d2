"""Bench tables: per dataset and profile a paper-style table (methods x metrics, mean ± std, best
value in bold by each metric's direction, failed methods shown with their reason), a long-format
CSV of the same numbers, and the efficiency table. Built on :mod:`mlfuse.metrics.report`."""

from __future__ import annotations

import csv
import io
import math

from mlfuse.bench.efficiency import Efficiency
from mlfuse.metrics.evaluation import EvalReport
from mlfuse.metrics.report import best_methods, excluded_note, table_rows


def _cell(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def markdown_grid(header: list[str], rows: list[list[str]], bold: set[tuple[int, int]] | None = None) -> str:
    """A Markdown table of formatted cells (escaped here); cells at (row, column) in ``bold`` are shown in
    bold. Used by tables whose values are not mean ± std over images (``mlfuse downstream``)."""
    bold = bold or set()
    lines = ["| " + " | ".join(_cell(h) for h in header) + " |", "|" + "---|" * len(header)]
    for i, row in enumerate(rows):
        lines.append("| " + " | ".join(f"**{_cell(c)}**" if (i, j) in bold else _cell(c)
                                       for j, c in enumerate(row)) + " |")
    return "\n".join(lines) + "\n"


def markdown_table(report: EvalReport, order: list[str], failed: dict[str, str]) -> str:
    """One Markdown table; ``order`` gives the row order of every method, ``failed`` maps a method
    that produced nothing on this dataset to its one-line reason (shown in the row, not scored)."""
    header, rows = table_rows(report)
    best = best_methods(report)
    by_method = {r[0]: r for r in rows}
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for method in order:
        if method in failed:
            cells = [_cell(method), "0", f"failed: {_cell(failed[method])}"] + ["—"] * (len(header) - 3)
        elif method in by_method:
            row = by_method[method]
            cells = [_cell(method), row[1]] + [f"**{c}**" if method in best[m] else c
                                              for c, m in zip(row[2:], report.metrics, strict=True)]
        else:
            continue
        lines.append("| " + " | ".join(cells) + " |")
    note = excluded_note(report)
    return "\n".join(lines + (["", note] if note else [])) + "\n"


def summary_csv(report: EvalReport, order: list[str], failed: dict[str, str]) -> str:
    """Long format, one line per method and metric: the numbers of the Markdown table plus each
    metric's direction, how many NaN/inf per-image values the mean excludes, and whether it is the best."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["method", "metric", "higher_is_better", "mean", "std", "n", "excluded", "best", "status"])
    summary = report.summary()
    best = best_methods(report)
    directions = report.directions()
    for method in order:
        for metric in report.metrics:
            if method in failed:
                writer.writerow([method, metric, directions[metric], "", "", 0, 0, False,
                                 f"failed: {failed[method]}"])
            elif method in summary:
                mean, std, n, excluded = summary[method][metric]
                writer.writerow([method, metric, directions[metric], repr(mean), repr(std), n, excluded,
                                 method in best[metric], "ok"])
    return buf.getvalue()


def _num(value: float | None, fmt: str) -> str:
    return "—" if value is None or (isinstance(value, float) and math.isnan(value)) else format(value, fmt)


def efficiency_markdown(rows: list[Efficiency]) -> str:
    gpu = any(r.gpu_s is not None for r in rows)
    header = ["method", "parameters", "GFLOPs", "CPU s / image", "CPU peak MB"]
    if gpu:
        header += ["GPU ms / image", "GPU peak MB"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in rows:
        if r.error:
            cells = [_cell(r.label), f"failed: {_cell(r.error)}"] + ["—"] * (len(header) - 2)
        else:
            flops = "n/a" if r.flops is None else _num(r.flops / 1e9, ".2f")
            cells = [_cell(r.label), f"{r.params:,}" if r.params is not None else "—", flops,
                     _num(r.cpu_s, ".3f"), _num(r.cpu_peak_mb, ".0f")]
            if gpu:
                cells += [_num(None if r.gpu_s is None else r.gpu_s * 1e3, ".2f"), _num(r.gpu_peak_mb, ".0f")]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def scaling_markdown(rows: list[Efficiency]) -> str:
    """Memory and time per megapixel: one row per method and size."""
    gpu = any(r.gpu_s is not None for r in rows)
    header = ["method", "size (H×W)", "MP", "run as", "CPU s", "CPU s / MP", "CPU peak MB", "CPU peak B / px"]
    if gpu:
        header += ["GPU s", "GPU peak MB"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in rows:
        h, w = r.size
        mp = h * w / 1e6
        head = [_cell(r.label), f"{h}×{w}", _num(mp, ".2f")]
        if r.error:
            cells = head + [f"failed: {_cell(r.error)}"] + ["—"] * (len(header) - 4)
        else:
            per_px = None if r.cpu_peak_mb is None else r.cpu_peak_mb * 2**20 / (h * w)
            cells = [*head, _cell(r.mode or ""), _num(r.cpu_s, ".2f"),
                     _num(None if r.cpu_s is None else r.cpu_s / mp, ".2f"), _num(r.cpu_peak_mb, ".0f"),
                     _num(per_px, ".0f")]
            if gpu:
                cells += [_num(r.gpu_s, ".3f"), _num(r.gpu_peak_mb, ".0f")]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def efficiency_csv(rows: list[Efficiency]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    fields = ["label", "size", "params", "flops", "cpu_s", "cpu_threads", "cpu_peak_mb", "gpu_s", "gpu_peak_mb",
              "error", "mode"]
    writer.writerow(fields)
    for r in rows:
        writer.writerow(["x".join(map(str, r.size)) if f == "size" else ("" if getattr(r, f) is None else getattr(r, f))
                         for f in fields])
    return buf.getvalue()
