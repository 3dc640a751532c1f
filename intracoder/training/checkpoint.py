"""The model folder on disk, and the in-memory copy of good weights the NaN guard rolls
back to.

MODEL/checkpoint/ holds everything needed to resume or convert: one Keras .weights.h5 per
part of the model (DF: encoder, inter, decoder_a, decoder_b; LIAE: encoder, inter_ab,
inter_a, decoder), the optimiser's variables (optimizer.h5, h5py) and state.json. A save writes a complete new folder (MODEL/.checkpoint.saving,
state.json last, so its presence means complete), moves the current checkpoint into
MODEL/backups/ and renames the new one in. A kill at any moment leaves either the old or
the new checkpoint complete; ``find_checkpoint`` finishes a save cut off between the two
renames.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import warnings
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

import h5py
import keras
import numpy as np

from intracoder import __version__
from intracoder.atomic import write_json
from intracoder.errors import UserError
from intracoder.models.autoencoder import LossConfig, ModelConfig, SwapModel, build_model
from intracoder.training import optimizers

CHECKPOINT = "checkpoint"
STAGING = ".checkpoint.saving"
BACKUPS = "backups"
STATE = "state.json"
OPTIMIZER = "optimizer.h5"
FORMAT = 1


def find_checkpoint(model_dir: str | Path, repair: bool = False) -> Path | None:
    """The newest complete checkpoint folder, or None for a new model. With ``repair``, a
    save cut off between its two renames is finished instead of only read."""
    model_dir = Path(model_dir)
    current, staging = model_dir / CHECKPOINT, model_dir / STAGING
    if not (current / STATE).exists() and (staging / STATE).exists():
        if not repair:
            return staging
        os.replace(staging, current)
    if (current / STATE).exists():
        return current
    backups = sorted((model_dir / BACKUPS).glob(f"*/{STATE}"))
    return backups[-1].parent if backups else None


def read_state(model_dir: str | Path, repair: bool = False) -> dict | None:
    ckpt = find_checkpoint(model_dir, repair)
    if ckpt is None:
        return None
    try:
        state = json.loads((ckpt / STATE).read_text())
    except (OSError, ValueError) as exc:
        raise UserError(f"{ckpt / STATE}: unreadable ({exc.__class__.__name__}); "
                        f"restore it from {Path(model_dir) / BACKUPS}") from None
    if state.get("format") != FORMAT:
        raise UserError(f"{ckpt / STATE}: checkpoint format {state.get('format')!r}, "
                        f"this intracoder reads format {FORMAT}")
    return state


def new_state(config: dict, model_config: ModelConfig, loss_config: LossConfig,
              facesets: dict[str, dict], face_type: str) -> dict:
    """state.json of a model that has not trained yet. ``config`` is the TrainConfig as a
    dict; images go into the model as RGB floats in [0, 1] (``channels``)."""
    return {"format": FORMAT, "iteration": 0, "config": config,
            "model_config": model_config.to_dict(), "loss_config": loss_config.to_dict(),
            "learning_rate": config["lr"], "history": [], "rollbacks": [],
            "train_seconds": 0.0, "face_type": face_type, "channels": "RGB",
            "facesets": facesets,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds")}


def environment() -> dict:
    """Backend and library versions, recorded with every save."""
    backend = keras.backend.backend()
    libs = ["keras", "numpy", "h5py", {"tensorflow": "tensorflow", "jax": "jax",
                                       "torch": "torch"}.get(backend, backend)]
    versions = {"python": platform.python_version(), "intracoder": __version__}
    for lib in libs:
        try:
            versions[lib] = metadata.version(lib)
        except metadata.PackageNotFoundError:
            versions[lib] = None
    return {"backend": backend, "versions": versions}


def _optimizer_variables(model: SwapModel) -> list:
    # The loss-scale wrapper of fp16 training adds its own variables; saving only the
    # inner optimiser's state lets a model resume with or without mixed precision.
    return list(optimizers.inner(model.optimizer).variables)


def save(model_dir: str | Path, model: SwapModel, state: dict, keep_backups: int = 3) -> Path:
    """Write a complete checkpoint; returns its folder."""
    model_dir = Path(model_dir)
    find_checkpoint(model_dir, repair=True)
    staging, current = model_dir / STAGING, model_dir / CHECKPOINT
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    for part in model.parts:
        getattr(model, part).save_weights(staging / f"{part}.weights.h5")
    with h5py.File(staging / OPTIMIZER, "w") as f:
        for i, var in enumerate(_optimizer_variables(model)):
            ds = f.create_dataset(f"{i:05d}", data=keras.ops.convert_to_numpy(var))
            ds.attrs["path"] = var.path
    state = {**state, **environment(), "format": FORMAT,
             "saved": datetime.now(timezone.utc).isoformat(timespec="seconds"),
             "files": {p: f"{p}.weights.h5" for p in model.parts} | {"optimizer": OPTIMIZER}}
    write_json(staging / STATE, state)
    return promote(staging, current, model_dir / BACKUPS, keep_backups)


def promote(staging: Path, current: Path, backups: Path, keep_backups: int) -> Path:
    """Make a fully written ``staging`` folder the checkpoint: the old one becomes
    ``backups/iter-N``, the newest ``keep_backups`` backups are kept. Each step is a rename,
    so a kill at any moment leaves a loadable checkpoint (a cut-off promotion is finished by
    ``find_checkpoint(repair=True)``)."""
    if current.exists():
        old = json.loads((current / STATE).read_text()).get("iteration", 0)
        backup = backups / f"iter-{old:09d}"
        shutil.rmtree(backup, ignore_errors=True)
        backup.parent.mkdir(exist_ok=True)
        os.replace(current, backup)
    os.replace(staging, current)
    for stale in sorted(backups.glob("iter-*"))[:-keep_backups or None]:
        shutil.rmtree(stale, ignore_errors=True)
    return current


def load_weights_file(target, path: Path, what: str = "model") -> None:
    """``target.load_weights(path)``, with a missing or mismatched file as one error line.

    Keras warns, rather than fails, when a file lacks some layers ("... will retain their
    freshly-initialized weights"): a model half random is no model, so that is a mismatch
    too, and no warning is printed above the error line."""
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            target.load_weights(path)
    except FileNotFoundError:
        checkpoint = "checkpoint" if what == "model" else f"{what} checkpoint"
        raise UserError(f"{path}: missing; the {checkpoint} is incomplete") from None
    except (ValueError, KeyError, OSError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"{path}: does not fit the {what} described in state.json "
                        f"({first[:160]})") from None
    for warning in caught:
        if "freshly-initialized" in str(warning.message):
            raise UserError(f"{path}: does not fit the {what} described in state.json "
                            "(layers missing from the file)")
        warnings.warn_explicit(warning.message, warning.category, warning.filename,
                               warning.lineno)


def load_weights(model: SwapModel, ckpt: Path) -> None:
    for part in model.parts:
        load_weights_file(getattr(model, part), ckpt / f"{part}.weights.h5")


def load_optimizer(model: SwapModel, ckpt: Path) -> None:
    """Adam's moments, step count and learning rate, so a resumed run continues exactly."""
    with h5py.File(ckpt / OPTIMIZER, "r") as f:
        names = sorted(f.keys())
        arrays = [f[name][()] for name in names]
        paths = [str(f[name].attrs.get("path", "")) for name in names]
    if not optimizers.assign_state(model.optimizer, arrays, paths):
        raise UserError(f"{ckpt / OPTIMIZER}: optimiser state does not fit this model "
                        f"({len(arrays)} variables saved, "
                        f"{len(_optimizer_variables(model))} expected)")


def load_model(model_dir: str | Path) -> tuple[SwapModel, dict]:
    """The trained model of a model folder (weights only, not compiled) and its state.json,
    for convert and evaluation."""
    state = read_state(model_dir)
    if state is None:
        raise UserError(f"{model_dir}: not a trained model folder (no checkpoint in it)")
    model = build_model(ModelConfig(**state["model_config"]), LossConfig(**state["loss_config"]))
    load_weights(model, find_checkpoint(model_dir))
    return model, state


def restore(model_dir: str | Path, model: SwapModel) -> dict:
    """Load weights and optimiser state into a built, compiled model; returns the state."""
    state = read_state(model_dir, repair=True)
    ckpt = find_checkpoint(model_dir)
    load_weights(model, ckpt)
    load_optimizer(model, ckpt)
    return state


@dataclass
class Snapshot:
    """Weights and optimiser state held in memory: the NaN guard's rollback target."""

    iteration: int
    weights: list[np.ndarray]
    optimizer: list[np.ndarray]


def take_snapshot(model: SwapModel, iteration: int) -> Snapshot | None:
    """A copy of the current state, or None when any weight is already non-finite (a
    finite loss can still come with a step that broke the weights)."""
    weights = [keras.ops.convert_to_numpy(v) for v in model.weights]
    if not all(np.isfinite(w).all() for w in weights if np.issubdtype(w.dtype, np.floating)):
        return None
    optimizer = [keras.ops.convert_to_numpy(v) for v in _optimizer_variables(model)]
    return Snapshot(iteration=iteration, weights=weights, optimizer=optimizer)


def restore_snapshot(model: SwapModel, snapshot: Snapshot) -> None:
    for var, value in zip(model.weights, snapshot.weights):
        var.assign(value)
    for var, value in zip(_optimizer_variables(model), snapshot.optimizer):
        var.assign(value)
