"""The one training loop every recipe runs: seeded, resumable to the bit, data-parallel, logged.

* Order of samples: a permutation seeded by ``seed + epoch`` (drop_last), cut into global batches;
  rank r of W takes the r-th slice of each. Item randomness is ``item_rng(seed, epoch, index)``.
* Checkpoints (``last.pt``: model, optimisers, schedulers, scaler, position, running sums) are
  written atomically at every epoch end and every ``checkpoint_every`` iterations; ``resume=True``
  continues from the exact iteration, so a run killed at any point and resumed ends with the
  weights of an uninterrupted run.
* Logs: ``steps.csv`` (every iteration), ``epochs.csv``, ``val.csv`` always; TensorBoard when the
  ``tensorboard`` package is installed. Validation and sample fusions on held-out pairs every N epochs.
  Only rank 0 writes.
"""

from __future__ import annotations

import csv
import json
import shutil
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from mlfuse.data.io import atomic_write, write_image
from mlfuse.errors import MLFuseError
from mlfuse.progress import bar_disabled
from mlfuse.runtime import resolve_device, training_precision
from mlfuse.train.config import GENERIC_DEFAULTS, Config
from mlfuse.train.distributed import (
    DistInfo,
    all_mean,
    any_rank,
    barrier,
    cleanup,
    convert_batchnorm,
    device_for_rank,
    init_distributed,
)
from mlfuse.train.recipe import Recipe, unwrap

CHECKPOINT = "last.pt"
WEIGHTS = "model.safetensors"


@dataclass
class TrainResult:
    out_dir: Path
    epochs_done: int
    steps: int
    seconds: float
    last_losses: dict[str, float] = field(default_factory=dict)
    last_val: dict[str, float] = field(default_factory=dict)
    stopped: str = ""  # why the run stopped before its last epoch ("max_steps", "max_seconds", "SIGTERM"), else ""


class _EarlyStop:
    """Why a run should stop after the step in hand, checkpointed so that ``--resume`` continues it: its
    ``max_steps`` reached, this invocation's ``max_seconds`` spent, or a SIGTERM received (a batch
    scheduler's pre-emption, a time-limited job or session ending). The SIGTERM handler is installed for
    the loop only, and only from the main thread (Python delivers signals there); it just sets a flag, so a
    step is never cut in half, and the previous handler is restored after."""

    def __init__(self, max_steps: int, max_seconds: float) -> None:
        self.max_steps, self.max_seconds = int(max_steps), float(max_seconds)
        self.start = time.perf_counter()
        self.signalled = False
        self._previous: Any = None

    def __enter__(self) -> _EarlyStop:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGTERM, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)

    def _handle(self, signum: int, frame: object) -> None:
        self.signalled = True

    def reason(self, step: int) -> str:
        if self.signalled:
            return "SIGTERM"
        if self.max_steps and step >= self.max_steps:
            return "max_steps"
        if self.max_seconds and time.perf_counter() - self.start >= self.max_seconds:
            return "max_seconds"
        return ""


