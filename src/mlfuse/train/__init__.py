"""Training: one trainer (loop, checkpoints, exact resume, DDP, logs) for every method's recipe."""

from mlfuse.models.registry import get_recipe, list_recipes
from mlfuse.train.config import Config, build_config
from mlfuse.train.recipe import Recipe, unwrap
from mlfuse.train.trainer import Callback, Trainer, TrainResult


def train(method: str, *, config: str | None = None, sets: tuple[str, ...] = (), resume: bool = False,
          quiet: bool = False, callbacks: tuple[Callback, ...] | list[Callback] = (),
          **overrides: object) -> TrainResult:
    """Train ``method`` with its recipe; ``config`` (TOML/JSON), ``sets`` (``key=value``) and keyword
    ``overrides`` change the recipe's defaults; ``callbacks`` (:class:`Callback`) see every step and
    epoch. Returns where the run was written and its last losses."""
    recipe = get_recipe(method)
    cfg = build_config(recipe.defaults, file=config, sets=sets, overrides=overrides, presets=recipe.presets)
    return Trainer(recipe, cfg, resume=resume, quiet=quiet, callbacks=callbacks).run()


__all__ = ["Callback", "Config", "Recipe", "TrainResult", "Trainer", "build_config", "get_recipe", "list_recipes",
           "train", "unwrap"]
