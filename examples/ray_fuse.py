"""Fuse a folder of pairs on a Ray cluster with Ray Data (a recipe: Ray is not an mlfuse dependency).

    pip install "ray[data]"
    python examples/ray_fuse.py --root survey -o fused --workers 8 [--gpus-per-worker 1] [--model mlfuse]
    mlfuse fuse --root survey -o fused --merge-manifests      # what is missing, as for torchrun shards

Where ``torchrun``/``srun`` give every process a fixed shard (``mlfuse fuse`` under a launcher, see the
README), Ray Data hands pairs out dynamically to a pool of ``--workers`` actors, each building the model
once on its own device. Each actor does the same unit of work as a shard, :func:`mlfuse.inference.shard.fuse_one`:
atomic output, one JSON line per pair in its own manifest ``OUT/.mlfuse-shards/ray-<id>.jsonl``, so
``--merge-manifests`` reports over Ray and torchrun runs alike, and ``--skip-existing`` (on by default
here) makes a rerun fuse only what is missing. Outputs are byte-identical to ``mlfuse fuse`` on the same
device type.

Tested by ``tests/test_shard.py`` when ``ray`` is installed (skipped otherwise).
"""

from __future__ import annotations

import argparse
import uuid
from pathlib import Path

from mlfuse.cli.fuse import source_dirs
from mlfuse.data.pairs import Pair, pair_folders
from mlfuse.inference.shard import MANIFEST_DIR, Manifest, fuse_one, merge_manifests
from mlfuse.registry import create_model
from mlfuse.runtime import resolve_device


class FuseWorker:
    """One Ray actor: the model, built once on this actor's device, and its own manifest."""

    def __init__(self, out_dir: str, model: str, weights: str, device: str, skip_existing: bool) -> None:
        self.out_dir = Path(out_dir)
        self.model = create_model(model, weights=weights, device=resolve_device(device))
        self.manifest = Manifest(self.out_dir / MANIFEST_DIR / f"ray-{uuid.uuid4().hex[:12]}.jsonl")
        self.skip_existing = skip_existing

    def __call__(self, batch: dict) -> dict:
        statuses = []
        for name, s, f in zip(batch["name"], batch["structural"], batch["functional"], strict=True):
            record = fuse_one(self.model, Pair(str(name), Path(s), Path(f)), self.out_dir, self.manifest,
                              skip_existing=self.skip_existing)
            statuses.append(record["status"])
        return {"name": list(batch["name"]), "status": statuses}


def main(argv: list[str] | None = None) -> int:
    import ray

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--root", required=True)
    p.add_argument("--subdirs", default=None)
    p.add_argument("-o", "--output", required=True)
    p.add_argument("--model", default="mlfuse")
    p.add_argument("--weights", default="default")
    p.add_argument("--workers", type=int, default=2, help="actors (one model each)")
    p.add_argument("--gpus-per-worker", type=float, default=0, help="0: CPU actors")
    p.add_argument("--batch-size", type=int, default=4, help="pairs handed to an actor at a time")
    p.add_argument("--no-skip-existing", dest="skip_existing", action="store_false")
    args = p.parse_args(argv)
    s_dir, f_dir = source_dirs(argparse.Namespace(root=args.root, subdirs=args.subdirs, structural=None,
                                                  functional=None))
    pairs = pair_folders(s_dir, f_dir).pairs
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    device = "cuda" if args.gpus_per_worker else "cpu"
    ds = ray.data.from_items([{"name": q.name, "structural": str(q.structural), "functional": str(q.functional)}
                              for q in pairs])
    done = ds.map_batches(FuseWorker, batch_size=args.batch_size, concurrency=args.workers,
                          num_gpus=args.gpus_per_worker, batch_format="numpy",
                          fn_constructor_kwargs={"out_dir": str(out), "model": args.model, "weights": args.weights,
                                                 "device": device, "skip_existing": args.skip_existing})
    statuses = [row["status"] for row in done.take_all()]
    report = merge_manifests(pairs, out)
    print(f"ray: {statuses.count('written')} written, {statuses.count('skipped')} skipped, "
          f"{statuses.count('failed')} failed")
    for line in report.summary(out):
        print(line)
    return 0 if report.complete else 1


if __name__ == "__main__":
    raise SystemExit(main())
