"""Memory and time per megapixel of every network's forward, untiled and tiled (mlfuse.inference.tiling).

Each measurement runs in a fresh subprocess (one thread, seeded random weights at the method's real
size, inference mode): peak RSS is read from ``/proc/self/status`` (VmHWM, reset through
``/proc/self/clear_refs`` after the model and inputs exist), so a figure is what the forward itself
adds. Per method and image size: seconds, seconds per megapixel, peak bytes per input pixel
(untiled) or per window pixel (tiled, the whole-image output buffer subtracted) and, tiled, the
largest difference from the untiled output where both ran. These figures are what the networks'
``TileSpec.bytes_per_pixel`` / ``untiled_bytes_per_pixel`` (used by ``--tile auto`` and the
``--tile off`` memory check) are set from.

    nice -n 10 python benchmarks/bench_memory.py                       # default sizes, all methods
    nice -n 10 python benchmarks/bench_memory.py --methods cddfuse --sizes 256x320 512x640 --tile 128
    nice -n 10 python benchmarks/bench_memory.py --methods cddfuse emma --sizes 1000x1000 --tile auto \
        --no-untiled --append --out benchmarks/results/memory_1mp_cpu.json

``--tile auto`` tiles as ``mlfuse fuse --tile auto`` does with the default budget (untiled where the
estimate fits); tiled rows of the streaming networks also give what their pass cache held (peak bytes
in memory and in files, bytes written and read).

``--pipeline HxW`` instead measures the whole command a user runs, ``mlfuse fuse --tile auto`` on a
synthetic RGB visible + gray infrared PNG pair of that size (default budget), in a child process:
peak RSS (``ru_maxrss``), bytes per pixel and wall time, appended to the file's ``pipeline`` list
(issue 14 asks under 40 bytes a pixel at 48 MP):

    nice -n 5 python benchmarks/bench_memory.py --pipeline 6000x8000
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

METHODS = ("mlfuse", "cddfuse", "sfdfuse", "emma", "smfnet")


def _hwm() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def _child(cfg: dict) -> None:
    import torch

    import mlfuse
    from mlfuse.inference import streaming
    from mlfuse.inference.tiling import DEFAULT_BUDGET_BYTES, choose_tile, plan_windows, tile_spec, tiled_forward

    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = mlfuse.create_model(cfg["method"], weights=None).eval()
    h, w = cfg["size"]
    if cfg["tile"] == "auto":  # as `--tile auto` with the default budget decides
        cfg["tile"] = choose_tile(tile_spec(model), h, w, DEFAULT_BUDGET_BYTES) or 0
    g = torch.Generator().manual_seed(1)
    s, f = torch.rand(1, 1, h, w, generator=g), torch.rand(1, 1, h, w, generator=g)
    with torch.inference_mode():  # warm-up on a small pair (allocator, oneDNN primitives)
        model.fusion_forward(s[..., :64, :64].contiguous(), f[..., :64, :64].contiguous())
    Path("/proc/self/clear_refs").write_text("5")
    base = _hwm()
    t = time.perf_counter()
    held = streaming.CacheStats()  # what a streaming network's pass cache held
    cpu = time.process_time()
    with torch.inference_mode():
        if cfg["tile"]:
            out = tiled_forward(model, s, f, cfg["tile"], keep_blocks=cfg.get("keep_blocks", True), cache_stats=held)
        else:
            out = model.fusion_forward(s, f)
    seconds = time.perf_counter() - t
    cpu = time.process_time() - cpu
    peak = _hwm() - base
    res = {"seconds": seconds, "cpu_seconds": round(cpu, 2), "peak_bytes": peak, "mp": h * w / 1e6}
    if held.stored:
        res["pass_cache"] = {"peak_ram_bytes": held.peak_ram, "peak_file_bytes": held.peak_disk,
                             "written_bytes": held.written, "read_bytes": held.read}
    if cfg["tile"]:
        spec = tile_spec(model)
        wins = plan_windows(h, w, cfg["tile"], spec.halo, spec.align)
        win_px = max((x.bottom - x.top) * (x.right - x.left) for x in wins)
        res.update(tile=cfg["tile"], windows=len(wins), window_pixels=win_px,
                   # the pass cache's memory (bounded by streaming.CACHE_RAM_BYTES) is reported apart
                   bytes_per_window_pixel=round((peak - out.numel() * 4 - res.get("pass_cache", {}).get(
                       "peak_ram_bytes", 0)) / win_px))
    else:
        res["bytes_per_pixel"] = round(peak / (h * w))
    if cfg.get("save"):
        np.save(cfg["save"], out.float().numpy()[0, 0])
    print(json.dumps(res))


def _run(cfg: dict, timeout: float) -> dict:
    proc = subprocess.run([sys.executable, __file__, "--child", json.dumps(cfg)], capture_output=True, text=True,
                          timeout=timeout)
    if proc.returncode:
        return {"error": proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"exit {proc.returncode}"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _synthetic_pair(h: int, w: int, folder: Path) -> tuple[Path, Path]:
    """A smooth RGB scene with texture and a gray 'thermal' image of the same size, as PNG files."""
    from PIL import Image

    rng = np.random.default_rng(0)
    y = np.linspace(0, 1, h, dtype=np.float32)[:, None]
    x = np.linspace(0, 1, w, dtype=np.float32)[None, :]
    vis = np.empty((h, w, 3), np.uint8)
    ir = np.empty((h, w), np.uint8)
    for r in range(0, h, 512):  # in strips: the generator's own memory stays small
        yy = y[r:r + 512]
        base = 0.5 + 0.25 * np.sin(40 * x + 30 * yy) + 0.1 * rng.standard_normal((len(yy), w), np.float32)
        for c in range(3):
            vis[r:r + 512, :, c] = np.clip((base * (0.8 + 0.1 * c)) * 255, 0, 255).astype(np.uint8)
        ir[r:r + 512] = np.clip((0.3 + 0.6 * np.exp(-((x - 0.5) ** 2 + (yy - 0.5) ** 2) * 20)) * 255, 0, 255)
    paths = folder / f"vis_{h}x{w}.png", folder / f"ir_{h}x{w}.png"
    for arr, path in zip((vis, ir), paths, strict=True):
        if not path.exists():
            Image.fromarray(arr).save(path, compress_level=1)
    return paths


def _random_weights(method: str, folder: Path) -> Path:
    """A safetensors file of ``method``'s network with seeded random weights (BatchNorm statistics
    included), for timing and memory where the authors' checkpoint is not at hand."""
    import torch
    from safetensors.torch import save_file

    import mlfuse

    path = folder / f"{method}_random.safetensors"
    if not path.exists():
        torch.manual_seed(0)
        model = mlfuse.create_model(method, weights=None)
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    return path


