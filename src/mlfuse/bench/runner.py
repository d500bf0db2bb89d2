"""``run_bench``: methods x datasets -> cached fused results -> metric tables, efficiency table,
comparison figures and a results page (``README.md``) in one output folder.

Every method is built once; a method that cannot be built (no weights, bad checkpoint) or fails on
every pair is reported in the tables with its reason, never fatal. Fused results and metric values
are cached (:mod:`mlfuse.bench.cache`): re-running with one more method computes only that method.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from tqdm import tqdm

from mlfuse import __version__
from mlfuse.bench.cache import MethodCache, default_root, slug
from mlfuse.bench.config import BenchConfig, DatasetSpec, FigureSpec, MethodSpec, check_config
from mlfuse.bench.efficiency import Efficiency, measure, measure_isolated
from mlfuse.bench.figures import comparison_figure, write_png
from mlfuse.bench.tables import efficiency_csv, efficiency_markdown, markdown_table, scaling_markdown, summary_csv
from mlfuse.data.io import read_image, write_image
from mlfuse.data.pairs import Pair, find_modality_dirs, pair_folders
from mlfuse.errors import MLFuseError, OutputError, WeightsNotFoundError
from mlfuse.inference.fuse import FuseOptions, fuse_pair
from mlfuse.metrics.evaluation import EvalReport, evaluate
from mlfuse.metrics.profiles import get_profile
from mlfuse.metrics.report import per_image_csv, write_text
from mlfuse.progress import bar_disabled
from mlfuse.registry import ModelCard, create_model, get_card, resolve_weights
from mlfuse.runtime import machine, resolve_device
from mlfuse.weights.store import check_file, get_release, sha256_of


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    msg = text[0] if text else ""
    return msg if isinstance(exc, MLFuseError) else f"{type(exc).__name__}: {msg}".rstrip(": ")


@dataclass
class MethodState:
    """A method once built: its model and the identity its cache key is made of (or the error)."""

    spec: MethodSpec
    card: ModelCard | None = None
    model: torch.nn.Module | None = None
    weights: Path | None = None
    identity: dict = field(default_factory=dict)
    error: str | None = None


@dataclass
class MethodOutcome:
    """One method on one dataset."""

    label: str
    written: int = 0
    reused: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)
    error: str | None = None  # the method produced nothing here
    cache_dir: str | None = None


@dataclass
class DatasetOutcome:
    spec: DatasetSpec
    structural_dir: Path
    functional_dir: Path
    pairs: list[Pair]
    problems: list[str] = field(default_factory=list)
    methods: dict[str, MethodOutcome] = field(default_factory=dict)
    reports: dict[str, EvalReport] = field(default_factory=dict)
    figures: list[Path] = field(default_factory=list)

    def failed(self) -> dict[str, str]:
        return {k: v.error for k, v in self.methods.items() if v.error}


@dataclass
class BenchResult:
    config: BenchConfig
    datasets: list[DatasetOutcome]
    efficiency: list[Efficiency]
    machine: dict
    files: list[Path] = field(default_factory=list)
    scaling: list[Efficiency] = field(default_factory=list)  # per megapixel: method x scaling size


def resolve_method_weights(spec: MethodSpec, card: ModelCard, weights_files: dict[str, Path]) -> Path | None:
    """The checkpoint file for ``spec`` (``None`` for a method without weights). A release given a
    local file in ``weights_files`` uses it after checking the release's sha256."""
    if not card.needs_weights:
        return None
    choice = spec.weights
    if choice == "default":
        if card.default_weights is None:
            raise WeightsNotFoundError(f"model '{card.name}' ships no default weights: give {card.name}:FILE")
        choice = card.default_weights
    choice = card.release_named(choice) or choice
    if choice in card.release_names:
        local = weights_files.get(choice)
        if local is not None:
            if not Path(local).is_file():
                raise WeightsNotFoundError(f"{local}: no such weights file (given for release {choice})")
            expected = get_release(choice).sha256
            if expected and sha256_of(local) != expected:
                raise WeightsNotFoundError(f"{local}: sha256 differs from release {choice} ({expected[:12]}...)")
            if not expected:  # the authors' releases publish a git blob id, no sha256
                check_file(local, choice)
            return Path(local)
    return resolve_weights(card, choice)


