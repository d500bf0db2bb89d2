"""Pairing two modality folders by file stem, in natural order, reporting what does not pair.

The MLFuse authors paired files by an unordered ``set`` of name prefixes, so which modality became
input 1 changed from run to run. Here roles come from the folder the user names, pairs from
identical stems (``12.png`` with ``12.jpg``), order from a natural sort (2 before 10).
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass, field
from pathlib import Path

from mlfuse.data.io import IMAGE_EXTENSIONS
from mlfuse.errors import InputError

#: sub-folder names recognised under ``--root`` when the user does not name them (case-insensitive)
STRUCTURAL_DIR_NAMES = ("vi", "vis", "visible", "rgb", "mri")
FUNCTIONAL_DIR_NAMES = ("ir", "infrared", "thermal", "ct", "pet", "spect")


def natural_key(text: str) -> tuple:
    """Sort key treating digit runs as numbers: ``img2`` < ``img10``; case-insensitive."""
    return tuple((0, int(t), t) if t.isdigit() else (1, 0, t.lower()) for t in re.split(r"(\d+)", text) if t)


@dataclass
class Pair:
    name: str
    structural: Path
    functional: Path


@dataclass
class Pairing:
    """Matched pairs plus everything that could not be paired (never silently dropped)."""

    pairs: list[Pair] = field(default_factory=list)
    only_structural: list[Path] = field(default_factory=list)
    only_functional: list[Path] = field(default_factory=list)
    ambiguous: list[str] = field(default_factory=list)

    def problems(self) -> list[str]:
        """One line per file that was not paired."""
        lines = [f"{p}: no functional image with stem '{p.stem}'" for p in self.only_structural]
        lines += [f"{p}: no structural image with stem '{p.stem}'" for p in self.only_functional]
        lines += self.ambiguous
        return lines


def list_images(folder: Path) -> tuple[dict[str, Path], dict[str, str]]:
    """Image files of ``folder`` by stem, and a one-line complaint per stem that occurs twice."""
    if not folder.is_dir():
        raise InputError(f"{folder}: no such folder")
    by_stem: dict[str, list[Path]] = {}
    for p in folder.iterdir():
        if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith("."):
            by_stem.setdefault(p.stem, []).append(p)
    found = {s: ps[0] for s, ps in by_stem.items() if len(ps) == 1}
    dups = {
        s: f"{folder}: several files with stem '{s}' ({', '.join(sorted(p.name for p in ps))}); pair skipped"
        for s, ps in sorted(by_stem.items()) if len(ps) > 1
    }
    return found, dups


def pair_folders(structural_dir: str | Path, functional_dir: str | Path) -> Pairing:
    """Pair the images of two folders by identical file stem, in natural order."""
    s_files, s_dups = list_images(Path(structural_dir))
    f_files, f_dups = list_images(Path(functional_dir))
    result = Pairing(ambiguous=list(s_dups.values()) + list(f_dups.values()))
    for stem in sorted((set(s_files) | set(f_files)) - set(s_dups) - set(f_dups), key=natural_key):
        if stem in s_files and stem in f_files:
            result.pairs.append(Pair(stem, s_files[stem], f_files[stem]))
        elif stem in s_files:
            result.only_structural.append(s_files[stem])
        else:
            result.only_functional.append(f_files[stem])
    return result


def find_modality_dirs(root: str | Path, subdirs: tuple[str, str] | None = None) -> tuple[Path, Path]:
    """The (structural, functional) sub-folders of ``root``: the names given in ``subdirs``, else the
    one sub-folder matching a known structural name (vi, visible, mri, ...) and a known functional
    name (ir, ct, pet, spect, ...). Names match case-insensitively."""
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"{root}: no such folder")
    children = {p.name.lower(): p for p in root.iterdir() if p.is_dir()}
    listing = ", ".join(sorted(p.name for p in children.values())) or "none"

    def pick(names: tuple[str, ...], role: str) -> Path:
        hits = [children[n.lower()] for n in names if n.lower() in children]
        if len(hits) == 1:
            return hits[0]
        wanted = "/".join(names)
        if not hits:
            raise InputError(f"{root}: no {role} sub-folder ({wanted}) found; sub-folders: {listing}; "
                             "name them with --subdirs STRUCTURAL,FUNCTIONAL")
        raise InputError(f"{root}: several {role} sub-folders ({', '.join(h.name for h in hits)}); "
                         "choose with --subdirs STRUCTURAL,FUNCTIONAL")

    if subdirs is not None:
        return pick((subdirs[0],), "structural"), pick((subdirs[1],), "functional")
    return pick(STRUCTURAL_DIR_NAMES, "structural"), pick(FUNCTIONAL_DIR_NAMES, "functional")


def read_names(path: Path, column: str | None = None, where: dict[str, str] | None = None) -> tuple[str, ...]:
    """Pair names from a text file (one per line, ``#`` comments) or a CSV (``column``, rows
    filtered by ``where`` = {column: value})."""
    if not path.is_file():
        raise InputError(f"{path}: no such names file")
    if path.suffix.lower() == ".csv" or column:
        with open(path, newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            fields = reader.fieldnames or []
            for col in [column, *(where or {})]:
                if col is None or col not in fields:
                    raise InputError(f"{path}: names CSV needs a column name present in the file "
                                      f"(got {col!r}; columns: {', '.join(fields)})")
            rows = [r for r in reader if all(r[k] == str(v) for k, v in (where or {}).items())]
            names = tuple(Path(r[column]).stem for r in rows)
    else:
        lines = (ln.split("#", 1)[0].strip() for ln in path.read_text(encoding="utf-8").splitlines())
        names = tuple(Path(ln).stem for ln in lines if ln)
    if not names:
        raise InputError(f"{path}: no names selected")
    return names
