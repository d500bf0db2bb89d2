"""Should a candidate MLFuse checkpoint become mlfuse's default? Issue 12's rule, read from a quality report.

The rule: the candidate is at least as good as the authors' checkpoint on at least 4 of the MLFuse
paper's six metrics (VIF, SCD, Qabf, CC, SSIM, FMI_pixel; the ``paper`` profile, tang convention),
each averaged over the pairs of VIFB test + MSRS test + the M3FD sample (pooled: every pair counts
once, so the single M3FD pair does not weigh a third), **and** its mean SF and AG on TNO are within
25 % of the authors' (no over-sharpening; ``cddfuse`` profile). All six metrics are higher-is-better.

Input: the ``bench.json`` that ``mlfuse bench --config benchmarks/quality_mlfuse.toml`` writes.

    python benchmarks/default_rule.py benchmarks/results/quality_mlfuse/bench.json \\
        --candidate mlfuse:own-v2 --out benchmarks/results/quality_mlfuse/default_rule.md
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

PAPER_METRICS = ("VIF", "SCD", "Qabf", "CC", "SSIM", "FMI_pixel")
RULE_SETS = ("vifb", "msrs", "m3fd")
SHARPNESS = ("SF", "AG")
SHARPNESS_TOLERANCE = 0.25
WINS_NEEDED = 4


class RuleError(ValueError):
    """The report lacks what the rule needs (a dataset, method or metric)."""


def _summary(report: dict, dataset: str, profile: str, label: str) -> dict:
    for ds in report["datasets"]:
        if ds["name"] == dataset:
            try:
                return ds["summary"][profile][label]
            except KeyError:
                raise RuleError(f"dataset '{dataset}': no '{profile}' results for '{label}'") from None
    raise RuleError(f"the report has no dataset '{dataset}'")


def pooled_mean(report: dict, datasets: tuple[str, ...], profile: str, label: str, metric: str) -> float:
    """Mean of ``metric`` over every pair of ``datasets`` (dataset means weighted by their pair counts)."""
    total = count = 0.0
    for name in datasets:
        entry = _summary(report, name, profile, label).get(metric)
        if entry is None or entry.get("n", 0) == 0:
            raise RuleError(f"dataset '{name}': no {metric} for '{label}'")
        total += entry["mean"] * entry["n"]
        count += entry["n"]
    return total / count


def evaluate(report: dict, candidate: str, reference: str = "mlfuse:paper") -> dict:
    """The rule's inputs and verdict: per metric (candidate, reference, candidate >= reference), TNO
    SF/AG ratios, and ``default`` (bool)."""
    metrics = {}
    for m in PAPER_METRICS:
        c, r = (pooled_mean(report, RULE_SETS, "paper", who, m) for who in (candidate, reference))
        metrics[m] = {"candidate": c, "reference": r, "at_least_as_good": c >= r}
    sharp = {}
    for m in SHARPNESS:
        c, r = (_summary(report, "tno", "cddfuse", who)[m]["mean"] for who in (candidate, reference))
        sharp[m] = {"candidate": c, "reference": r, "ratio": c / r, "within": abs(c / r - 1) <= SHARPNESS_TOLERANCE}
    wins = sum(v["at_least_as_good"] for v in metrics.values())
    default = wins >= WINS_NEEDED and all(v["within"] for v in sharp.values())
    return {"candidate": candidate, "reference": reference, "metrics": metrics, "wins": wins,
            "sharpness": sharp, "default": default}


def to_markdown(result: dict) -> str:
    c, r = result["candidate"], result["reference"]
    lines = [f"# Default rule (issue 12): `{c}` vs `{r}`", "",
             f"Paper metrics, mean over every pair of {' + '.join(RULE_SETS)} (pooled), higher is better:", "",
             f"| metric | {c} | {r} | {c} >= {r} |", "|---|---|---|---|"]
    for m, v in result["metrics"].items():
        ok = "yes" if v["at_least_as_good"] else "no"
        lines.append(f"| {m} | {v['candidate']:.4f} | {v['reference']:.4f} | {ok} |")
    lines += ["", f"TNO sharpness (within {SHARPNESS_TOLERANCE:.0%} of `{r}`):", "",
              f"| metric | {c} | {r} | ratio | within |", "|---|---|---|---|---|"]
    for m, v in result["sharpness"].items():
        lines.append(f"| {m} | {v['candidate']:.3f} | {v['reference']:.3f} | {v['ratio']:.3f} | "
                     f"{'yes' if v['within'] else 'no'} |")
    verdict = "**meets the rule: it may be the default**" if result["default"] else "**does not meet the rule**"
    lines += ["", f"{result['wins']} of {len(PAPER_METRICS)} metrics at least as good (needs {WINS_NEEDED}); "
              f"{verdict}.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("report", type=Path, help="bench.json of the quality report")
    p.add_argument("--candidate", required=True, help="method label, e.g. mlfuse:own-v2")
    p.add_argument("--reference", default="mlfuse:paper")
    p.add_argument("--out", type=Path, help="write the markdown verdict here")
    args = p.parse_args(argv)
    try:
        result = evaluate(json.loads(args.report.read_text(encoding="utf-8")), args.candidate, args.reference)
    except (OSError, json.JSONDecodeError, RuleError) as exc:
        print(f"{args.report}: {exc}", file=sys.stderr)
        return 2
    text = to_markdown(result)
    if args.out:
        tmp = args.out.with_name(args.out.name + ".tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(args.out)
    print(text)
    return 0 if result["default"] else 1


if __name__ == "__main__":
    sys.exit(main())