def build_method(spec: MethodSpec, cfg: BenchConfig, device: torch.device) -> MethodState:
    state = MethodState(spec)
    try:
        card = get_card(spec.model)
        state.card = card
        state.weights = resolve_method_weights(spec, card, cfg.weights_files)
        state.model = create_model(spec.model, weights=state.weights, device=device, **spec.kwargs)
        state.identity = {
            "model": spec.model, "kwargs": spec.kwargs,
            "weights_sha256": sha256_of(state.weights) if state.weights is not None else None,
            "color": cfg.color, "output": card.output_rule, "precision": cfg.precision,
        }
    except Exception as exc:  # reported in the tables; the other methods go on
        state.error = _one_line(exc)
    return state


def _dataset_pairs(spec: DatasetSpec) -> tuple[Path, Path, list[Pair], list[str]]:
    s_dir, f_dir = find_modality_dirs(spec.root, spec.subdirs)
    pairing = pair_folders(s_dir, f_dir)
    pairs = pairing.pairs
    problems = [f"unpaired: {line}" for line in pairing.problems()]
    if spec.names is not None:
        wanted = set(spec.names)
        problems = [ln for ln in problems if any(f"'{n}'" in ln for n in wanted)]  # only the selected names
        present = {p.name for p in pairs}
        missing = [n for n in spec.names if n not in present]
        if missing:
            problems.append(f"{len(missing)} selected name(s) have no source pair: {', '.join(missing)}")
        pairs = [p for p in pairs if p.name in wanted]
    if not pairs:
        raise MLFuseError(f"dataset '{spec.name}': no source pairs in {spec.root}")
    return s_dir, f_dir, pairs, problems


def _fuse_dataset(ds: DatasetOutcome, state: MethodState, cfg: BenchConfig, root: Path, recompute: bool,
                  quiet: bool, say: Callable[[str], None]) -> MethodCache | None:
    label = state.spec.label
    out = MethodOutcome(label)
    ds.methods[label] = out
    if state.error:
        out.error = state.error
        return None
    cache = MethodCache(root, ds.spec.name, (ds.structural_dir, ds.functional_dir), label, state.identity)
    out.cache_dir = str(cache.dir)
    todo = [p for p in ds.pairs if recompute or not cache.has(p)]
    options = FuseOptions(color=cfg.color, precision=cfg.precision)  # the method's own output rule, tile auto
    out.reused = len(ds.pairs) - len(todo)
    try:
        for pair in tqdm(todo, desc=f"{ds.spec.name}: {label}", unit="pair",
                         disable=bar_disabled(quiet) or not todo, leave=False):
            try:
                fused = fuse_pair(state.model, pair.structural, pair.functional, options)
                write_image(fused, cache.fused_path(pair), overwrite=True)
                cache.stored(pair)
                out.written += 1
            except OutputError:
                raise  # the cache folder is unwritable: nothing else will work either
            except Exception as exc:  # a pair the method cannot handle is listed, the rest go on
                out.failed.append((pair.name, _one_line(exc)))
                say(f"{ds.spec.name}: {label}: FAILED {pair.name}: {_one_line(exc)}")
    finally:
        cache.save()
    if out.failed and out.written + out.reused == 0:
        out.error = f"failed on every pair (first: {out.failed[0][1]})"
    for name, msg in out.failed:
        ds.problems.append(f"{label}: {name}: {msg}")
    return cache


