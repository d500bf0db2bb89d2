"""``mlfuse bench``: the cache (a second run fuses and scores nothing), failing methods reported
not fatal, names filter, figures, efficiency counts, config files and the CLI. Small synthetic
pairs, so the whole file runs in seconds."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import mlfuse.bench.runner as runner
from mlfuse.bench import BenchConfig, DatasetSpec, FigureSpec, MethodSpec, load_config, run_bench
from mlfuse.bench.config import check_config, parse_figure
from mlfuse.bench.efficiency import count_flops, measure, measure_isolated
from mlfuse.cli.main import main
from mlfuse.errors import MLFuseError
from mlfuse.models.classical.base import ClassicalFusion
from mlfuse.registry import _MODELS, ModelCard

NAMES = ("1", "2", "10")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """vi/ (pair 2 in colour) + ir/, pairs 1, 2, 10 at 20 x 28, and one infrared image without a partner."""
    root = tmp_path_factory.mktemp("bench_data") / "syn"
    rng = np.random.default_rng(0)
    for sub in ("vi", "ir"):
        (root / sub).mkdir(parents=True)
    for name in NAMES:
        vis = rng.integers(0, 256, (20, 28, 3) if name == "2" else (20, 28), dtype=np.uint8)
        Image.fromarray(vis).save(root / "vi" / f"{name}.png")
        Image.fromarray(rng.integers(0, 256, (20, 28), dtype=np.uint8)).save(root / "ir" / f"{name}.png")
    Image.fromarray(rng.integers(0, 256, (20, 28), dtype=np.uint8)).save(root / "ir" / "lonely.png")
    return root


class _Broken(ClassicalFusion):
    def fuse_tensors(self, structural: torch.Tensor, functional: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("kaboom")


@pytest.fixture
def broken_model(monkeypatch: pytest.MonkeyPatch) -> str:
    """A registered method that raises on every pair (removed again after the test)."""
    monkeypatch.setitem(_MODELS, "_broken", ModelCard(name="_broken", builder=_Broken, paper="test",
                                                      needs_weights=False, output_rule="clamp"))
    return "_broken"


def _config(dataset: Path, tmp: Path, methods: list[str], **kw) -> BenchConfig:
    return BenchConfig(methods=[MethodSpec.parse(m) for m in methods],
                       datasets=[DatasetSpec("syn", dataset)], out=tmp / "out", cache=tmp / "cache",
                       profiles=["cddfuse"], metrics={"cddfuse": ["EN", "MSE", "Qabf"]}, efficiency=False,
                       tile=32, **kw)


def test_second_run_reuses_fused_results_and_metrics(dataset, tmp_path, monkeypatch):
    cfg = _config(dataset, tmp_path, ["average", "max"])
    first = run_bench(cfg, quiet=True)
    ds = first.datasets[0]
    assert [p.name for p in ds.pairs] == list(NAMES)
    assert {k: (v.written, v.reused) for k, v in ds.methods.items()} == {"average": (3, 0), "max": (3, 0)}
    assert any("lonely" in p for p in ds.problems)
    fused = sorted(Path(ds.methods["max"].cache_dir).glob("*.png"))
    assert [f.stem for f in fused] == sorted(NAMES)
    mtimes = [f.stat().st_mtime_ns for f in fused]
    table = (cfg.out / "tables" / "syn.cddfuse.md").read_text()

    def no_metrics(*args, **kwargs):
        raise AssertionError("metrics were recomputed")

    monkeypatch.setattr(runner, "evaluate", no_metrics)
    monkeypatch.setattr(runner, "fuse_pair", no_metrics)
    second = run_bench(cfg, overwrite=True, quiet=True)
    assert {k: (v.written, v.reused) for k, v in second.datasets[0].methods.items()} == {
        "average": (0, 3), "max": (0, 3)}
    assert [f.stat().st_mtime_ns for f in fused] == mtimes
    assert (cfg.out / "tables" / "syn.cddfuse.md").read_text() == table
    assert not second.datasets[0].reports["cddfuse"].problems


def test_changed_source_is_recomputed_and_new_weights_get_a_new_cache(dataset, tmp_path, random_weights):
    data = tmp_path / "data"
    import shutil

    shutil.copytree(dataset, data)
    cfg = _config(data, tmp_path, ["average"])
    run_bench(cfg, quiet=True)
    src = data / "ir" / "10.png"
    Image.fromarray(np.zeros((20, 28), np.uint8)).save(src)
    os.utime(src, ns=(1, 1))
    again = run_bench(cfg, overwrite=True, quiet=True).datasets[0].methods["average"]
    assert (again.written, again.reused) == (1, 2)
    # the same model with other weights is another cache folder
    a = run_bench(_config(data, tmp_path, [f"mlfuse:{random_weights}"]), overwrite=True, quiet=True)
    other = tmp_path / "w2.pth"
    torch.save({"model": {k: v + 1 if v.is_floating_point() else v for k, v in torch.load(
        random_weights, weights_only=True)["model"].items()}}, other)
    b = run_bench(_config(data, tmp_path, [f"mlfuse:{other}"]), overwrite=True, quiet=True)
    dirs = [r.datasets[0].methods[lb].cache_dir for r, lb in ((a, "mlfuse:random_mlfnet"), (b, "mlfuse:w2"))]
    assert dirs[0] != dirs[1] and all(d for d in dirs)


def test_failing_methods_are_reported_not_fatal(dataset, tmp_path, broken_model):
    cfg = _config(dataset, tmp_path, ["average", broken_model, "mlfuse:/no/such/weights.pth", "max"])
    result = run_bench(cfg, quiet=True)
    ds = result.datasets[0]
    assert ds.failed() == {
        "_broken": "failed on every pair (first: RuntimeError: kaboom)",
        "mlfuse:weights": "/no/such/weights.pth: no such weights file",
    }
    assert ds.reports["cddfuse"].methods == ["average", "max"]
    md = (cfg.out / "tables" / "syn.cddfuse.md").read_text()
    assert "| _broken | 0 | failed: failed on every pair (first: RuntimeError: kaboom) |" in md
    assert "| mlfuse:weights | 0 | failed: /no/such/weights.pth: no such weights file |" in md
    page = (cfg.out / "README.md").read_text()
    assert md.strip() in page and "_broken: 10: RuntimeError: kaboom" in page
    doc = json.loads((cfg.out / "bench.json").read_text())
    assert doc["datasets"][0]["methods"]["_broken"]["failed"][0] == ["1", "RuntimeError: kaboom"]


def test_names_filter_figures_and_overwrite(dataset, tmp_path):
    cfg = _config(dataset, tmp_path, ["average", "gff"], figures=[FigureSpec("syn", "10", (2, 3, 8, 6))])
    cfg.datasets = [DatasetSpec("syn", dataset, names=("10", "2", "missing"))]
    result = run_bench(cfg, quiet=True)
    ds = result.datasets[0]
    assert [p.name for p in ds.pairs] == ["2", "10"]
    assert any("missing" in p for p in ds.problems) and not any("lonely" in p for p in ds.problems)
    assert ds.reports["cddfuse"].summary()["gff"]["EN"][2] == 2
    fig = Image.open(ds.figures[0])
    assert ds.figures[0].name == "syn_10.png" and fig.mode == "RGB"
    assert fig.width > 4 * 28 * 32 / 20  # four tiles (2 sources + 2 methods) 32 px high, side by side
    px = np.asarray(fig)
    assert (np.abs(px.astype(int) - (230, 40, 40)).sum(axis=2) == 0).sum() > 20  # the inset frames
    with pytest.raises(MLFuseError, match="already exists"):
        run_bench(cfg, quiet=True)


def test_efficiency_counts(random_model):
    flops = [count_flops(random_model, torch.rand(1, 1, s, s), torch.rand(1, 1, s, s)) for s in (16, 32)]
    assert 3.8 < flops[1] / flops[0] < 4.2  # convolutions: linear in the pixel count
    assert flops[1] == pytest.approx(2 * 99_300 * 32 * 32, rel=0.1)  # ~99.3 k MAC per pixel (spec section 6)
    from mlfuse.registry import create_model

    eff = measure(create_model("average"), "average", (12, 16), repeats=1, gpu=False)
    assert eff.params == 0 and eff.flops is None and eff.cpu_s >= 0 and eff.error is None
    eff = measure(random_model, "net", (16, 16), repeats=1, gpu=False)
    assert eff.params == sum(p.numel() for p in random_model.parameters()) > 100_000 and eff.flops > 0


def test_efficiency_in_a_fresh_process():
    eff = measure_isolated("average", None, {}, "avg", (64, 64), 1, 1)
    assert eff.error is None and eff.params == 0 and eff.cpu_peak_mb is not None and eff.cpu_threads == 1
    bad = measure_isolated("mlfuse", "/no/such.pth", {}, "x", (16, 16), 1, 1)
    assert "no such weights file" in bad.error


@pytest.mark.skipif(not Path("/proc/self/status").is_file(), reason="VmHWM is Linux's")
def test_cpu_peak_is_the_methods_own_even_under_a_large_parent():
    """A child inherits its parent's ru_maxrss across fork + exec: measured that way, the growth was 0."""
    big = np.ones(400 * 2**20 // 8)  # the parent peaks at > 400 MB (a bench holding images, models, ...)
    del big
    eff = measure_isolated("average", None, {}, "avg", (1024, 1024), 1, 1)
    # average on 1024 x 1024 float32: two inputs' float copies and the output, 4 MB each, at the least
    assert eff.error is None and eff.cpu_peak_mb is not None and 4 <= eff.cpu_peak_mb < 400


def test_config_files(tmp_path, dataset):
    (tmp_path / "names.csv").write_text("split,file\ntest,10.png\ntrain,1.png\ntest,2.jpg\n")
    (tmp_path / "bench.toml").write_text(f"""
methods = ["average", "ref=mlfuse:paper", {{ spec = "laplacian", label = "lp3", kwargs = {{ levels = 3 }} }}]
profiles = ["cddfuse", "paper"]
out = "res"
slow = false
size = "48x64"
figures = ["syn:2@1,1,4,4"]
[weights_files]
mlfuse-paper = "w/model_fuse.pth"
[[datasets]]
name = "syn"
root = "{dataset}"
names_file = "names.csv"
names_column = "file"
names_where = {{ split = "test" }}
""")
    cfg = load_config(tmp_path / "bench.toml")
    assert [(m.label, m.model, m.weights, m.kwargs) for m in cfg.methods] == [
        ("average", "average", "default", {}), ("ref", "mlfuse", "paper", {}), ("lp3", "laplacian", "default",
                                                                               {"levels": 3})]
    assert cfg.out == tmp_path / "res" and cfg.weights_files["mlfuse-paper"] == tmp_path / "w" / "model_fuse.pth"
    assert cfg.datasets[0].names == ("10", "2") and cfg.size == (48, 64) and not cfg.slow
    assert cfg.figures == [parse_figure("syn:2@1,1,4,4")]
    check_config(cfg)
    (tmp_path / "bare.bin").write_bytes(b"")
    absolute = str(tmp_path / "elsewhere" / "abs.pth")
    methods = ["max", "mine=mlfuse:w/../w/run.safetensors", "mlfuse:bare.bin", f"abs=mlfuse:{absolute}",
               "mlfuse:own-v2", "mlfuse:mlfuse-paper", "mlfuse:my-installed-run"]
    (tmp_path / "b.json").write_text(json.dumps({"methods": methods, "datasets": [{"name": "d", "root": "x"}]}))
    cfg_b = load_config(tmp_path / "b.json")
    assert cfg_b.datasets[0].root == tmp_path / "x"
    # a method's checkpoint file is read from the config's folder too, like the datasets: a path with a folder
    # (normalised), or a bare name that is a file there; absolute paths, releases (full or short name) and other
    # names (a release installed by `mlfuse weights package`) are left as they are
    assert [(m.label, m.weights) for m in cfg_b.methods[1:]] == [
        ("mine", str(tmp_path / "w" / "run.safetensors")), ("mlfuse:bare", str(tmp_path / "bare.bin")),
        ("abs", absolute), ("mlfuse:own-v2", "own-v2"), ("mlfuse:mlfuse-paper", "mlfuse-paper"),
        ("mlfuse:my-installed-run", "my-installed-run")]
    assert MethodSpec.parse("mlfuse:w/run.safetensors").weights == "w/run.safetensors"  # -m: the working directory
    (tmp_path / "bad.toml").write_text('methods = ["average"]\nmetod = 1\n')
    with pytest.raises(MLFuseError, match="unknown config key"):
        load_config(tmp_path / "bad.toml")
    (tmp_path / "bad2.toml").write_text('[[datasets]]\nname = "d"\nroot = "x"\ntile = 3\n')
    with pytest.raises(MLFuseError, match="dataset 'd': unknown key"):  # a key meant for the top level
        load_config(tmp_path / "bad2.toml")
    with pytest.raises(MLFuseError, match="takes no weights"):
        MethodSpec.parse("gff:paper")
    with pytest.raises(MLFuseError, match="unknown model"):
        MethodSpec.parse("nosuch")
    cfg.methods.append(MethodSpec.parse("average"))
    with pytest.raises(MLFuseError, match="given twice"):
        check_config(cfg)


def test_release_given_as_a_local_file_is_sha_checked(random_weights, shared):
    from mlfuse.bench.runner import resolve_method_weights
    from mlfuse.registry import get_card
    from mlfuse.weights.store import release_path

    card = get_card("mlfuse")
    official = shared / "weights" / "mlfuse_official.pth"
    spec = MethodSpec.parse("mlfuse:paper")
    assert resolve_method_weights(spec, card, {"mlfuse-paper": official}) == official
    assert resolve_method_weights(MethodSpec.parse("mlfuse"), card, {}) == release_path("mlfuse-own-v1")  # packaged
    with pytest.raises(MLFuseError, match="sha256 differs"):
        resolve_method_weights(spec, card, {"mlfuse-paper": random_weights})


def test_cli(dataset, tmp_path, capsys):
    out, cache = tmp_path / "o", tmp_path / "c"
    argv = ["bench", "-d", f"syn={dataset}", "-m", "average", "-m", "dwt", "-o", str(out), "--cache", str(cache),
            "--no-efficiency", "-q", "--profile", "cddfuse"]
    assert main([*argv, "--figure", "syn:1"]) == 1  # the unpaired infrared image is a listed problem
    err = capsys.readouterr().err
    assert "syn: 3 pairs x 2/2 methods (6 fused, 0 from the cache)" in err
    assert (out / "README.md").is_file() and (out / "figures" / "syn_1.png").is_file()
    assert main(argv) == 2 and "already exists" in capsys.readouterr().err
    assert main([*argv, "--overwrite", "--figure", "syn:2"]) == 1
    assert "(0 fused, 6 from the cache)" in capsys.readouterr().err
    assert not (out / "figures" / "syn_1.png").exists()  # a regenerated page keeps no stale figure
    assert main(["bench", "-m", "average", "-o", str(out)]) == 2
    assert "no datasets" in capsys.readouterr().err


def test_efficiency_only_updates_the_page_and_leaves_the_tables(dataset, tmp_path, capsys):
    cfg = _config(dataset, tmp_path, ["average", "max"])
    assert main(["bench", "-d", f"syn={dataset}", "-m", "average", "-o", str(cfg.out), "--efficiency-only", "-q"]) == 2
    assert "no results page to update" in capsys.readouterr().err
    run_bench(cfg, quiet=True)
    tables = {p: p.read_bytes() for p in (cfg.out / "tables").iterdir()}
    head = (cfg.out / "README.md").read_text()
    cfg.isolate, cfg.size, cfg.repeats = False, (16, 16), 1
    rows = runner.update_efficiency(cfg, quiet=True)
    assert [r.label for r in rows] == ["average", "max"] and all(r.cpu_s is not None for r in rows)
    page = (cfg.out / "README.md").read_text()
    assert page.startswith(head.rstrip()) and "## Efficiency" in page and "Measured " in page
    assert "| average | 0 | n/a |" in (cfg.out / "efficiency.md").read_text()
    doc = json.loads((cfg.out / "bench.json").read_text())
    assert len(doc["efficiency"]) == 2 and doc["efficiency_measured"]["machine"]["cpu"]
    assert {p: p.read_bytes() for p in (cfg.out / "tables").iterdir()} == tables
    runner.update_efficiency(cfg, quiet=True)  # a second update replaces the section, never appends one
    assert (cfg.out / "README.md").read_text().count("## Efficiency") == 1


def test_bench_keeps_inf_and_nan_per_image_and_never_crashes(tmp_path):
    """A fused image equal to both (equal) sources has PSNR +inf: the reference code's own value."""
    root = tmp_path / "same"
    rng = np.random.default_rng(2)
    for sub in ("vi", "ir"):
        (root / sub).mkdir(parents=True)
    for name in ("1", "2"):
        img = rng.integers(0, 256, (20, 28), dtype=np.uint8)
        Image.fromarray(img).save(root / "vi" / f"{name}.png")
        Image.fromarray(img if name == "1" else np.roll(img, 2, 1)).save(root / "ir" / f"{name}.png")
    cfg = BenchConfig(methods=[MethodSpec.parse("average")], datasets=[DatasetSpec("same", root)],
                      out=tmp_path / "out", cache=tmp_path / "cache", profiles=["cddfuse"],
                      metrics={"cddfuse": ["PSNR", "EN"]}, efficiency=False, tile=32)
    result = run_bench(cfg, quiet=True)
    psnr = {r["name"]: r["PSNR"] for r in result.datasets[0].reports["cddfuse"].rows}
    assert psnr["1"] == float("inf") and np.isfinite(psnr["2"])
    md = (cfg.out / "tables" / "same.cddfuse.md").read_text()
    assert "(1 excl.)" in md and "left out of that mean" in md
    summary = json.loads((cfg.out / "bench.json").read_text())["datasets"][0]["summary"]["cddfuse"]["average"]
    assert summary["PSNR"]["excluded"] == 1 and summary["PSNR"]["mean"] == pytest.approx(psnr["2"])
    assert "inf" in (cfg.out / "tables" / "same.cddfuse.per_image.csv").read_text()


def test_bench_writes_finished_datasets_when_a_later_one_fails(dataset, tmp_path, monkeypatch):
    cfg = _config(dataset, tmp_path, ["average"])
    cfg.datasets = [DatasetSpec("first", dataset), DatasetSpec("second", dataset)]
    real = runner._evaluate_dataset

    def fail_second(ds, *args, **kwargs):
        if ds.spec.name == "second":
            raise KeyboardInterrupt
        return real(ds, *args, **kwargs)

    monkeypatch.setattr(runner, "_evaluate_dataset", fail_second)
    with pytest.raises(KeyboardInterrupt):
        run_bench(cfg, quiet=True)
    assert (cfg.out / "tables" / "first.cddfuse.md").is_file()
    assert "not completed: the run was interrupted" in (cfg.out / "README.md").read_text()


def test_bench_device_option_takes_cuda_n(capsys):
    from mlfuse.cli.main import build_parser

    assert build_parser().parse_args(["bench", "--device", "cuda:1"]).device == "cuda:1"
    with pytest.raises(SystemExit):
        build_parser().parse_args(["bench", "--device", "cuda:x"])
    assert "invalid device 'cuda:x'" in capsys.readouterr().err


def test_per_megapixel_runs_as_tile_auto_would(random_model):
    """A size whose estimate fits the budget runs untiled; one that does not, in tiles that fit it."""
    from mlfuse.bench.efficiency import measure_scaled

    fits = measure_scaled(random_model, "net", (40, 52), gpu=False)
    tiled = measure_scaled(random_model, "net", (40, 52), budget_mb=1, gpu=False)
    assert fits.mode == "untiled" and fits.cpu_s > 0 and fits.error is None
    assert tiled.mode.startswith("tiled ") and 0 < int(tiled.mode.split()[1]) < 52 and tiled.cpu_s > 0


def test_bench_per_megapixel_table(dataset, tmp_path, random_weights):
    """scaling_sizes adds a per-megapixel table for the networks (not the classical methods) to the page,
    scaling.md/.csv and bench.json; --efficiency-only measures it again."""
    cfg = _config(dataset, tmp_path, ["average", f"net=mlfuse:{random_weights}"])
    cfg.efficiency, cfg.size, cfg.repeats, cfg.threads = True, (16, 16), 1, 1
    cfg.scaling_sizes, cfg.tile_budget_mb = [(24, 32), (64, 80)], 2.0
    result = run_bench(cfg, quiet=True)
    assert [(r.label, r.size) for r in result.scaling] == [("net", (24, 32)), ("net", (64, 80))]
    assert result.scaling[0].mode == "untiled" and result.scaling[1].mode.startswith("tiled ")
    assert all(r.error is None and r.cpu_s > 0 and r.cpu_peak_mb is not None for r in result.scaling)
    page = (cfg.out / "README.md").read_text()
    assert "### Memory and time per megapixel" in page and "a 2 MB tile budget" in page
    table = (cfg.out / "scaling.md").read_text()
    assert "| net | 64×80 | 0.01 | tiled " in table and "average" not in table
    assert len(json.loads((cfg.out / "bench.json").read_text())["scaling"]) == 2
    cfg.scaling_sizes = [(24, 32)]
    runner.update_efficiency(cfg, quiet=True)
    assert len(json.loads((cfg.out / "bench.json").read_text())["scaling"]) == 1
    assert (cfg.out / "README.md").read_text().count("### Memory and time per megapixel") == 1


def test_config_scaling_keys(tmp_path):
    path = tmp_path / "b.toml"
    path.write_text('methods = ["mlfuse"]\nscaling_sizes = ["1000x1000", "2000x2000"]\ntile_budget = 512\n')
    cfg = load_config(path)
    assert cfg.scaling_sizes == [(1000, 1000), (2000, 2000)] and cfg.tile_budget_mb == 512.0
    path.write_text('methods = ["mlfuse"]\ndatasets = [{name = "x", root = "."}]\ntile_budget = 0\n')
    with pytest.raises(MLFuseError, match="tile_budget must be a positive"):
        check_config(load_config(path))
    path.write_text('methods = ["mlfuse"]\nscaling_sizes = ["big"]\n')
    with pytest.raises(MLFuseError, match="size 'big': expected HxW"):
        load_config(path)


def test_bad_colour_or_precision_is_refused_before_any_work(dataset, tmp_path):
    for bad, match in ((dict(color="sepia"), "unknown colour mode 'sepia'"),
                       (dict(precision="fp8"), "unknown precision")):
        with pytest.raises(MLFuseError, match=match):
            check_config(_config(dataset, tmp_path, ["average"], **bad))


def test_reports_show_checkpoint_files_relative_to_the_working_directory(tmp_path, monkeypatch) -> None:
    from mlfuse.bench.runner import shown_weights

    monkeypatch.chdir(tmp_path)
    assert shown_weights(str(tmp_path / "runs" / "x.safetensors")) == "runs/x.safetensors"
    outside = str(tmp_path.parent / "elsewhere.pth")
    assert shown_weights(outside) == outside and shown_weights("paper") == "paper"
