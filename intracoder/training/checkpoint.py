"""The model folder on disk: the checkpoint format, saving, finding and resuming.
(Loading a model to use it is inference.py; the NaN guard's in-memory copies, snapshot.py.)

MODEL/checkpoint/ holds everything needed to resume or convert: one Keras .weights.h5 per
part of the model (DF: encoder, inter, decoder_a, decoder_b; LIAE: encoder, inter_ab,
inter_a, decoder; plus the discriminator once the GAN was on), the optimiser's variables
(optimizer.h5, h5py; the discriminator's own in discriminator_optimizer.h5 while the GAN
trains) and state.json. A save writes a complete new folder (MODEL/.checkpoint.saving,
state.json last, so its presence means complete), moves the current checkpoint into
MODEL/backups/ and renames the new one in. A kill at any moment leaves either the old or
the new checkpoint complete; ``find_checkpoint`` finishes a save cut off between the two
renames. Every file and folder entry is fsynced before the checkpoint it belongs to is
promoted, and a checkpoint that is torn anyway (a disk that lied, a file damaged later) is
passed over for the newest good backup, with one line saying so.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import sys
import warnings
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

import h5py
import keras
import numpy as np

from intracoder import __version__
from intracoder.atomic import durable_replace, fsync_tree, write_json
from intracoder.errors import UserError
from intracoder.models.autoencoder import LossConfig, ModelConfig, SwapModel, build_model
from intracoder.training import optimizers

CHECKPOINT = "checkpoint"
STAGING = ".checkpoint.saving"
BACKUPS = "backups"
STATE = "state.json"
OPTIMIZER = "optimizer.h5"
D_OPTIMIZER = "discriminator_optimizer.h5"  # the GAN's own optimiser, while it trains
DISCRIMINATOR = "discriminator"  # the part a model gains when its GAN is first switched on
FORMAT = 1


TORN = "checkpoint.torn"  # where a torn checkpoint is moved aside by a resume (kept, not deleted)
_reported: set[Path] = set()  # torn checkpoints already named on stderr in this process


def torn_reason(ckpt: Path) -> str | None:
    """Why ``ckpt`` cannot be loaded (state.json unreadable, a file it lists missing or not
    HDF5), or None when it looks whole. Cheap: reads state.json and each file's signature."""
    try:
        state = json.loads((ckpt / STATE).read_text())
    except (OSError, ValueError) as exc:
        return f"{STATE} unreadable ({exc.__class__.__name__})"
    if not isinstance(state, dict):
        return f"{STATE} is not a checkpoint's state"
    for name in state.get("files", {}).values():
        path = ckpt / name
        if not path.is_file():
            return f"{name} missing"
        if not h5py.is_hdf5(path):
            return f"{name} damaged"
        try:
            with h5py.File(path, "r"):
                pass
        except OSError:
            return f"{name} damaged"
    return None


def _report_torn(ckpt: Path, reason: str, used: Path) -> None:
    if ckpt in _reported:
        return
    _reported.add(ckpt)
    print(f"intracoder: warning: {ckpt} is torn ({reason}); using the newest good backup, "
          f"{used}", file=sys.stderr, flush=True)


def find_checkpoint(model_dir: str | Path, repair: bool = False) -> Path | None:
    """The newest complete checkpoint folder, or None for a new model. With ``repair``, a
    save cut off between its two renames is finished instead of only read, and a torn
    checkpoint is moved aside to MODEL/checkpoint.torn (nothing is deleted)."""
    model_dir = Path(model_dir)
    current, staging = model_dir / CHECKPOINT, model_dir / STAGING
    if not (current / STATE).exists() and (staging / STATE).exists():
        if not repair:
            return staging
        durable_replace(staging, current)
    backups = sorted(p.parent for p in (model_dir / BACKUPS).glob(f"*/{STATE}"))
    good = (b for b in reversed(backups) if torn_reason(b) is None)
    if not (current / STATE).exists():
        return next(good, None)
    reason = torn_reason(current)
    if reason is None:
        return current
    good = next(good, None)
    if good is None:
        raise UserError(f"{current}: torn ({reason}) and no good backup in "
                        f"{model_dir / BACKUPS}; the model cannot be loaded")
    _report_torn(current, reason, good)
    if repair:  # the next save then promotes into an empty place
        aside = model_dir / TORN
        shutil.rmtree(aside, ignore_errors=True)
        durable_replace(current, aside)
    return good


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