def _evaluate_dataset(ds: DatasetOutcome, caches: dict[str, MethodCache], cfg: BenchConfig, quiet: bool,
                      say: Callable[[str], None]) -> None:
    labels = [m.label for m in cfg.methods if m.label in caches and not ds.methods[m.label].error]
    for profile_name in cfg.profiles:
        prof = get_profile(profile_name)
        names = cfg.metrics.get(profile_name) or [m.name for m in prof.metrics if cfg.slow or not m.slow]
        report = EvalReport(prof, names, labels)
        jobs = [(lb, p) for p in ds.pairs for lb in labels if caches[lb].has(p)]  # each source pair read once
        sources: dict[str, tuple] = {}
        for label, pair in tqdm(jobs, desc=f"{ds.spec.name}: metrics {profile_name}", unit="img",
                                disable=bar_disabled(quiet) or not jobs, leave=False):
            stored = caches[label].metrics(profile_name).setdefault(pair.name, {})
            missing = [m for m in names if m not in stored]
            if missing:
                try:
                    if pair.name not in sources:
                        sources = {pair.name: (read_image(pair.functional).pixels, read_image(pair.structural).pixels)}
                    a, b = sources[pair.name]
                    fused = read_image(caches[label].fused_path(pair)).pixels
                    stored.update(evaluate(fused, a, b, prof, metrics=missing))
                except Exception as exc:
                    line = f"{label}: {pair.name}: metrics failed: {_one_line(exc)}"
                    report.problems.append(line)
                    ds.problems.append(line)
                    say(f"{ds.spec.name}: {line}")
                    continue
            report.rows.append({"method": label, "name": pair.name, **{m: float(stored[m]) for m in names}})
        rank = {lb: i for i, lb in enumerate(labels)}
        report.rows.sort(key=lambda r: rank[r["method"]])  # stable: pairs stay in natural order
        for label in labels:
            caches[label].save()
        ds.reports[profile_name] = report


def _figure(ds: DatasetOutcome, fig: FigureSpec, caches: dict[str, MethodCache], cfg: BenchConfig,
            out_dir: Path) -> Path | None:
    pair = ds.pairs[0] if fig.pair is None else next((p for p in ds.pairs if p.name == fig.pair), None)
    if pair is None:
        ds.problems.append(f"figure: no pair named '{fig.pair}'")
        return None
    panels = [(f"{ds.structural_dir.name} (source)", read_image(pair.structural).pixels),
              (f"{ds.functional_dir.name} (source)", read_image(pair.functional).pixels)]
    for m in cfg.methods:
        cache = caches.get(m.label)
        path = cache.fused_path(pair) if cache is not None and cache.has(pair) else None
        panels.append((m.label, read_image(path).pixels if path is not None else None))
    image = comparison_figure(panels, tile_height=cfg.tile, inset=fig.inset,
                              title=f"{ds.spec.name}: {pair.name}")
    return write_png(image, out_dir / "figures" / f"{slug(ds.spec.name)}_{slug(pair.name)}.png", overwrite=True)


def _efficiency(states: list[MethodState], cfg: BenchConfig, quiet: bool) -> list[Efficiency]:
    rows: list[Efficiency] = []
    done: dict[str, Efficiency] = {}
    for state in tqdm(states, desc="efficiency", unit="method", disable=bar_disabled(quiet)):
        label = state.spec.label
        if state.error:
            rows.append(Efficiency(label, cfg.size, error=state.error))
            continue
        arch = json.dumps([state.spec.model, state.spec.kwargs], sort_keys=True, default=str)
        if arch in done:  # same architecture, other weights: same cost
            rows.append(Efficiency(**{**asdict(done[arch]), "label": label}))
            continue
        if cfg.isolate:
            eff = measure_isolated(state.spec.model, str(state.weights) if state.weights else None,
                                   state.spec.kwargs, label, cfg.size, cfg.repeats, cfg.threads)
        else:
            device = next(state.model.parameters()).device
            try:
                eff = measure(state.model.to("cpu"), label, cfg.size, cfg.repeats)
            except Exception as exc:
                eff = Efficiency(label, cfg.size, error=_one_line(exc))
            state.model.to(device)
        done[arch] = eff
        rows.append(eff)
    return rows


