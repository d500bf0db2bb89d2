"""Package a training run as shippable weights: safetensors plus a Markdown model card.

The card records what a user of the weights needs to trust and reproduce them (in the manner of
Mitchell et al. 2019, "Model Cards for Model Reporting", scaled down): the training data (entries
and pair counts), the recipe as run, epochs done against the recipe's default, hardware, wall
time, final losses, last validation scores, the command and the file's sha256.
"""

from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path
from typing import Any

from mlfuse.data.io import atomic_write
from mlfuse.errors import MLFuseError

_RECIPE_KEYS = ("schedule", "epochs", "batch_size", "lr", "warmup_epochs", "weight_decay", "betas", "eta_min", "crop",
                "loss_weights", "loss_path", "seed", "precision")


def _rows(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        return []
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def machine_description() -> str:
    """CPU/GPU, core count and torch version of this machine, for cards written where training ran."""
    import torch

    from mlfuse.runtime import machine

    m = machine()
    gpu = f"{torch.cuda.device_count()} x {m['gpu']}" if m["gpu"] else None
    dev = gpu or f"CPU only: {m['cpu']}, {m['logical_cpus']} cores"
    return f"{dev}; torch {m['torch']}; Python {m['python']}"


def _data_lines(entries: list[dict[str, Any]]) -> list[str]:
    from mlfuse.train.data import collect_pairs, entry_repeat

    lines = [] if entries else ["- none"]
    for entry in entries:
        try:
            repeat = entry_repeat(entry)
            n = f"{len(collect_pairs([entry])) // repeat} pairs"
            if repeat > 1:
                n += f", {repeat} crops of each per epoch"
        except MLFuseError:
            n = "pair count unavailable here"
        names = entry.get("names")
        if isinstance(names, dict):
            where = ", ".join(f"{k} = {v}" for k, v in (names.get("where") or {}).items())
            filt = f"; names from `{names.get('csv')}` column `{names.get('column')}` where {where}"
        elif names:
            filt = f"; {len(names)} listed names"
        else:
            filt = ""
        dirs = "/".join(entry.get("dirs") or ()) or "auto"
        lines.append(f"- `{entry['root']}` (sub-folders {dirs}{filt}): {n}")
    return lines


def package_run(run_dir: str | Path, out: str | Path, *, name: str, hardware: str | None = None,
                command: str | None = None, overwrite: bool = False, install: bool = False) -> tuple[Path, Path]:
    """Write ``out`` (safetensors: the run's final weights, metadata extended with ``release``) and
    ``out`` with suffix ``.md`` (the model card). Returns both paths.

    ``install``: also copy the weights into the weights cache as release ``name`` (unless a registered
    release has that name), so ``create_model(method, weights=name)``, as the card shows, finds them."""
    from safetensors import safe_open
    from safetensors.torch import save

    run, out = Path(run_dir), Path(out)
    weights = run / "model.safetensors"
    if not weights.is_file():
        raise MLFuseError(f"{run}: no model.safetensors (is this a finished training run?)")
    with safe_open(str(weights), framework="pt") as fh:
        meta = dict(fh.metadata() or {})
        tensors = {k: fh.get_tensor(k) for k in fh.keys()}
    cfg = json.loads(meta.get("config", "{}"))
    method = meta.get("method", "?")
    meta["release"] = name
    payload = save(tensors, metadata=meta)
    atomic_write(out, lambda fh: fh.write(payload), overwrite=overwrite)
    sha = hashlib.sha256(payload).hexdigest()

    epochs = _rows(run / "epochs.csv")
    val = _rows(run / "val.csv")
    from mlfuse.models.registry import get_recipe

    try:
        default_epochs = get_recipe(method).defaults.get("epochs")
    except MLFuseError:
        default_epochs = None
    done = meta.get("epochs_done", "?")
    wall = float(epochs[-1]["seconds"]) if epochs and "seconds" in epochs[-1] else None
    n_params = sum(t.numel() for t in tensors.values() if t.is_floating_point())
    lines = [
        f"# {name}: {method} weights trained by mlfuse",
        "",
        f"- file: `{out.name}` ({len(payload):,} bytes, {n_params:,} float values incl. BatchNorm buffers)",
        f"- sha256: `{sha}`",
        f"- method: `{method}` (build with `mlfuse.create_model(\"{method}\", weights=\"{name}\")` where the "
        f"release is packaged or installed, `mlfuse weights package` installs it; else `weights=` the file's path)",
        f"- epochs: {done} of the recipe's {default_epochs}; steps: {meta.get('steps', '?')}",
        f"- hardware: {hardware or machine_description()}",
        f"- wall time: {wall / 3600:.2f} h ({wall:.0f} s, training and validation)" if wall is not None
        else "- wall time: not recorded",
        *[f"- after training ({k.removeprefix('finalize.')}): {v}" for k, v in meta.items()
          if k.startswith("finalize.") and k != "finalize.changed"],
        "",
        "## Training data",
        "",
        *_data_lines(list(cfg.get("data") or [])),
        "",
        "Validation (held out, never trained on):",
        "",
        *_data_lines(list(cfg.get("val") or [])),
        "",
        "## Recipe as run",
        "",
        *[f"- {k}: `{json.dumps(cfg[k])}`" for k in _RECIPE_KEYS if k in cfg],
        "- optimiser and schedule: the recipe's (see `src/mlfuse/models/" + method + "/recipe.py`); "
        "a cosine schedule runs over the epochs above, so a shorter run anneals fully",
        "",
    ]
    if epochs:
        last = epochs[-1]
        losses = ", ".join(f"{k} {float(v):.4g}" for k, v in last.items() if k.startswith("L_") or k == "total")
        lines += ["## Final training losses (mean over the last epoch)", "", losses, ""]
    if val:
        last = val[-1]
        scores = ", ".join(f"{k} {float(v):.4g}" for k, v in last.items() if k not in ("epoch", "step"))
        lines += [f"## Validation at epoch {last.get('epoch', '?')}", "", scores, ""]
    if command:
        lines += ["## Reproduce", "", "```bash", command, "```", ""]
    card = out.with_suffix(".md")
    text = "\n".join(lines)
    atomic_write(card, lambda fh: fh.write(text.encode()), overwrite=overwrite)
    if install:
        from mlfuse.weights.store import declared_releases, install_local

        # a registered release (e.g. one being packaged for shipping) is not shadowed
        if name not in {r.name for r in declared_releases()}:
            install_local(out, name, method, description=f"{method} weights packaged from {run}",
                          overwrite=overwrite)
    return out, card
