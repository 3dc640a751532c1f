"""The refiner's part of a model folder: MODEL/refiner/, saved the way the main model is.

MODEL/refiner/checkpoint/ holds refiner.weights.h5, optimizer.h5 and state.json (with an
adversarial term also discriminator.weights.h5 and discriminator_optimizer.h5);
MODEL/refiner/backups/iter-*/ the previous ones. The layout inside MODEL/refiner/ is the
main model's layout inside MODEL/, so finding, repairing and reading a checkpoint and the
optimiser file are training.checkpoint's own functions, and the in-memory NaN snapshots
training.snapshot's; only writing differs, because the main model saves four parts and
the refiner one.
"""

from __future__ import annotations

import shutil
from datetime import datetime, timezone
from pathlib import Path


import keras

from intracoder.atomic import fsync_tree, write_json
from intracoder.refiner.model import Refiner, RefinerConfig, build_refiner
from intracoder.training import checkpoint, optimizers
from intracoder.training.checkpoint import (BACKUPS, CHECKPOINT, D_OPTIMIZER, DISCRIMINATOR,
                                            FORMAT, OPTIMIZER, STAGING, STATE, find_checkpoint,
                                            load_optimizer)
from intracoder.training.snapshot import restore_snapshot, take_snapshot

__all__ = ["REFINER_DIR", "refiner_dir", "read_state", "save", "restore", "load",
           "take_snapshot", "restore_snapshot"]

REFINER_DIR = "refiner"
WEIGHTS = "refiner.weights.h5"
D_WEIGHTS = f"{DISCRIMINATOR}.weights.h5"


def refiner_dir(model_dir: str | Path) -> Path:
    return Path(model_dir) / REFINER_DIR


def read_state(model_dir: str | Path, repair: bool = False) -> dict | None:
    """The refiner's state.json in the model folder, or None when it has no refiner."""
    return checkpoint.read_state(refiner_dir(model_dir), repair)


def new_state(config: dict, refiner_config: RefinerConfig, faceset: dict, side: str,
              held_out: list[str]) -> dict:
    return {"format": FORMAT, "iteration": 0, "config": config,
            "refiner_config": refiner_config.to_dict(), "learning_rate": config["lr"],
            "history": [], "rollbacks": [], "train_seconds": 0.0, "channels": "RGB",
            "side": side, "faceset": faceset,
            "held_out": {"rule": "every 10th crop of the faceset sorted by name, from the first",
                         "names": held_out},
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds")}


def save(model_dir: str | Path, model: Refiner, state: dict, keep_backups: int = 3) -> Path:
    """Write a complete refiner checkpoint (staging folder, state.json last, then rename);
    returns its folder."""
    root = refiner_dir(model_dir)
    find_checkpoint(root, repair=True)
    staging, current = root / STAGING, root / CHECKPOINT
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    model.net.save_weights(staging / WEIGHTS)
    generator, discriminator = optimizers.parts(model.optimizer)
    checkpoint.write_optimizer(staging / OPTIMIZER, generator, model)
    files = {"refiner": WEIGHTS, "optimizer": OPTIMIZER}
    if model.discriminator is not None:
        model.discriminator.save_weights(staging / D_WEIGHTS)
        checkpoint.write_optimizer(staging / D_OPTIMIZER, discriminator, model)
        files |= {DISCRIMINATOR: D_WEIGHTS, "discriminator_optimizer": D_OPTIMIZER}
    state = {**state, **checkpoint.environment(), "format": FORMAT,
             "saved": datetime.now(timezone.utc).isoformat(timespec="seconds"),
             "files": files}
    fsync_tree(staging)  # as checkpoint.save: the files first, then state.json
    write_json(staging / STATE, state)
    return checkpoint.promote(staging, current, root / BACKUPS, keep_backups)


def _load_weights(model: Refiner, ckpt: Path) -> None:
    checkpoint.load_weights_file(model.net, ckpt / WEIGHTS, "refiner")
    if model.discriminator is not None:
        checkpoint.load_weights_file(model.discriminator, ckpt / D_WEIGHTS,
                                     "refiner's discriminator")


def optimizer_for(model: Refiner, learning_rate: float) -> keras.optimizers.Optimizer:
    """Adam; with a discriminator, one Adam each behind a GanOptimizer (own moments)."""
    if model.discriminator is None:
        return keras.optimizers.Adam(learning_rate)
    return optimizers.GanOptimizer(keras.optimizers.Adam(learning_rate),
                                   keras.optimizers.Adam(learning_rate),
                                   model.discriminator.weights)


def restore(model_dir: str | Path, model: Refiner) -> dict:
    """Weights and optimiser state into a built, compiled refiner; returns the state."""
    state = read_state(model_dir, repair=True)
    ckpt = find_checkpoint(refiner_dir(model_dir))
    _load_weights(model, ckpt)
    load_optimizer(model, ckpt)
    return state


def load(model_dir: str | Path) -> tuple[Refiner, dict] | None:
    """The trained refiner of a model folder (weights only) and its state, or None."""
    state = read_state(model_dir)
    if state is None:
        return None
    model = build_refiner(RefinerConfig(**state["refiner_config"]), discriminator=False)
    _load_weights(model, find_checkpoint(refiner_dir(model_dir)))
    return model, state
