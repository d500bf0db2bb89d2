"""Writing evaluation results: a paper-style table (methods x metrics, mean ± std, best in bold),
per-image CSV and a JSON with everything. Files are written atomically."""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

from mlfuse.data.io import atomic_write
from mlfuse.metrics.evaluation import EvalReport


def _fmt(mean: float, std: float, excluded: int = 0) -> str:
    """``mean ± std``; with ``(k excl.)`` when k per-image values were NaN or ±inf and left out."""
    note = f" ({excluded} excl.)" if excluded else ""
    if math.isnan(mean):
        return "NaN" + note
    digits = 2 if abs(mean) >= 100 else 4
    return f"{mean:.{digits}f} ± {std:.{digits}f}{note}"


def excluded_note(report: EvalReport) -> str:
    """One line explaining ``(k excl.)`` cells, or "" when every per-image value was finite."""
    summary = report.summary()
    total = sum(c[3] for s in summary.values() for c in s.values())
    if not total:
        return ""
    return (f"(k excl.): k per-image values were NaN or ±inf (the reference code's own result, e.g. PSNR of a "
            f"fused image equal to a source) and are left out of that mean and std; {total} in all, kept in the "
            "per-image values.")


def best_methods(report: EvalReport) -> dict[str, set[str]]:
    """metric -> the method(s) with the best mean (direction-aware); empty with one method."""
    summary = report.summary()
    best: dict[str, set[str]] = {}
    if len(report.methods) < 2:
        return {m: set() for m in report.metrics}
    for metric, higher in report.directions().items():
        means = {meth: summary[meth][metric][0] for meth in report.methods}
        finite = {k: v for k, v in means.items() if not math.isnan(v)}
        if not finite:
            best[metric] = set()
            continue
        target = max(finite.values()) if higher else min(finite.values())
        best[metric] = {k for k, v in finite.items() if v == target}
    return best


def table_rows(report: EvalReport, *, per_image: bool = False) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the summary table (one row per method), optionally per-image rows too."""
    arrows = {m: "↑" if up else "↓" for m, up in report.directions().items()}
    header = ["method", "n", *[f"{m} {arrows[m]}" for m in report.metrics]]
    summary = report.summary()
    rows = []
    for method in report.methods:
        n = report.scored(method)
        rows.append([method, str(n), *[_fmt(summary[method][m][0], summary[method][m][1], summary[method][m][3])
                                       for m in report.metrics]])
        if per_image:
            for r in (r for r in report.rows if r["method"] == method):
                rows.append([f"  {r['name']}", "", *[f"{r[m]:.4f}" for m in report.metrics]])
    return header, rows


def text_table(report: EvalReport, *, per_image: bool = False) -> str:
    header, rows = table_rows(report, per_image=per_image)
    widths = [max(len(x) for x in col) for col in zip(header, *rows, strict=True)]
    line = lambda cells: "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in  # noqa: E731
                                   enumerate(zip(cells, widths, strict=True)))
    title = f"profile {report.profile.name}: {report.profile.reference} (↑ higher is better, ↓ lower)"
    note = excluded_note(report)
    return "\n".join([title, line(header), *(line(r) for r in rows), *([note] if note else [])])


def markdown_table(report: EvalReport) -> str:
    header, rows = table_rows(report)
    best = best_methods(report)
    out = [f"Profile `{report.profile.name}` ({report.profile.reference}); mean ± std over images; best in bold.",
           "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        cells = [row[0], row[1]] + [f"**{c}**" if row[0] in best[m] else c
                                    for c, m in zip(row[2:], report.metrics, strict=True)]
        out.append("| " + " | ".join(cells) + " |")
    note = excluded_note(report)
    return "\n".join(out + (["", note] if note else [])) + "\n"


def per_image_csv(report: EvalReport) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["method", "name", *report.metrics])
    for r in report.rows:
        writer.writerow([r["method"], r["name"], *[repr(float(r[m])) for m in report.metrics]])
    return buf.getvalue()


def to_json(report: EvalReport) -> str:
    summary = report.summary()
    doc = {
        "profile": report.profile.name,
        "reference": report.profile.reference,
        "metrics": [{"name": m, "higher_is_better": up} for m, up in report.directions().items()],
        "summary": {meth: {m: {"mean": v[0], "std": v[1], "n": v[2], "excluded": v[3]} for m, v in summ.items()}
                    for meth, summ in summary.items()},
        "per_image": report.rows,
        "problems": report.problems,
    }
    return json.dumps(doc, indent=1, allow_nan=True) + "\n"


def write_text(path: str | Path, text: str, *, overwrite: bool = False) -> Path:
    """Write UTF-8 text atomically; refuse to replace a file without ``overwrite``."""
    return atomic_write(path, lambda fh: fh.write(text.encode("utf-8")), overwrite=overwrite)