def _pipeline(size: str, method: str, out_file: Path, timeout: float) -> dict:
    import os

    from mlfuse.runtime import machine

    h, w = (int(v) for v in size.lower().split("x"))
    tmp = Path("/tmp") / "bench_memory_pipeline"
    tmp.mkdir(exist_ok=True)
    vis, ir = _synthetic_pair(h, w, tmp)
    dest = tmp / f"fused_{h}x{w}.png"
    cmd = [sys.executable, "-m", "mlfuse", "fuse", "--model", method, "--vis", str(vis), "--ir", str(ir),
           "-o", str(dest), "--tile", "auto", "--overwrite", "--quiet"]
    if method != "mlfuse":  # no authors' checkpoint here: seeded random weights (same time and memory)
        cmd += ["--weights", str(_random_weights(method, tmp))]
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
    try:
        _, status, usage = os.wait4(proc.pid, 0)
    except BaseException:
        proc.kill()
        raise
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    err = proc.stderr.read().strip()
    row = {"what": f"mlfuse fuse --model {method} --tile auto (default budget) on a {w}x{h} RGB visible + gray "
                   "infrared pair", "size": [h, w], "method": method, "exit": proc.returncode,
           "peak_rss_bytes": usage.ru_maxrss * 1024, "bytes_per_pixel": round(usage.ru_maxrss * 1024 / (h * w), 1),
           "wall_seconds": round(wall, 1), "cpu_seconds": round(usage.ru_utime + usage.ru_stime, 1),
           "weights": "mlfuse default" if method == "mlfuse" else "seeded random (same cost as the authors')",
           "machine": machine(),
           "reproduce": "nice -n 5 python benchmarks/bench_memory.py " + " ".join(sys.argv[1:])}
    if proc.returncode:
        row["error"] = err.splitlines()[-1] if err else f"exit {proc.returncode}"
    data = json.loads(out_file.read_text()) if out_file.exists() else {"threads": 1, "rows": []}
    data.setdefault("pipeline", []).append(row)
    out_file.write_text(json.dumps(data, indent=1))
    return row


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--methods", nargs="+", default=list(METHODS))
    p.add_argument("--sizes", nargs="+", default=["256x320", "512x640"], help="HxW")
    p.add_argument("--tile", default="128", help="tile size, or auto (the default budget's choice)")
    p.add_argument("--no-untiled", action="store_true", help="tiled only")
    p.add_argument("--recompute", action="store_true",
                   help="tiled passes recompute from the input instead of keeping block outputs (the reference)")
    p.add_argument("--timeout", type=float, default=3600)
    p.add_argument("--out", default=str(Path(__file__).parent / "results" / "memory_cpu.json"))
    p.add_argument("--no-tiled", action="store_true", help="untiled only")
    p.add_argument("--append", action="store_true", help="add rows to an existing --out file")
    p.add_argument("--pipeline", metavar="HxW", help="measure `mlfuse fuse --tile auto` at this size instead")
    p.add_argument("--method", default="mlfuse", help="with --pipeline: the model fused")
    p.add_argument("--child")
    args = p.parse_args()
    if args.child:
        _child(json.loads(args.child))
        return
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    if args.pipeline:
        print(json.dumps(_pipeline(args.pipeline, args.method, Path(args.out), args.timeout)))
        return
    from mlfuse.runtime import machine

    rows = json.loads(Path(args.out).read_text())["rows"] if args.append and Path(args.out).exists() else []
    tmp = Path("/tmp") / f"bench_memory_{int(time.time())}"
    tmp.mkdir(exist_ok=True)
    for method in args.methods:
        for size in args.sizes:
            h, w = (int(v) for v in size.lower().split("x"))
            ref = tmp / f"{method}_{size}_off.npy"
            row = {"method": method, "size": [h, w]}
            tile = args.tile if args.tile == "auto" else int(args.tile)
            row["untiled"] = {} if args.no_untiled else _run(
                {"method": method, "size": [h, w], "tile": 0, "save": str(ref)}, args.timeout)
            tiled_path = tmp / f"{method}_{size}_tiled.npy"
            row["tiled"] = {} if args.no_tiled else _run(
                {"method": method, "size": [h, w], "tile": tile, "save": str(tiled_path),
                 "keep_blocks": not args.recompute}, args.timeout)
            if ref.exists() and tiled_path.exists():
                row["tiled"]["max_abs_diff"] = float(np.abs(np.load(ref) - np.load(tiled_path)).max())
            for key in ("untiled", "tiled"):
                if "seconds" in row[key]:
                    row[key]["seconds_per_mp"] = round(row[key]["seconds"] / row[key]["mp"], 2)
            row["machine"] = machine()
            row["reproduce"] = "nice -n 10 python benchmarks/bench_memory.py " + " ".join(sys.argv[1:])
            rows.append(row)
            print(json.dumps(row), flush=True)
            result = {"threads": 1, "rows": rows}  # written after every row: a long run keeps what it measured
            Path(args.out).parent.mkdir(parents=True, exist_ok=True)
            Path(args.out).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