def _collate(items: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    return {k: torch.stack([it[k] for it in items]) for k in items[0]}


class _Batches(torch.utils.data.Sampler):
    """Index lists of one epoch for one rank, from a given iteration on."""

    def __init__(self, order: list[int], batch: int, global_batch: int, rank: int, start: int, steps: int) -> None:
        self.lists = [order[i * global_batch + rank * batch: i * global_batch + (rank + 1) * batch]
                      for i in range(start, steps)]

    def __iter__(self):
        return iter(self.lists)

    def __len__(self) -> int:
        return len(self.lists)


class Callback:
    """Hooks a caller installs on a :class:`Trainer` (``callbacks=[...]``); each default does nothing.
    ``state`` is the run's position (``epoch``, ``iteration``, ``step``, running loss sums), read-only
    by convention. The resume tests install one that kills the process after a given step."""

    def on_step_end(self, trainer: Trainer, state: dict[str, Any]) -> None:
        """After an optimiser step is taken and logged, before its checkpoint (if one is due)."""

    def on_epoch_end(self, trainer: Trainer, state: dict[str, Any]) -> None:
        """After an epoch's schedulers, logs, validation and checkpoint."""


@dataclass
class _Setup:
    """What a run is made of once :meth:`Trainer._prepare` and :meth:`Trainer._build` have checked and built it."""

    info: DistInfo
    device: torch.device
    out: Path
    dataset: Any
    n: int
    batch: int
    global_batch: int
    steps_per_epoch: int
    checkpoint: dict[str, Any] | None = None
    model: nn.Module | None = None  # the module trained (DDP-wrapped under torchrun)
    net: nn.Module | None = None  # the network itself
    optimizers: list = field(default_factory=list)
    schedulers: list = field(default_factory=list)
    scaler: Any = None
    amp_dtype: torch.dtype | None = None
    use_scaler: bool = False


class Trainer:
    """Runs ``recipe`` with ``cfg``. ``resume``: continue the run in ``cfg.out_dir``. ``callbacks``:
    :class:`Callback` objects called after each step and epoch.

    A run is: :meth:`_prepare` (every check before anything is written), :meth:`_build` (model,
    optimisers, schedulers, scaler), :meth:`_restore` (a resumed run's exact position), then
    :meth:`_train`: per epoch :meth:`_train_step` for each batch and :meth:`_end_epoch`, and at the
    end :meth:`_finalize` (the recipe's last step, the final weights).
    """

    def __init__(self, recipe: Recipe, cfg: Config, *, resume: bool = False, quiet: bool = False,
                 callbacks: list[Callback] | tuple[Callback, ...] = ()) -> None:
        self.recipe, self.cfg, self.resume, self.quiet = recipe, cfg, resume, quiet
        self.callbacks = list(callbacks)

    # --- setup -----------------------------------------------------------------------------------
    def run(self) -> TrainResult:
        cfg = self.cfg
        if cfg.threads:
            torch.set_num_threads(int(cfg.threads))
        device = resolve_device(self.cfg.device)
        info = init_distributed(device)
        try:
            return self._run(info, device_for_rank(device, info))
        finally:
            cleanup(info)

    def _run(self, info: DistInfo, device: torch.device) -> TrainResult:
        setup = self._prepare(info, device)
        self._build(setup)
        state = self._restore(setup)
        barrier(info)
        out = setup.out
        created = None  # the outermost folder this run makes (runs/ of runs/try too, if it is new)
        if info.is_main:
            for folder in (out.absolute(), *out.absolute().parents):
                if folder.exists():
                    break
                created = folder
            out.mkdir(parents=True, exist_ok=True)
        try:
            return self._train(setup, state)
        except BaseException:
            if created is not None and not (out / CHECKPOINT).exists():  # failed before its first checkpoint
                shutil.rmtree(created, ignore_errors=True)
            raise

    def _prepare(self, info: DistInfo, device: torch.device) -> _Setup:
        """Everything is checked before anything is written: a run that cannot start leaves nothing behind."""
        cfg, recipe = self.cfg, self.recipe
        out = Path(cfg.out_dir)
        ckpt_path = out / CHECKPOINT
        if self.resume and not ckpt_path.is_file():
            raise MLFuseError(f"{out}: nothing to resume (no {CHECKPOINT})")
        if not self.resume and out.exists():
            if ckpt_path.exists():
                raise MLFuseError(f"{out}: holds a training run already; pass --resume to continue it "
                                  "or choose another --out")
            if not out.is_dir() or any(out.iterdir()):
                raise MLFuseError(f"{out}: {'not empty' if out.is_dir() else 'not a folder'}; a new run needs a new "
                                  "or empty --out folder (--resume continues a run from its last.pt)")
        dataset = recipe.train_dataset(cfg)
        n = len(dataset)
        global_batch = self._global_batch(n, info)
        _check_crop(dataset)
        if cfg.val:  # a bad validation set or profile is found now, not after the first epochs
            from mlfuse.metrics.profiles import get_profile

            get_profile(str(cfg.val_profile))
            validation_pairs(cfg)
        ck = read_checkpoint(ckpt_path, recipe.name, device) if self.resume else None
        if ck is not None:
            check_resume_settings(ck["config"], cfg, ckpt_path, defaults={**GENERIC_DEFAULTS, **recipe.defaults})
        return _Setup(info, device, out, dataset, n, global_batch // info.world_size, global_batch,
                      n // global_batch, ck)

    def _build(self, setup: _Setup) -> None:
        """The seeded model (DDP-wrapped under torchrun), its optimisers, schedulers and gradient scaler."""
        cfg, recipe, info, device = self.cfg, self.recipe, setup.info, setup.device
        torch.manual_seed(int(cfg.seed))
        model = recipe.build(cfg)  # carries its card
        model.to(device).train()
        if info.enabled:
            model = convert_batchnorm(model, device)
            model = nn.parallel.DistributedDataParallel(
                model, device_ids=[device.index] if device.type == "cuda" else None,
                find_unused_parameters=recipe.find_unused_parameters)
        setup.model, setup.net = model, unwrap(model)
        setup.optimizers = recipe.optimizers(setup.net, cfg)
        setup.schedulers = recipe.schedulers(setup.optimizers, cfg)
        setup.amp_dtype, setup.use_scaler = training_precision(str(cfg.precision), device)
        setup.scaler = torch.amp.GradScaler(device.type, enabled=setup.use_scaler)

    def _restore(self, setup: _Setup) -> dict[str, Any]:
        """The run's position: a fresh one, or the resumed checkpoint's with every state loaded into place."""
        state = {"epoch": 0, "iteration": 0, "step": 0, "sums": {}, "count": 0, "seconds": 0.0}
        ck = setup.checkpoint
        if ck is None:
            return state
        try:
            setup.net.load_state_dict(ck["model"])
            for o, s in zip(setup.optimizers, ck["optimizers"], strict=True):
                o.load_state_dict(s)
            for sch, s in zip(setup.schedulers, ck["schedulers"], strict=True):
                sch.load_state_dict(s)
            setup.scaler.load_state_dict(ck["scaler"])
        except (RuntimeError, ValueError, KeyError, TypeError) as exc:
            raise MLFuseError(f"{setup.out / CHECKPOINT}: does not fit this run's model or optimisers "
                              f"({str(exc).strip().splitlines()[0][:200]})") from None
        setup.checkpoint = None  # the tensors now live in the model and optimisers
        return ck["state"]

    def _global_batch(self, n: int, info: DistInfo) -> int:
        """The configured global batch, capped (with a one-line notice) when the set is smaller than one batch."""
        cfg = self.cfg
        global_batch = int(cfg.batch_size)
        if n < global_batch:
            capped = n - n % info.world_size
            if capped == 0:
                raise MLFuseError(f"the training set has {n} item(s), fewer than the {info.world_size} processes")
            if info.is_main:  # shown under --quiet too: the run differs from its settings
                print(f"note: the training set has {n} items, fewer than one batch of {global_batch}: "
                      f"training with batch size {capped}", file=sys.stderr)
            cfg.batch_size = global_batch = capped  # what the run uses is what config.json records
        if global_batch % info.world_size:
            raise MLFuseError(f"batch_size {global_batch} must be divisible by the {info.world_size} processes")
        return global_batch

    # --- the loop --------------------------------------------------------------------------------
    def _save_checkpoint(self, setup: _Setup, state: dict[str, Any]) -> None:
        if not setup.info.is_main:
            return
        ck = {"model": setup.net.state_dict(), "optimizers": [o.state_dict() for o in setup.optimizers],
              "schedulers": [s.state_dict() for s in setup.schedulers], "scaler": setup.scaler.state_dict(),
              "state": state, "config": json.loads(json.dumps(self.cfg)), "recipe": self.recipe.name}
        atomic_write(setup.out / CHECKPOINT, lambda fh: torch.save(ck, fh), overwrite=True)

    def _train(self, setup: _Setup, state: dict[str, Any]) -> TrainResult:
        cfg, recipe, info = self.cfg, self.recipe, setup.info
        if info.is_main:
            atomic_write(setup.out / "config.json", lambda fh: fh.write(json.dumps(cfg, indent=1).encode()),
                         overwrite=True)
        self._logger = logger = _Logger(setup.out, info.is_main, resume_state=state if self.resume else None)
        t0 = time.perf_counter() - state["seconds"]
        last_losses: dict[str, float] = {}
        self._last_val: dict[str, float] = {}
        epochs, steps_per_epoch = int(cfg.epochs), setup.steps_per_epoch
        bar = tqdm(total=epochs * steps_per_epoch, initial=state["epoch"] * steps_per_epoch + state["iteration"],
                   disable=bar_disabled(self.quiet) or not info.is_main, desc=f"train {recipe.name}", unit="it",
                   dynamic_ncols=True)
        stop = ""
        if int(cfg.num_workers) > 0 and hasattr(setup.dataset, "preload"):
            # decode every pair and compute its per-pair maps (e.g. VSM) once, here: worker processes are
            # forked per epoch and would otherwise redo it every epoch in their own copies
            setup.dataset.preload(quiet=bar_disabled(self.quiet) or not info.is_main)
        with _EarlyStop(int(cfg.max_steps), float(cfg.max_seconds)) as early:
            while state["epoch"] < epochs and not stop:
                epoch = state["epoch"]
                # (set before the loop: a run resumed from a checkpoint at an epoch's last step has no batch left)
                lr = setup.optimizers[0].param_groups[0]["lr"] if setup.optimizers else 0.0
                for data in self._epoch_loader(setup, epoch, state["iteration"]):
                    last_losses = values = self._train_step(setup, data, epoch, state)
                    lr = setup.optimizers[0].param_groups[0]["lr"] if setup.optimizers else 0.0
                    logger.step(state["step"], epoch, state["iteration"], lr, values)
                    bar.update(1)
                    bar.set_postfix({k: f"{v:.4g}" for k, v in values.items()}, refresh=False)
                    for cb in self.callbacks:
                        cb.on_step_end(self, state)
                    stop = early.reason(state["step"])
                    if any_rank(bool(stop), info, setup.device):
                        stop = stop or "another rank stopping"
                    if stop or (cfg.checkpoint_every and state["step"] % int(cfg.checkpoint_every) == 0):
                        state["seconds"] = time.perf_counter() - t0
                        self._save_checkpoint(setup, state)
                    if stop:
                        break
                if stop:
                    break
                self._end_epoch(setup, epoch, state, lr, t0)
        bar.close()
        if info.is_main:
            self._finalize(setup, state)
        logger.close()
        barrier(info)
        return TrainResult(setup.out, state["epoch"], state["step"], time.perf_counter() - t0, last_losses,
                           self._last_val, stop if state["epoch"] < epochs else "")

    def _epoch_loader(self, setup: _Setup, epoch: int, start: int) -> torch.utils.data.DataLoader:
        """This rank's batches of ``epoch`` from iteration ``start`` on (a seeded permutation per epoch)."""
        cfg = self.cfg
        if hasattr(setup.dataset, "set_epoch"):
            setup.dataset.set_epoch(epoch)
        g = torch.Generator().manual_seed(int(cfg.seed) * 100003 + epoch)
        order = torch.randperm(setup.n, generator=g)[: setup.steps_per_epoch * setup.global_batch].tolist()
        return torch.utils.data.DataLoader(
            setup.dataset, batch_sampler=_Batches(order, setup.batch, setup.global_batch, setup.info.rank, start,
                                                  setup.steps_per_epoch),
            num_workers=int(cfg.num_workers), collate_fn=_collate)

    def _train_step(self, setup: _Setup, data: dict[str, torch.Tensor], epoch: int,
                    state: dict[str, Any]) -> dict[str, float]:
        """One optimiser step on one batch; returns the losses averaged over the ranks and advances ``state``."""
        cfg, recipe, device = self.cfg, self.recipe, setup.device
        data = {k: v.to(device, non_blocking=True) for k, v in data.items()}
        for o in setup.optimizers:
            o.zero_grad(set_to_none=True)
        recipe.iteration_start(setup.optimizers, epoch, state["iteration"], setup.steps_per_epoch, cfg)
        with torch.autocast(device.type, dtype=setup.amp_dtype or torch.float32, enabled=setup.amp_dtype is not None):
            losses = recipe.losses(setup.model, data, epoch, cfg)
        if "total" not in losses:
            raise MLFuseError(f"recipe '{recipe.name}' returned no 'total' loss")
        setup.scaler.scale(losses["total"]).backward()
        if setup.use_scaler:
            for o in setup.optimizers:
                setup.scaler.unscale_(o)
        recipe.clip_gradients(setup.net, epoch, cfg)
        for o in setup.optimizers:
            setup.scaler.step(o)
        setup.scaler.update()
        values = all_mean({k: float(v.detach()) for k, v in losses.items()}, setup.info, device)
        state["iteration"] += 1
        state["step"] += 1
        state["count"] += 1
        for k, v in values.items():
            state["sums"][k] = state["sums"].get(k, 0.0) + v
        return values

    def _end_epoch(self, setup: _Setup, epoch: int, state: dict[str, Any], lr: float, t0: float) -> None:
        """Schedulers, the epoch's log line, validation or sample fusions when due, the checkpoint."""
        cfg, info = self.cfg, setup.info
        self.recipe.step_schedulers(setup.schedulers, epoch, cfg)
        mean = {k: v / max(state["count"], 1) for k, v in state["sums"].items()}
        state.update(epoch=epoch + 1, iteration=0, sums={}, count=0, seconds=time.perf_counter() - t0)
        self._logger.epoch(epoch + 1, state["step"], lr, mean, state["seconds"])
        done, epochs = epoch + 1, int(cfg.epochs)
        if info.is_main and cfg.val and cfg.val_every and (done % int(cfg.val_every) == 0 or done == epochs):
            self._last_val = validate(setup.net, cfg, setup.out, done, quiet=self.quiet)
            self._logger.val(done, state["step"], self._last_val)
        elif info.is_main and cfg.val and cfg.sample_every and done % int(cfg.sample_every) == 0:
            validate(setup.net, cfg, setup.out, done, quiet=self.quiet, metrics=False)
        self._save_checkpoint(setup, state)
        if info.is_main and cfg.keep_epoch_checkpoints and done % int(cfg.keep_epoch_checkpoints) == 0:
            save_weights(setup.net, setup.out / f"epoch_{done:04d}.safetensors", self.recipe.name, cfg, state)
        for cb in self.callbacks:
            cb.on_epoch_end(self, state)
        barrier(info)

    def _finalize(self, setup: _Setup, state: dict[str, Any]) -> None:
        """The recipe's last step (e.g. MLFuse's output orientation) once every epoch ran, the final weights."""
        cfg = self.cfg
        notes = self.recipe.finalize(setup.net, cfg, setup.dataset) if state["epoch"] >= int(cfg.epochs) else {}
        if notes.get("changed") == "true" and cfg.val:  # the logged scores must be the shipped weights'
            self._last_val = validate(setup.net, cfg, setup.out, state["epoch"], quiet=self.quiet)
            self._logger.val(state["epoch"], state["step"], self._last_val)
        save_weights(setup.net, setup.out / WEIGHTS, self.recipe.name, cfg, state, notes)


#: settings a resumed run may change: where and how it runs, logs and validates; everything else (epochs, lr,
#: schedule, losses, data, seed, batch, precision, model options, ...) shapes the optimiser's trajectory
RESUMABLE_SETTINGS = frozenset({"out_dir", "device", "threads", "num_workers", "val", "val_every", "val_max_pairs",
                                "val_profile", "val_slow_metrics", "sample_every", "checkpoint_every",
                                "keep_epoch_checkpoints", "max_steps", "max_seconds",
                                # same losses and gradients to float rounding (models/mlfuse/losses.py)
                                "loss_path"})
_CHECKPOINT_KEYS = ("model", "optimizers", "schedulers", "scaler", "state", "config", "recipe")


def read_checkpoint(path: Path, recipe: str, device: torch.device | str = "cpu") -> dict[str, Any]:
    """``last.pt`` of a run of ``recipe``, read with ``weights_only=True`` (never a full unpickle); a
    truncated, foreign, other-recipe or hostile file is one line naming it."""
    import pickle
    import zipfile

    try:
        ck = torch.load(path, map_location=device, weights_only=True)
    except pickle.UnpicklingError:  # the weights-only loader met something it does not load
        raise MLFuseError(f"{path}: holds objects other than tensors and plain data; refused, never unpickled "
                          "(not a checkpoint written by mlfuse train)") from None
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile, KeyError, AttributeError,
            IndexError, TypeError) as exc:
        unreadable = isinstance(exc, PermissionError | FileNotFoundError | IsADirectoryError) and exc.strerror
        what = exc.strerror if unreadable else "truncated or not a PyTorch file"
        raise MLFuseError(f"{path}: cannot be read as a training checkpoint ({what}); "
                          "start a new run in another --out folder") from None
    if not isinstance(ck, dict) or any(k not in ck for k in _CHECKPOINT_KEYS):
        found = ", ".join(sorted(map(str, ck))[:6]) if isinstance(ck, dict) else type(ck).__name__
        raise MLFuseError(f"{path}: not a checkpoint written by mlfuse train (it holds: {found})")
    if ck["recipe"] != recipe:
        raise MLFuseError(f"{path}: a checkpoint of recipe '{ck['recipe']}', not '{recipe}'")
    st = ck["state"]
    if (not isinstance(st, dict) or not isinstance(ck["config"], dict)
            or any(not isinstance(st.get(k), int) for k in ("epoch", "iteration", "step", "count"))):
        raise MLFuseError(f"{path}: damaged checkpoint (no valid training position)")
    return ck


def check_resume_settings(saved: dict[str, Any], cfg: Config, path: Path,
                          defaults: dict[str, Any] | None = None) -> None:
    """Refuse to resume with a setting changed that the schedule, the optimiser or the data depend on,
    listing each old -> new value. A setting the checkpoint predates counts as its default (``defaults``)."""
    def show(v: Any) -> str:
        text = json.dumps(v, sort_keys=True)
        return text if len(text) <= 60 else text[:57] + "..."

    old = {**(defaults or {}), **saved}
    changed = [f"{k} {show(old.get(k))} -> {show(cfg.get(k))}" for k in sorted(set(old) | set(cfg))
               if k not in RESUMABLE_SETTINGS
               and json.dumps(old.get(k), sort_keys=True) != json.dumps(cfg.get(k), sort_keys=True)]
    if changed:
        raise MLFuseError(f"{path}: cannot resume with changed settings: {'; '.join(changed)} (the schedule and "
                          "optimiser state depend on them: resume with the run's settings, see its config.json, "
                          "or start a new run)")


def _check_crop(dataset: Any) -> None:
    """A random-crop dataset's crop must fit every training image; checked from the image headers,
    before any image is decoded (a huge crop would otherwise allocate its padded copies first)."""
    crop, pairs = getattr(dataset, "crop", None), getattr(dataset, "pairs", None)
    if not crop or not pairs:
        return
    from PIL import Image

    smallest: tuple[int, Path, int, int] | None = None
    for pair in pairs:
        for path in (pair.structural, pair.functional):
            try:
                with Image.open(path) as im:
                    w, h = im.size
            except Exception:  # unreadable: the data loader reports it, naming the file
                continue
            if smallest is None or min(w, h) < smallest[0]:
                smallest = (min(w, h), Path(path), w, h)
    if smallest is not None and int(crop) > smallest[0]:
        side, path, w, h = smallest
        raise MLFuseError(f"crop {crop} is larger than the training image {path} ({w}x{h}); "
                          f"choose crop <= {side} (--set crop=N)")


def save_weights(net: nn.Module, path: Path, method: str, cfg: Config, state: dict[str, Any],
                 notes: dict[str, str] | None = None) -> Path:
    """The network's weights as safetensors (mlfuse's own format) with the run described in metadata."""
    from safetensors.torch import save

    tensors = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    meta = {"method": method, "epochs_done": str(state["epoch"]), "steps": str(state["step"]),
            "config": json.dumps(cfg, sort_keys=True), **{f"finalize.{k}": v for k, v in (notes or {}).items()}}
    return atomic_write(path, lambda fh: fh.write(save(tensors, metadata=meta)), overwrite=True)


def validation_pairs(cfg: Config) -> list:
    from mlfuse.train.data import collect_pairs

    pairs = collect_pairs(cfg.val, what="val")
    return pairs[: int(cfg.val_max_pairs)] if cfg.val_max_pairs else pairs


def validate(net: nn.Module, cfg: Config, out: Path, epoch: int, *, quiet: bool = True,
             metrics: bool = True) -> dict[str, float]:
    """Fuse the validation pairs with the current weights (eval mode), save sample fusions, and
    return the mean of the ``val_profile`` metrics."""
    from mlfuse.inference.fuse import run_network, to_uint8
    from mlfuse.metrics.evaluation import evaluate
    from mlfuse.train.data import load_gray_u8

    was_training = net.training
    net.eval()
    scores: dict[str, list[float]] = {}
    sample_dir = out / "samples" / f"epoch_{epoch:04d}"
    pairs = validation_pairs(cfg)
    try:
        for i, p in enumerate(tqdm(pairs, desc="validate", disable=bar_disabled(quiet), leave=False)):
            s, f = load_gray_u8(p.structural), load_gray_u8(p.functional)
            raw = run_network(net, s.astype(np.float32) / 255, f.astype(np.float32) / 255)
            fused = to_uint8(raw, net.card.output_rule)
            if cfg.sample_every and epoch % int(cfg.sample_every) == 0 and i < 8:
                write_image(fused, sample_dir / f"{i:02d}_{p.name}.png", overwrite=True)
            if metrics:
                res = evaluate(fused, f, s, cfg.val_profile, slow=bool(cfg.val_slow_metrics))
                for k, v in res.items():
                    scores.setdefault(k, []).append(v)
    finally:
        net.train(was_training)
    # the mean over the finite values, as mlfuse eval's (a NaN/inf of one pair, e.g. CC of a flat image, is the
    # reference code's own value but would make the logged mean NaN/inf)
    means = {}
    for k, v in scores.items():
        finite = [x for x in v if np.isfinite(x)]
        means[k] = float(np.mean(finite)) if finite else float("nan")
    return means


class _Logger:
    """CSV always (``steps.csv``, ``epochs.csv``, ``val.csv``), TensorBoard if installed; rank 0 only."""

    def __init__(self, out: Path, active: bool, resume_state: dict[str, Any] | None) -> None:
        self.active = active
        self.out = out
        self.tb = None
        if not active:
            return
        resume_step = None
        if resume_state is not None:  # drop log rows written after the checkpoint we resume from
            resume_step = int(resume_state["step"])
            _truncate_csv(out / "steps.csv", "step", resume_step)
            # epochs.csv / val.csv count finished epochs: a run killed after logging epoch E (e.g. during its
            # validation) but before checkpointing it logs E again when resumed
            _truncate_csv(out / "epochs.csv", "epoch", int(resume_state["epoch"]))
            _truncate_csv(out / "val.csv", "epoch", int(resume_state["epoch"]))
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(out / "tb"), purge_step=resume_step)
        except ImportError:
            self.tb = None

    def _append(self, name: str, row: dict[str, Any]) -> None:
        path = self.out / name
        new = not path.exists()
        with path.open("a", newline="") as fh:
            w = csv.writer(fh)
            if new:
                w.writerow(list(row))
            w.writerow([f"{v:.8g}" if isinstance(v, float) else v for v in row.values()])

    def step(self, step: int, epoch: int, iteration: int, lr: float, values: dict[str, float]) -> None:
        if not self.active:
            return
        self._append("steps.csv", {"step": step, "epoch": epoch, "iteration": iteration, "lr": lr, **values})
        if self.tb:
            for k, v in values.items():
                self.tb.add_scalar(f"train/{k}", v, step)
            self.tb.add_scalar("train/lr", lr, step)

    def epoch(self, epoch: int, step: int, lr: float, mean: dict[str, float], seconds: float) -> None:
        if self.active:
            self._append("epochs.csv", {"epoch": epoch, "step": step, "lr": lr, "seconds": seconds, **mean})

    def val(self, epoch: int, step: int, scores: dict[str, float]) -> None:
        if not self.active:
            return
        self._append("val.csv", {"epoch": epoch, "step": step, **scores})
        if self.tb:
            for k, v in scores.items():
                self.tb.add_scalar(f"val/{k}", v, step)

    def close(self) -> None:
        if self.tb:
            self.tb.close()


def _truncate_csv(path: Path, key: str, last: int) -> None:
    if not path.exists():
        return
    with path.open(newline="") as fh:
        rows = list(csv.reader(fh))
    if not rows:
        return
    if key not in rows[0]:
        return
    col = rows[0].index(key)

    def before(r: list[str]) -> bool:  # a row cut short by a kill is dropped too
        return len(r) == len(rows[0]) and r[col].isdigit() and int(r[col]) <= last

    kept = [rows[0]] + [r for r in rows[1:] if before(r)]

    def write(fh) -> None:
        import io

        buf = io.StringIO()
        csv.writer(buf).writerows(kept)
        fh.write(buf.getvalue().encode())

    atomic_write(path, write, overwrite=True)