def _scaling(states: list[MethodState], cfg: BenchConfig, quiet: bool) -> list[Efficiency]:
    """Memory and time per megapixel: every network method (the classical ones have no tiling and no
    per-pixel estimate) at each of ``cfg.scaling_sizes``, one forward each in a fresh process, untiled
    or tiled as ``--tile auto`` decides with ``cfg.tile_budget_mb``."""
    rows: list[Efficiency] = []
    done: set[str] = set()
    jobs = [(state, size) for state in states for size in cfg.scaling_sizes]
    for state, size in tqdm(jobs, desc="per megapixel", unit="run", disable=bar_disabled(quiet) or not jobs):
        label = state.spec.label
        if state.card is not None and not state.card.needs_weights and state.card.recipe is None:
            continue  # a classical method
        arch = json.dumps([state.spec.model, state.spec.kwargs, size], sort_keys=True, default=str)
        if arch in done:  # same architecture, other weights: same cost
            continue
        done.add(arch)
        if state.error:
            rows.append(Efficiency(label, size, error=state.error))
            continue
        rows.append(measure_isolated(state.spec.model, str(state.weights) if state.weights else None,
                                     state.spec.kwargs, label, size, 1, cfg.threads, scaled=True,
                                     budget_mb=cfg.tile_budget_mb))
    return rows


PAGE_FILES = ("README.md", "bench.json")


def run_bench(cfg: BenchConfig, *, overwrite: bool = False, recompute: bool = False, quiet: bool = False,
              report: Callable[[str], None] | None = None) -> BenchResult:
    """Run the whole bench described by ``cfg``; see the module docstring. ``recompute``: ignore
    cached results. Existing output files are replaced only with ``overwrite``."""
    say = report or (lambda line: None)
    check_config(cfg)
    out_dir = Path(cfg.out)
    for name in PAGE_FILES:
        if (out_dir / name).exists() and not overwrite:
            raise OutputError(f"{out_dir / name}: already exists (pass --overwrite to regenerate the results)")
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = resolve_device(cfg.device)
    root = Path(cfg.cache) if cfg.cache is not None else default_root()
    datasets = []
    for spec in cfg.datasets:  # every dataset is checked before any work
        s_dir, f_dir, pairs, problems = _dataset_pairs(spec)
        datasets.append(DatasetOutcome(spec, s_dir, f_dir, pairs, problems))
    states = [build_method(spec, cfg, device) for spec in cfg.methods]
    for st in states:
        if st.error:
            say(f"method {st.spec.label}: {st.error}")
    result = BenchResult(cfg, datasets, [], machine())
    finished = 0
    try:
        for ds in datasets:
            caches = {}
            for st in states:
                cache = _fuse_dataset(ds, st, cfg, root, recompute, quiet, say)
                if cache is not None:
                    caches[st.spec.label] = cache
            _evaluate_dataset(ds, caches, cfg, quiet, say)
            figures = cfg.figures if cfg.figures is not None else [FigureSpec(ds.spec.name)]
            for fig in (f for f in figures if f.dataset == ds.spec.name):
                try:
                    path = _figure(ds, fig, caches, cfg, out_dir)
                except MLFuseError as exc:
                    ds.problems.append(f"figure {fig.pair or ''}: {exc}")
                    continue
                if path is not None:
                    ds.figures.append(path)
            finished += 1
        if cfg.efficiency:
            result.efficiency = _efficiency(states, cfg, quiet)
            result.scaling = _scaling(states, cfg, quiet)
    except BaseException as exc:  # interrupted or failed: the datasets finished so far are still written
        if finished and (overwrite or not any((out_dir / n).exists() for n in PAGE_FILES)):
            why = "interrupted" if isinstance(exc, KeyboardInterrupt) else f"stopped by {_one_line(exc)}"
            for ds in datasets[finished:]:
                ds.reports.clear()
                ds.problems.append(f"not completed: the run was {why}")
            result.machine = machine()
            result.files = write_outputs(result, out_dir)
            say(f"partial results of {finished} dataset(s) written to {out_dir} ({why})")
        raise
    result.machine = machine()  # the load average as the run ends
    result.files = write_outputs(result, out_dir)
    if overwrite:  # a regenerated page keeps no tables or figures of methods/datasets it no longer has
        keep = set(result.files) | {p for ds in datasets for p in ds.figures}
        for sub, suffixes in (("tables", (".md", ".csv")), ("figures", (".png",))):
            for f in (out_dir / sub).glob("*"):
                if f.is_file() and f.suffix in suffixes and f not in keep:
                    f.unlink()
    return result