def write_optimizer(path: Path, optimizer, model: keras.Model) -> None:
    """``optimizer``'s state as ``read_optimizer`` returns it, each variable under a key that
    names its model variable and slot (optimizers.keyed_paths)."""
    arrays, paths = optimizers.state_of(optimizer, optimizers.variable_names(model))
    with h5py.File(path, "w") as f:
        for i, (array, var_path) in enumerate(zip(arrays, paths)):
            f.create_dataset(f"{i:05d}", data=array).attrs["path"] = var_path


def read_optimizer(path: Path) -> tuple[list[np.ndarray], list[str]]:
    with h5py.File(path, "r") as f:
        names = sorted(f.keys())
        return ([f[name][()] for name in names],
                [str(f[name].attrs.get("path", "")) for name in names])


def save(model_dir: str | Path, model: SwapModel, state: dict, keep_backups: int = 3) -> Path:
    """Write a complete checkpoint; returns its folder."""
    model_dir = Path(model_dir)
    find_checkpoint(model_dir, repair=True)
    staging, current = model_dir / STAGING, model_dir / CHECKPOINT
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    for part in model.parts:
        getattr(model, part).save_weights(staging / f"{part}.weights.h5")
    generator, discriminator = optimizers.parts(model.optimizer)
    files = {p: f"{p}.weights.h5" for p in model.parts} | {"optimizer": OPTIMIZER}
    write_optimizer(staging / OPTIMIZER, generator, model)
    if discriminator is not None:
        write_optimizer(staging / D_OPTIMIZER, discriminator, model)
        files["discriminator_optimizer"] = D_OPTIMIZER
    state = {**state, **environment(), "format": FORMAT,
             "saved": datetime.now(timezone.utc).isoformat(timespec="seconds"),
             "files": files}
    fsync_tree(staging)  # every file on disk before state.json says the folder is complete
    write_json(staging / STATE, state)  # atomic and fsynced itself
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
        durable_replace(current, backup)
    durable_replace(staging, current)
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


def has_discriminator(ckpt: Path) -> bool:
    return (ckpt / f"{DISCRIMINATOR}.weights.h5").exists()


def load_weights(model: SwapModel, ckpt: Path) -> None:
    """Every part's weights; a discriminator the checkpoint does not have yet (the GAN is
    switched on by this run) keeps its fresh ones."""
    for part in model.parts:
        if part == DISCRIMINATOR and not has_discriminator(ckpt):
            continue
        load_weights_file(getattr(model, part), ckpt / f"{part}.weights.h5")


def load_optimizer(model: SwapModel, ckpt: Path) -> None:
    """Adam's moments, step count and learning rate, so a resumed run continues exactly;
    the discriminator's optimiser too while the GAN trains (fresh when it was off)."""
    generator, discriminator = optimizers.parts(model.optimizer)
    names = optimizers.variable_names(model)
    arrays, paths = read_optimizer(ckpt / OPTIMIZER)
    if not optimizers.assign_state(generator, arrays, paths, names):
        raise UserError(f"{ckpt / OPTIMIZER}: optimiser state does not fit this model "
                        f"({len(arrays)} variables saved, "
                        f"{len(generator.variables)} expected)")
    if discriminator is not None and (ckpt / D_OPTIMIZER).exists():
        arrays, paths = read_optimizer(ckpt / D_OPTIMIZER)
        if not optimizers.assign_state(discriminator, arrays, paths, names):
            raise UserError(f"{ckpt / D_OPTIMIZER}: does not fit this model's discriminator")


def restore(model_dir: str | Path, model: SwapModel) -> dict:
    """Load weights and optimiser state into a built, compiled model; returns the state."""
    state = read_state(model_dir, repair=True)
    ckpt = find_checkpoint(model_dir)
    load_weights(model, ckpt)
    load_optimizer(model, ckpt)
    return state
