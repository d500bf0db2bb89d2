"""Reference metric values (../shared/reference/metrics): triples and the reference codes' values."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REF = Path(__file__).resolve().parents[3] / "shared" / "reference" / "metrics"


def _load_rows() -> list[dict[str, str]]:
    path = REF / "reference_values.csv"
    if not path.is_file():
        return []
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


ROWS = _load_rows()


def reference_cases(*columns: str) -> list:
    """pytest params ``(triple_id, {column: value})`` for every triple with a non-empty cell in any of
    ``columns`` (NaN cells stay NaN). Without ../shared a single placeholder is returned, and the
    ``triple`` fixture then skips (locally) or fails (CI)."""
    cases = []
    for row in ROWS:
        vals = {c: float(row[c]) for c in columns if row.get(c, "") != ""}
        if vals:
            cases.append(pytest.param(row["id"], vals, id=row["id"]))
    return cases or [pytest.param(None, {}, id="reference-missing")]


def load_triple(triple_id: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(F, A, B) as uint8 2-D arrays; A = infrared/CT ("ir" slot), B = visible/MRI ("vi" slot)."""
    d = REF / "triples" / triple_id
    return tuple(np.asarray(Image.open(d / f"{n}.png")) for n in ("F", "A", "B"))  # type: ignore[return-value]


@pytest.fixture
def triple(shared, request) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Use with ``@pytest.mark.parametrize("tid,ref", reference_cases(...))``."""
    return load_triple(request.getfixturevalue("tid"))


def assert_close(got: float, ref: float, *, rel: float = 1e-6, abs_: float = 0.0, what: str = "") -> None:
    """NaN must match NaN; otherwise |got - ref| <= max(rel * |ref|, abs_)."""
    if math.isnan(ref):
        assert math.isnan(got), f"{what}: expected NaN, got {got}"
        return
    assert not math.isnan(got), f"{what}: got NaN, expected {ref}"
    tol = max(rel * abs(ref), abs_)
    assert abs(got - ref) <= tol, f"{what}: got {got!r}, reference {ref!r}, |diff| {abs(got - ref):.3g} > {tol:.3g}"