def _dataset_stem(ds: DatasetOutcome, profile: str) -> str:
    return f"{slug(ds.spec.name)}.{profile}"


def write_outputs(result: BenchResult, out_dir: Path) -> list[Path]:
    """Tables (Markdown, CSV), efficiency, ``bench.json`` and the page ``README.md``."""
    cfg = result.config
    order = [m.label for m in cfg.methods]
    files = []
    for ds in result.datasets:
        for profile, rep in ds.reports.items():
            stem = out_dir / "tables" / _dataset_stem(ds, profile)
            files.append(write_text(f"{stem}.md", markdown_table(rep, order, ds.failed()), overwrite=True))
            files.append(write_text(f"{stem}.csv", summary_csv(rep, order, ds.failed()), overwrite=True))
            files.append(write_text(f"{stem}.per_image.csv", per_image_csv(rep), overwrite=True))
    if result.efficiency:
        files.append(write_text(out_dir / "efficiency.md", efficiency_markdown(result.efficiency), overwrite=True))
        files.append(write_text(out_dir / "efficiency.csv", efficiency_csv(result.efficiency), overwrite=True))
    if result.scaling:
        files.append(write_text(out_dir / "scaling.md", scaling_markdown(result.scaling), overwrite=True))
        files.append(write_text(out_dir / "scaling.csv", efficiency_csv(result.scaling), overwrite=True))
    files.append(write_text(out_dir / "bench.json", _json(result), overwrite=True))
    files.append(write_text(out_dir / "README.md", render_page(result, out_dir), overwrite=True))
    return files


def shown_weights(weights: str) -> str:
    """A method's weights as a report shows them: a checkpoint file under the working directory relative to
    it (``benchmarks/runs/x.safetensors``, not this machine's absolute path), anything else unchanged."""
    path = Path(weights)
    if path.is_absolute():
        try:
            return path.relative_to(Path.cwd()).as_posix()
        except ValueError:
            pass
    return weights


def _json(result: BenchResult) -> str:
    doc = {
        "mlfuse": __version__, "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": result.machine, "command": result.config.command,
        "methods": [asdict(m) | {"weights": shown_weights(m.weights)} for m in result.config.methods],
        "datasets": [],
        "efficiency": [asdict(e) for e in result.efficiency],
        "scaling": [asdict(e) for e in result.scaling],
    }
    for ds in result.datasets:
        doc["datasets"].append({
            "name": ds.spec.name, "root": ds.spec.display or str(ds.spec.root), "pairs": len(ds.pairs),
            "methods": {k: asdict(v) for k, v in ds.methods.items()},
            "summary": {p: {m: {k: {"mean": v[0], "std": v[1], "n": v[2], "excluded": v[3]} for k, v in s.items()}
                            for m, s in rep.summary().items()} for p, rep in ds.reports.items()},
            "problems": ds.problems,
        })
    return json.dumps(doc, indent=1, allow_nan=True, default=str) + "\n"


