"""The bench table writers: best value per metric by its direction, failed methods in the table,
the long CSV, the efficiency table."""

from __future__ import annotations

import csv
import io
import math
import re

from mlfuse.bench.efficiency import Efficiency
from mlfuse.bench.tables import efficiency_csv, efficiency_markdown, markdown_table, summary_csv
from mlfuse.metrics.evaluation import EvalReport
from mlfuse.metrics.profiles import get_profile


def _report(values: dict[str, list[dict[str, float]]]) -> EvalReport:
    """EN (higher is better) and MSE (lower is better) of the cddfuse profile."""
    rep = EvalReport(get_profile("cddfuse"), ["EN", "MSE"], list(values))
    for method, rows in values.items():
        rep.rows += [{"method": method, "name": str(i), **r} for i, r in enumerate(rows)]
    return rep


def _cells(md: str, method: str) -> list[str]:
    line = next(ln for ln in md.splitlines() if ln.startswith(f"| {method} |"))
    return [c.strip() for c in re.split(r"(?<!\\)\|", line.strip("|"))]


def test_best_is_marked_by_direction():
    rep = _report({
        "A": [{"EN": 7.0, "MSE": 50.0}, {"EN": 6.0, "MSE": 70.0}],  # EN 6.5, MSE 60
        "B": [{"EN": 5.0, "MSE": 40.0}, {"EN": 5.0, "MSE": 40.0}],  # EN 5.0, MSE 40
    })
    md = markdown_table(rep, ["A", "B"], {})
    header = [c.strip() for c in md.splitlines()[0].strip("|").split("|")]
    assert header == ["method", "n", "EN ↑", "MSE ↓"]
    a, b = _cells(md, "A"), _cells(md, "B")
    assert a[2].startswith("**6.5000 ± 0.5000") and not b[2].startswith("**")  # higher EN wins
    assert b[3].startswith("**40.0000 ± 0.0000") and not a[3].startswith("**")  # lower MSE wins
    assert a[1] == "2" and b[1] == "2"


def test_ties_are_all_marked_and_nan_never_is():
    rep = _report({
        "A": [{"EN": 5.0, "MSE": math.nan}],
        "B": [{"EN": 5.0, "MSE": 3.0}],
        "C": [{"EN": 4.0, "MSE": math.nan}],
    })
    md = markdown_table(rep, ["A", "B", "C"], {})
    assert _cells(md, "A")[2].startswith("**") and _cells(md, "B")[2].startswith("**")
    assert not _cells(md, "C")[2].startswith("**")
    assert _cells(md, "A")[3] == "NaN (1 excl.)" and _cells(md, "B")[3].startswith("**3.0000")
    assert "left out of that mean" in md


def test_failed_method_is_a_row_with_its_reason_and_never_best():
    rep = _report({"A": [{"EN": 1.0, "MSE": 9.0}], "B": [{"EN": 2.0, "MSE": 8.0}]})
    md = markdown_table(rep, ["A", "broken", "B"], {"broken": "no weights | fetch them"})
    rows = [ln for ln in md.splitlines()[2:]]
    assert [r.split("|")[1].strip() for r in rows] == ["A", "broken", "B"]  # the configured order
    cells = _cells(md, "broken")
    assert cells[1] == "0" and cells[2] == "failed: no weights \\| fetch them" and cells[3] == "—"
    assert _cells(md, "B")[2].startswith("**")


def test_summary_csv_has_directions_best_and_failures():
    rep = _report({"A": [{"EN": 1.0, "MSE": 9.0}], "B": [{"EN": 2.0, "MSE": 8.0}]})
    rows = list(csv.DictReader(io.StringIO(summary_csv(rep, ["A", "B", "X"], {"X": "boom"}))))
    by = {(r["method"], r["metric"]): r for r in rows}
    assert by[("B", "EN")]["best"] == "True" and by[("A", "EN")]["best"] == "False"
    assert by[("A", "MSE")]["higher_is_better"] == "False" and by[("B", "MSE")]["best"] == "True"
    assert float(by[("A", "MSE")]["mean"]) == 9.0 and by[("A", "MSE")]["n"] == "1"
    assert by[("X", "EN")]["status"] == "failed: boom" and by[("X", "EN")]["mean"] == ""


def test_efficiency_tables():
    rows = [Efficiency("gff", (48, 64), params=0, flops=None, cpu_s=0.0123, cpu_threads=1, cpu_peak_mb=3.2),
            Efficiency("net", (48, 64), params=111817, flops=2.5e9, cpu_s=0.5, cpu_threads=1, gpu_s=0.002,
                       gpu_peak_mb=40.0),
            Efficiency("bad", (48, 64), error="no weights")]
    md = efficiency_markdown(rows)
    assert "GPU ms / image" in md.splitlines()[0]
    assert _cells(md, "gff")[1:4] == ["0", "n/a", "0.012"]
    assert _cells(md, "net")[1:3] == ["111,817", "2.50"] and _cells(md, "net")[5] == "2.00"
    assert _cells(md, "bad")[1] == "failed: no weights"
    parsed = list(csv.DictReader(io.StringIO(efficiency_csv(rows))))
    assert parsed[1]["flops"] == "2500000000.0" and parsed[0]["size"] == "48x64" and parsed[2]["error"] == "no weights"
    assert "GPU" not in efficiency_markdown(rows[:1]).splitlines()[0]
