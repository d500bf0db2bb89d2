"""Sharded folder fusion: one ``mlfuse fuse`` folder run split over processes, GPUs or machines.

Every process lists the same pairs (:func:`mlfuse.data.pairs.pair_folders`: identical stems, natural
order) and takes pairs ``K, K+N, K+2N, ...`` (shard ``K`` of ``N``, 0-based like ``RANK``): the split
depends only on the pair list, shards differ by at most one pair, and no process talks to another.
``K/N`` comes from ``--shard K/N``, else from the launcher's environment
(:meth:`mlfuse.train.distributed.DistInfo.from_env`: torchrun's ``RANK``/``WORLD_SIZE``, an srun
step's ``SLURM_PROCID``/``SLURM_NTASKS``). Each shard runs on its own device (``cuda:LOCAL_RANK``
where there are GPUs), writes every output atomically (:func:`mlfuse.data.io.write_image`) and appends
one JSON line per pair to its own manifest ``OUT/.mlfuse-shards/shard-K-of-N.jsonl``:

    {"pair": "00012", "output": "00012.png", "status": "written", "seconds": 0.41}

A record is one ``write(2)`` on an ``O_APPEND`` descriptor, so a killed process leaves at most one
torn last line, which readers skip and the next launch terminates. No process group is joined: a dead
rank cannot hang the others. Relaunched with ``--skip-existing``, a shard leaves finished outputs
alone and fuses only the rest. :func:`merge_manifests` (``--merge-manifests``, or rank 0 once the
other shards of its launch have finished) compares the pair list with the outputs on disk and the
manifests, and lists what is missing.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn
from tqdm import tqdm

from mlfuse.data.io import atomic_write, write_image
from mlfuse.data.pairs import Pair
from mlfuse.errors import MLFuseError
from mlfuse.inference.fuse import FuseOptions, fuse_pair
from mlfuse.progress import bar_disabled
from mlfuse.runtime import resolve_device
from mlfuse.train.distributed import DistInfo

#: manifests live in this hidden sub-folder of the output folder (image listings skip it)
MANIFEST_DIR = ".mlfuse-shards"
#: test hook: ``K:M`` makes shard K kill itself (SIGKILL) after M written outputs, to prove resumption
KILL_HOOK = "MLFUSE_TEST_SHARD_KILL"
_SHARD_FILE = re.compile(r"shard-(\d+)-of-(\d+)\.jsonl")


@dataclass(frozen=True)
class Shard:
    """Shard ``index`` of ``count`` (0-based); ``local_rank`` picks the GPU on a machine;
    ``launch`` names one launch of all shards (torchrun's run id, a SLURM job step), if known."""

    index: int = 0
    count: int = 1
    local_rank: int = 0
    launch: str | None = None

    @property
    def label(self) -> str:
        return f"{self.index}/{self.count}"

    def select(self, pairs: list[Pair]) -> list[Pair]:
        """This shard's pairs of the (sorted) pair list: every ``count``-th from ``index``."""
        return pairs[self.index::self.count]


def parse_shard(text: str) -> tuple[int, int]:
    """``"K/N"`` -> ``(K, N)`` with ``0 <= K < N``."""
    m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
    if not m:
        raise MLFuseError(f"--shard {text}: expected K/N, e.g. 0/4 (shard K of N, counted from 0)")
    k, n = int(m[1]), int(m[2])
    if n < 1 or k >= n:
        raise MLFuseError(f"--shard {text}: K counts from 0, so K must be 0..{max(n - 1, 0)} for N={n}")
    return k, n


def resolve_shard(option: str | None = None, environ: Mapping[str, str] | None = None) -> Shard:
    """The shard this process runs: ``--shard K/N`` if given, else the launcher's environment
    (a plain run is shard 0 of 1)."""
    env = os.environ if environ is None else environ
    launch = env.get("TORCHELASTIC_RUN_ID") or env.get("MLFUSE_LAUNCH_ID")
    if not launch and "SLURM_JOB_ID" in env and ("SLURM_STEP_ID" in env or "SLURM_STEPID" in env):
        launch = f"slurm-{env['SLURM_JOB_ID']}.{env.get('SLURM_STEP_ID', env.get('SLURM_STEPID'))}"
    if option is not None:
        k, n = parse_shard(option)
        local = env.get("LOCAL_RANK", env.get("SLURM_LOCALID"))
        return Shard(k, n, int(local) if local and local.isdigit() else k, env.get("MLFUSE_LAUNCH_ID"))
    info = DistInfo.from_env(env)
    return Shard(info.rank, info.world_size, info.local_rank, launch if info.world_size > 1 else None)


def shard_device(requested: str, shard: Shard) -> torch.device:
    """``cuda:LOCAL_RANK`` (modulo the GPUs present) for ``auto``/``cuda`` where CUDA is available,
    otherwise what :func:`mlfuse.runtime.resolve_device` gives (CPU on a machine without GPUs)."""
    if requested in ("auto", "cuda") and torch.cuda.is_available():
        index = shard.local_rank % torch.cuda.device_count()
        torch.cuda.set_device(index)
        return torch.device("cuda", index)
    return resolve_device(requested)


def manifest_path(out_dir: Path, shard: Shard) -> Path:
    return Path(out_dir) / MANIFEST_DIR / f"shard-{shard.index}-of-{shard.count}.jsonl"


class Manifest:
    """Append-only JSON-lines log of one shard. Each record is a single ``write`` to an
    ``O_APPEND`` descriptor: a kill can tear only the line being written, never an earlier one."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
            size = os.fstat(self._fd).st_size
            if size:  # a torn last line from a killed run: end it, so the next record starts clean
                with open(self.path, "rb") as fh:
                    fh.seek(size - 1)
                    if fh.read(1) != b"\n":
                        os.write(self._fd, b"\n")
        except OSError as exc:
            raise MLFuseError(f"{self.path}: cannot write the shard manifest ({exc.strerror or exc})") from None

    def append(self, record: dict) -> None:
        line = json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n"
        try:
            os.write(self._fd, line.encode("utf-8"))
        except OSError as exc:
            raise MLFuseError(f"{self.path}: cannot append to the shard manifest ({exc.strerror or exc})") from None

    def close(self) -> None:
        try:
            os.fsync(self._fd)
        except OSError:
            pass
        os.close(self._fd)


def read_manifest(path: Path) -> tuple[list[dict], int]:
    """Records of one manifest and the number of unreadable (torn) lines skipped."""
    records, torn = [], 0
    with open(path, "rb") as fh:
        for raw in fh:
            if not raw.strip():
                continue
            try:
                rec = json.loads(raw)
            except ValueError:
                torn += 1
                continue
            if isinstance(rec, dict):
                records.append(rec)
            else:
                torn += 1
    return records, torn


@dataclass
class ShardReport:
    """What one shard did in this launch."""

    shard: Shard
    pairs: int = 0
    written: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    manifest: Path | None = None


def fuse_one(model: nn.Module, pair: Pair, out_dir: Path, manifest: Manifest, *, ext: str = "png",
             overwrite: bool = False, skip_existing: bool = False, options: FuseOptions | None = None,
             **changes: object) -> dict:
    """Fuse one pair into ``out_dir/<name>.<ext>`` (atomically) and append its record to ``manifest``;
    returns the record (``status``: written, skipped or failed with ``error``). Under :func:`run_shard`
    a SIGTERM/SIGINT that arrives while the output and its record are written takes effect after both,
    so an output never exists without its record. The unit of work for any engine (see
    ``examples/ray_fuse.py``)."""
    dest = Path(out_dir) / f"{pair.name}.{ext.lstrip('.')}"
    record: dict = {"pair": pair.name, "output": dest.name}
    start = time.perf_counter()
    if skip_existing and dest.exists():
        record.update(status="skipped", seconds=0.0)
        manifest.append(record)
        return record
    try:
        if dest.exists() and not overwrite:
            raise MLFuseError(f"{dest}: already exists (pass --overwrite to replace it, "
                              "or --skip-existing to resume)")
        fused = fuse_pair(model, pair.structural, pair.functional, options, **changes)
        with _STOP.held():  # a stop request lands after the output *and* its record
            write_image(fused, dest, overwrite=overwrite)
            record.update(status="written", seconds=round(time.perf_counter() - start, 4))
            manifest.append(record)
    except MLFuseError as exc:
        if record.get("status") == "written":  # the output exists; only its record could not be logged
            raise
        record.update(status="failed", seconds=round(time.perf_counter() - start, 4), error=str(exc))
        manifest.append(record)
    return record


def _kill_hook(shard: Shard) -> int | None:
    """After how many written outputs this shard kills itself (``MLFUSE_TEST_SHARD_KILL=K:M``), if any."""
    spec = os.environ.get(KILL_HOOK, "")
    m = re.fullmatch(r"(\d+):(\d+)", spec)
    return int(m[2]) if m and int(m[1]) == shard.index else None


class _StopGuard:
    """SIGTERM/SIGINT handling for a shard run. Outside a held section a stop request ends the run at
    once (SystemExit 128+signum, KeyboardInterrupt), unwinding through clean-ups (no temp file is left);
    inside one (an output and its record) it is held until the section ends. A flag, not a signal mask:
    Python runs handlers in the main thread whichever thread (torch's among them) took the signal."""

    def __init__(self) -> None:
        self.depth = 0
        self.pending: int | None = None

    def handler(self, signum: int, frame: object) -> None:
        if self.depth:
            self.pending = signum
            return
        self.stop(signum)

    @staticmethod
    def stop(signum: int) -> None:
        if signum == signal.SIGINT:
            raise KeyboardInterrupt
        raise SystemExit(128 + signum)

    @contextmanager
    def held(self) -> Iterator[None]:
        self.depth += 1
        try:
            yield
        finally:
            self.depth -= 1
            if not self.depth and self.pending is not None:
                signum, self.pending = self.pending, None
                self.stop(signum)


_STOP = _StopGuard()


def run_shard(model: nn.Module, pairs: list[Pair], out_dir: str | Path, shard: Shard, *, ext: str = "png",
              overwrite: bool = False, skip_existing: bool = False, quiet: bool = False,
              report: Callable[[str], None] | None = None, options: FuseOptions | None = None,
              **changes: object) -> ShardReport:
    """Fuse this shard's pairs of ``pairs`` into ``out_dir`` (``<name>.<ext>``), one manifest record
    per pair. A bad pair is reported and the rest go on, as in :func:`mlfuse.inference.fuse.fuse_folder`.
    ``options``: a :class:`~mlfuse.inference.fuse.FuseOptions`, or its fields as keywords."""
    opt = FuseOptions.of(options, **changes)
    out_dir = Path(out_dir)
    mine = shard.select(pairs)
    result = ShardReport(shard, pairs=len(mine), manifest=manifest_path(out_dir, shard))
    say = report or (lambda line: None)
    kill_after = _kill_hook(shard)
    manifest = Manifest(result.manifest)
    stops = (signal.SIGTERM, signal.SIGINT)
    previous = {sig: signal.getsignal(sig) for sig in stops}
    in_main = _in_main_thread()
    if in_main:  # a launcher stopping the job sends SIGTERM: stop between files, never inside one
        for sig in stops:
            signal.signal(sig, _STOP.handler)
    try:
        manifest.append({"event": "start", "shard": shard.index, "of": shard.count, "launch": shard.launch,
                         "pairs": len(mine), "total": len(pairs), "host": socket.gethostname(),
                         "pid": os.getpid(), "time": time.time()})
        for pair in tqdm(mine, desc=f"fuse {shard.label}", unit="pair", disable=bar_disabled(quiet)):
            record = fuse_one(model, pair, out_dir, manifest, ext=ext, overwrite=overwrite,
                              skip_existing=skip_existing, options=opt)
            if record["status"] == "skipped":
                result.skipped.append(pair.name)
                continue
            if record["status"] == "failed":
                result.failed.append((pair.name, record["error"]))
                say(f"FAILED {pair.name}: {record['error']}")
                continue
            result.written.append(pair.name)
            if kill_after is not None and len(result.written) >= kill_after:
                os.kill(os.getpid(), getattr(signal, "SIGKILL", signal.SIGTERM))
        manifest.append({"event": "done", "shard": shard.index, "of": shard.count, "launch": shard.launch,
                         "written": len(result.written), "skipped": len(result.skipped),
                         "failed": len(result.failed), "time": time.time()})
    finally:
        manifest.close()
        if in_main:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
    return result


def _in_main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


def _manifests(out_dir: Path) -> Iterator[tuple[int | None, int | None, Path]]:
    """``(K, N, path)`` of every manifest under ``out_dir``; ``K, N`` are None for a manifest that is
    not a shard's (another engine's worker, e.g. ``examples/ray_fuse.py``)."""
    folder = Path(out_dir) / MANIFEST_DIR
    if not folder.is_dir():
        return
    for p in sorted(folder.glob("*.jsonl")):
        m = _SHARD_FILE.fullmatch(p.name)
        yield (int(m[1]), int(m[2]), p) if m else (None, None, p)


def launch_finished(out_dir: str | Path, shard: Shard) -> set[int]:
    """Shards of ``shard.count`` whose manifest has a ``done`` record of launch ``shard.launch``."""
    done = set()
    for k, n, path in _manifests(Path(out_dir)):
        if n != shard.count:
            continue
        records, _ = read_manifest(path)
        if any(r.get("event") == "done" and r.get("launch") == shard.launch for r in records):
            done.add(k)
    return done


def wait_for_launch(out_dir: str | Path, shard: Shard, stall_s: float = 600.0, poll_s: float = 0.5,
                    say: Callable[[str], None] | None = None) -> bool:
    """Rank 0's end-of-run wait, without a process group: poll until every shard of this launch has
    logged ``done``. Gives up (False) once no manifest has grown for ``stall_s`` seconds (a rank that
    died outside a launcher that stops the others), so it never hangs forever."""
    if shard.launch is None or shard.count == 1:
        return shard.count == 1
    folder = Path(out_dir) / MANIFEST_DIR
    last_change, last_sizes = time.monotonic(), None
    told = False
    while True:
        if len(launch_finished(out_dir, shard)) == shard.count:
            return True
        sizes = {p.name: p.stat().st_size for p in folder.glob("shard-*.jsonl")} if folder.is_dir() else {}
        if sizes != last_sizes:
            last_sizes, last_change = sizes, time.monotonic()
        elif time.monotonic() - last_change > stall_s:
            return False
        if not told and say is not None:
            say(f"shard {shard.label} done; waiting for the other shards to finish before the merged report")
            told = True
        time.sleep(poll_s)


@dataclass
class MergeReport:
    """The whole pair list against the outputs on disk and every shard's manifest."""

    total: int = 0
    present: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)  # missing pairs whose last record failed
    written_by: dict[str, list[str]] = field(default_factory=dict)  # pair -> "K/N" of each write
    shards: list[str] = field(default_factory=list)
    torn_lines: int = 0
    seconds: float = 0.0  # fusion time summed over the written records
    missing_list: Path | None = None

    @property
    def complete(self) -> bool:
        return not self.missing

    def summary(self, out_dir: Path, limit: int = 20) -> list[str]:
        if not self.shards:
            logged = "no manifests"
        else:
            names = f": {', '.join(self.shards)}" if len(self.shards) <= 8 else ""
            logged = f"{len(self.shards)} manifest(s){names}; {self.seconds:.1f} s of fusion logged"
        lines = [f"{len(self.present)} of {self.total} pairs present in {out_dir} ({logged})"]
        if self.torn_lines:
            lines.append(f"{self.torn_lines} torn manifest line(s) skipped (a killed process)")
        if self.missing:
            lines.append(f"{len(self.missing)} missing"
                         + (f" ({len(self.failed)} failed)" if self.failed else "")
                         + (f"; full list in {self.missing_list}" if self.missing_list else "") + ":")
            for name in self.missing[:limit]:
                lines.append(f"  missing {name}" + (f": {self.failed[name]}" if name in self.failed else ""))
            if len(self.missing) > limit:
                lines.append(f"  ... and {len(self.missing) - limit} more")
            lines.append("rerun the same command with --skip-existing to fuse only these")
        return lines


def merge_manifests(pairs: list[Pair], out_dir: str | Path, *, ext: str = "png") -> MergeReport:
    """Merge every shard manifest under ``out_dir`` with the outputs on disk. A pair counts as present
    when its output file exists; the missing ones are also written, one name a line, to
    ``OUT/.mlfuse-shards/missing.txt`` (atomically; removed when nothing is missing)."""
    out_dir = Path(out_dir)
    result = MergeReport(total=len(pairs))
    last_error: dict[str, str] = {}
    for k, n, path in _manifests(out_dir):
        label = path.stem if k is None else f"{k}/{n}"
        result.shards.append(label)
        records, torn = read_manifest(path)
        result.torn_lines += torn
        for rec in records:
            name, status = rec.get("pair"), rec.get("status")
            if not isinstance(name, str):
                continue
            if status == "written":
                result.written_by.setdefault(name, []).append(label)
                result.seconds += float(rec.get("seconds") or 0.0)
                last_error.pop(name, None)
            elif status == "failed":
                last_error[name] = str(rec.get("error", "failed"))
    for pair in pairs:
        if (out_dir / f"{pair.name}.{ext.lstrip('.')}").exists():
            result.present.append(pair.name)
        else:
            result.missing.append(pair.name)
            if pair.name in last_error:
                result.failed[pair.name] = last_error[pair.name]
    listing = out_dir / MANIFEST_DIR / "missing.txt"
    if result.missing:
        text = "".join(f"{name}\n" for name in result.missing).encode("utf-8")
        result.missing_list = atomic_write(listing, lambda fh: fh.write(text), overwrite=True)
    elif listing.exists():
        listing.unlink()
    return result