def render_page(result: BenchResult, out_dir: Path) -> str:
    """The results page: how it was made, then per dataset its tables and figure, then efficiency."""
    cfg, mach = result.config, result.machine
    date = datetime.date.today().isoformat()
    lines = [f"# {cfg.title}", ""]
    if cfg.command:
        lines += ["Regenerate (fused results are cached; only new methods or changed sources are computed):", "",
                  "```bash", cfg.command, "```", ""]
    lines += [f"Generated {date} by mlfuse {__version__} on: {mach.get('cpu')} ({mach.get('logical_cpus')} logical "
              f"CPUs, torch {mach.get('torch')} with {mach.get('torch_threads')} thread(s)"
              + (f", GPU {mach['gpu']}" if mach.get("gpu") else ", no GPU") + f"), Python {mach.get('python')}"
              + (f"; 1-minute load average {mach['load_avg'][0]} when the run ended" if mach.get("load_avg") else "")
              + ".", ""]
    lines += ["Methods:", ""]
    for m in cfg.methods:
        card = None
        try:
            card = get_card(m.model)
        except MLFuseError:
            pass
        weights = "" if card is None or not card.needs_weights else f", weights `{shown_weights(m.weights)}`"
        paper = f" — {card.paper}" if card else ""
        lines.append(f"* `{m.label}`: model `{m.model}`{weights}{paper}"
                     + (f" ({', '.join(f'{k}={v}' for k, v in m.kwargs.items())})" if m.kwargs else ""))
    lines += ["", "Conventions: each method's own output rule (`minmax` for MLFuse, `clamp` for the classical "
              f"methods), colour mode `{cfg.color}` (colour sources: the luma is fused, the chroma restored), "
              f"precision {cfg.precision}. Tables: mean ± std over the pairs, `n` pairs scored, best value per "
              "metric in bold (↑ higher is better, ↓ lower)."
              + (" The slow metrics (FMI) are not computed in this run." if not cfg.slow else ""), ""]
    if cfg.notes:
        lines += [f"* {n}" for n in cfg.notes] + [""]
    for ds in result.datasets:
        lines += [f"## {ds.spec.name}", "",
                  f"`{ds.spec.display or ds.spec.root}`: {len(ds.pairs)} pairs, structural = "
                  f"`{ds.structural_dir.name}`, functional = `{ds.functional_dir.name}`"
                  + (f", restricted to {len(ds.spec.names)} selected names" if ds.spec.names is not None else "")
                  + ".", ""]
        for profile, rep in ds.reports.items():
            prof = rep.profile
            stem = f"tables/{_dataset_stem(ds, profile)}"
            lines += [f"Profile `{profile}` ({prof.reference}) — [CSV]({stem}.csv), [per image]({stem}.per_image.csv)",
                      "", markdown_table(rep, [m.label for m in cfg.methods], ds.failed())]
        for fig in ds.figures:
            rel = fig.relative_to(out_dir) if fig.is_relative_to(out_dir) else fig
            lines += [f"![{ds.spec.name} comparison]({rel.as_posix()})", ""]
        if ds.problems:
            lines += ["<details><summary>Problems</summary>", ""] + [f"* {p}" for p in ds.problems] + ["",
                                                                                                       "</details>", ""]
    if result.efficiency:
        lines += efficiency_section(result.efficiency, cfg, scaling=result.scaling)
    return "\n".join(lines).rstrip() + "\n"


