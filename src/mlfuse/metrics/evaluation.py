"""Evaluate one triple or whole result folders under a metric profile.

Source folders pair exactly as in ``mlfuse fuse`` (by file stem, natural order). Each method's
result folder is matched to the pairs by stem; a pair without a result, a result without sources,
an unreadable file or a size mismatch is listed in the report, never silently skipped.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from mlfuse.data.io import read_image
from mlfuse.data.pairs import list_images, pair_folders
from mlfuse.errors import MLFuseError
from mlfuse.metrics._common import prepare
from mlfuse.metrics.profiles import Profile, get_profile
from mlfuse.progress import bar_disabled


def evaluate(fused: np.ndarray, a: np.ndarray, b: np.ndarray, profile: str | Profile = "cddfuse", *,
             data_range: float | None = None, metrics: Iterable[str] | None = None,
             slow: bool = True) -> dict[str, float]:
    """All metrics of ``profile`` for one triple: ``a`` = functional (infrared/CT, the reference
    codes' "ir" slot), ``b`` = structural (visible/MRI, "vi" slot).

    Inputs: uint8, uint16 or float arrays (float needs ``data_range``), gray or 8-bit RGB (converted
    as the profile's reference code does). ``metrics`` selects a subset; ``slow=False`` skips FMI.
    """
    prof = get_profile(profile) if isinstance(profile, str) else profile
    chosen = [prof.metric(n) for n in metrics] if metrics is not None else [
        m for m in prof.metrics if slow or not m.slow]
    if prof.per_channel and any(np.ndim(x) == 3 and np.shape(x)[2] >= 3 for x in (fused, a, b)):
        return _evaluate_per_channel(fused, a, b, prof, chosen, data_range)
    f64, a64, b64 = prepare(fused, a, b, data_range=data_range, gray=prof.gray)
    f, a_, b_ = (x.astype(prof.dtype) for x in (f64, a64, b64))
    return {m.name: m(f, a_, b_) for m in chosen}


def _evaluate_per_channel(fused: np.ndarray, a: np.ndarray, b: np.ndarray, prof: Profile, chosen: list,
                          data_range: float | None) -> dict[str, float]:
    """VIFB's colour rule (spec metrics.md 1.2): each RGB channel is scored and the scores averaged
    (gray images count as three equal channels); SF instead scores the three channels laid side by
    side, as VIFB's two-subscript indexing does, jumps at the channel borders included."""
    def channels(x: np.ndarray) -> list[np.ndarray]:
        x = np.asarray(x)
        if x.ndim == 3 and x.shape[2] >= 3:
            return [x[:, :, c] for c in range(3)]
        x = x[:, :, 0] if x.ndim == 3 else x
        return [x, x, x]

    planes = [prepare(fc, ac, bc, data_range=data_range, gray=prof.gray)
              for fc, ac, bc in zip(channels(fused), channels(a), channels(b), strict=True)]
    out = {}
    for m in chosen:
        if m.side_by_side:
            f, a_, b_ = (np.hstack([p[i] for p in planes]).astype(prof.dtype) for i in range(3))
            out[m.name] = m(f, a_, b_)
        else:
            out[m.name] = float(np.mean([m(*(x.astype(prof.dtype) for x in p)) for p in planes]))
    return out


@dataclass
class EvalReport:
    """Per-image values for every method, plus everything that could not be evaluated."""

    profile: Profile
    metrics: list[str]
    methods: list[str]
    rows: list[dict] = field(default_factory=list)  # {"method": .., "name": .., <metric>: value}
    problems: list[str] = field(default_factory=list)
    interrupted: bool = False

    def summary(self) -> dict[str, dict[str, tuple[float, float, int, int]]]:
        """method -> metric -> (mean, population std, n used, n excluded) over the images.

        NaN and ±inf per-image values (the reference codes' own results, e.g. PSNR of a fused image
        equal to a source, or Liu's Qmi on constant images) stay in the rows; the mean and std are over
        the finite values and ``n excluded`` counts the others, so a table can say so."""
        out: dict[str, dict[str, tuple[float, float, int, int]]] = {}
        for method in self.methods:
            rows = [r for r in self.rows if r["method"] == method]
            out[method] = {}
            for m in self.metrics:
                values = [float(r[m]) for r in rows if m in r]
                vals = [v for v in values if math.isfinite(v)]
                mean = statistics.fmean(vals) if vals else math.nan
                std = statistics.pstdev(vals) if vals else math.nan
                out[method][m] = (mean, std, len(vals), len(values) - len(vals))
        return out

    def scored(self, method: str) -> int:
        """How many images of ``method`` were scored (its rows)."""
        return sum(1 for r in self.rows if r["method"] == method)

    def directions(self) -> dict[str, bool]:
        """metric -> True when higher is better."""
        return {m: self.profile.metric(m).higher_is_better for m in self.metrics}


def evaluate_folders(methods: dict[str, str | Path], structural_dir: str | Path, functional_dir: str | Path,
                     profile: str = "cddfuse", *, data_range: float | None = None,
                     metrics: Iterable[str] | None = None, slow: bool = True, quiet: bool = False,
                     report: Callable[[str], None] | None = None) -> EvalReport:
    """Evaluate each method's folder of fused results against the source pairs."""
    prof = get_profile(profile)
    names = list(metrics) if metrics is not None else [m.name for m in prof.metrics if slow or not m.slow]
    for n in names:
        prof.metric(n)  # unknown names fail before any work
    result = EvalReport(prof, names, list(methods))
    say = report or (lambda line: None)

    def problem(line: str) -> None:
        result.problems.append(line)
        say(line)

    pairing = pair_folders(structural_dir, functional_dir)
    for line in pairing.problems():
        problem(f"unpaired source: {line}")
    if not pairing.pairs:
        raise MLFuseError(f"no source pairs between {structural_dir} and {functional_dir}")
    jobs = []
    for method, folder in methods.items():
        fused_files, dups = list_images(Path(folder))
        for line in dups.values():
            problem(f"{method}: {line}")
        stems = {p.name for p in pairing.pairs}
        missing = [p.name for p in pairing.pairs if p.name not in fused_files and p.name not in dups]
        if missing:
            problem(f"{method}: {len(missing)} pair(s) have no fused result in {folder}: {', '.join(missing)}")
        extra = sorted(s for s in fused_files if s not in stems)
        if extra:
            problem(f"{method}: {len(extra)} result(s) in {folder} have no source pair: {', '.join(extra)}")
        jobs += [(method, p, fused_files[p.name]) for p in pairing.pairs if p.name in fused_files]
    done = 0
    try:
        for method, pair, fused_path in tqdm(jobs, desc=f"eval {prof.name}", unit="img", disable=bar_disabled(quiet)):
            done += 1
            try:
                f = read_image(fused_path).pixels
                a = read_image(pair.functional).pixels
                b = read_image(pair.structural).pixels
                values = evaluate(f, a, b, prof, data_range=data_range, metrics=names)
            except MLFuseError as exc:
                problem(f"{method}: {pair.name}: {exc}")
                continue
            except (ArithmeticError, ValueError, MemoryError) as exc:  # one odd image never costs the others
                problem(f"{method}: {pair.name}: metrics failed: {type(exc).__name__}: "
                        f"{(str(exc).splitlines() or [''])[0]}")
                continue
            result.rows.append({"method": method, "name": pair.name, **values})
    except KeyboardInterrupt:  # what was computed is kept: the caller writes it
        result.interrupted = True
        problem(f"interrupted after {done - 1} of {len(jobs)} image(s): the results cover those only")
    return result