def efficiency_section(rows: list[Efficiency], cfg: BenchConfig, measured: str | None = None,
                       scaling: list[Efficiency] | None = None) -> list[str]:
    """The page's ``## Efficiency`` section (with its per-megapixel table when ``scaling`` has rows);
    ``measured`` says when and where, if not with the rest of the page."""
    h, w = cfg.size
    tail: list[str] = []
    if scaling:
        budget = "mlfuse's default tile budget" if cfg.tile_budget_mb is None else \
            f"a {cfg.tile_budget_mb:g} MB tile budget"
        tail = ["", "### Memory and time per megapixel", "",
                "Each network at each size, one forward of random inputs in a fresh process, run as "
                f"`--tile auto` runs it with {budget}: untiled when the method's measured per-pixel estimate "
                "fits the budget, else tiled (\"run as\" gives the tile size). CPU peak: the resident set's "
                "growth during the forward; B / px divides it by the input pixels.", "", scaling_markdown(scaling)]
    return ["## Efficiency", "",
            f"One {h}×{w} pair (H×W), batch 1, the method's own computation (`fusion_forward`, no I/O): "
            f"median of {cfg.repeats} runs after 2 warm-ups. FLOPs by `torch.utils.flop_counter."
            "FlopCounterMode` (matrix multiplications and convolutions, a multiply-add = 2 FLOPs; "
            "elementwise work is not counted, so the classical methods show n/a). CPU peak MB: the peak "
            "resident set during the timed runs minus the resident set just before them"
            + (" (a fresh process per method, its own VmHWM reset before the runs)." if cfg.isolate
               else " (not measured in-process)."),
            "", *([measured, ""] if measured else []), efficiency_markdown(rows), *tail]


def update_efficiency(cfg: BenchConfig, *, quiet: bool = False, report: Callable[[str], None] | None = None,
                      command: str | None = None) -> list[Efficiency]:
    """Measure the efficiency table again and put it into the existing results page in ``cfg.out``
    (``efficiency.md``/``.csv``, the ``## Efficiency`` section of ``README.md``, ``bench.json``), leaving
    the quality tables, which take a whole bench run to recompute, as they are. ``command``: how this
    update was run, recorded with it."""
    say = report or (lambda line: None)
    check_config(cfg)
    out_dir = Path(cfg.out)
    page, doc_path = out_dir / "README.md", out_dir / "bench.json"
    if not page.is_file() or not doc_path.is_file():
        raise OutputError(f"{out_dir}: no results page to update (run the whole bench first)")
    text = page.read_text(encoding="utf-8")
    try:
        doc = json.loads(doc_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise OutputError(f"{doc_path}: not valid JSON ({exc})") from None
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    states = [build_method(spec, cfg, torch.device("cpu")) for spec in cfg.methods]
    for st in states:
        if st.error:
            say(f"method {st.spec.label}: {st.error}")
    rows = _efficiency(states, cfg, quiet)
    scaling = _scaling(states, cfg, quiet)
    mach = machine()
    date = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    measured = (f"Measured {date[:10]} (after the tables above) on: {mach.get('cpu')} ({mach.get('logical_cpus')} "
                f"logical CPUs, torch {mach.get('torch')} with {mach.get('torch_threads')} thread(s)"
                + (f"; 1-minute load average {mach['load_avg'][0]} when it ended" if mach.get("load_avg") else "")
                + ")" + (f" by `{command}`" if command else "") + ".")
    head = text.split("\n## Efficiency\n", 1)[0].rstrip()
    doc["efficiency"] = [asdict(e) for e in rows]
    doc["scaling"] = [asdict(e) for e in scaling]
    doc["efficiency_measured"] = {"date": date, "machine": mach, "command": command}
    write_text(out_dir / "efficiency.md", efficiency_markdown(rows), overwrite=True)
    write_text(out_dir / "efficiency.csv", efficiency_csv(rows), overwrite=True)
    if scaling:
        write_text(out_dir / "scaling.md", scaling_markdown(scaling), overwrite=True)
        write_text(out_dir / "scaling.csv", efficiency_csv(scaling), overwrite=True)
    write_text(doc_path, json.dumps(doc, indent=1, allow_nan=True, default=str) + "\n", overwrite=True)
    write_text(page, head + "\n\n" + "\n".join(efficiency_section(rows, cfg, measured, scaling)).rstrip() + "\n",
               overwrite=True)
    return rows
