"""A mask model folder: ``mask.json`` (what it is, how far it trained, how well it scores)
and ``segmenter.keras`` (the net with its optimiser state, so training resumes where it
stopped). Both are written under a temporary name and renamed, the weights first: a crash
leaves the last complete pair.

A face model folder may hold its mask model in ``MODEL/mask/``: convert picks it up there.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from intracoder.atomic import atomic_path, write_json
from intracoder.errors import UserError
from intracoder.models.segmenter_config import SegmenterConfig

STATE = "mask.json"
WEIGHTS = "segmenter.keras"
SUBFOLDER = "mask"  # MODEL/mask/: a face model's own mask model
LOCK = ".mask-train.lock"


def is_mask_model(folder: str | Path) -> bool:
    return (Path(folder) / STATE).is_file() and (Path(folder) / WEIGHTS).is_file()


def find_mask_model(model_dir: str | Path | None, mask_model: str | Path | None = None) -> Path | None:
    """The mask model to use: ``mask_model`` when given (a UserError if it is not one),
    else MODEL/mask/ when it is one, else None."""
    if mask_model:
        folder = Path(mask_model)
        if is_mask_model(folder):
            return folder
        if is_mask_model(folder / SUBFOLDER):
            return folder / SUBFOLDER
        raise UserError(f"{folder}: not a mask model folder (no {STATE} and {WEIGHTS}); "
                        "train one with intracoder mask train")
    if model_dir and is_mask_model(Path(model_dir) / SUBFOLDER):
        return Path(model_dir) / SUBFOLDER
    return None


def read_state(folder: str | Path) -> dict | None:
    path = Path(folder) / STATE
    if not path.exists():
        return None
    try:
        state = json.loads(path.read_text())
        SegmenterConfig(**state["segmenter"])
        return state
    except (ValueError, KeyError, TypeError, OSError):
        raise UserError(f"{path}: corrupt mask model state; delete the folder to train anew") from None


def save(folder: str | Path, model, state: dict) -> None:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with atomic_path(folder / WEIGHTS) as tmp:
        model.save(tmp)
    write_json(folder / STATE, state)


def load_net(folder: str | Path, compile: bool = False):
    """The segmenter of a mask model folder; with ``compile`` its optimiser state too."""
    import keras

    from intracoder.models import segmenter  # noqa: F401 (registers the layers)
    from intracoder.segment import loss  # noqa: F401 (registers the loss)

    path = Path(folder) / WEIGHTS
    try:
        return keras.models.load_model(path, compile=compile)
    except FileNotFoundError:
        raise UserError(f"{path}: no such file; train a mask model first") from None
    except Exception as exc:  # Keras raises many kinds for a truncated or foreign file
        raise UserError(f"{path}: not a loadable mask model ({exc.__class__.__name__})") from None


class WriterLock:
    """One writer per mask model folder: a second `mask train` on it stops with one line
    instead of interleaving saves. The lock file holds the writer's pid; a lock left by a
    process that no longer runs (kill -9) is taken over."""

    def __init__(self, folder: str | Path):
        self.path = Path(folder) / LOCK

    def __enter__(self) -> "WriterLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
                break
            except FileExistsError:
                if _alive(self.path):
                    raise UserError(f"{self.path.parent} is being trained by another process "
                                    f"(pid {self.path.read_text().strip()}); wait for it or stop it") from None
                self.path.unlink(missing_ok=True)
        with os.fdopen(fd, "w") as f:
            f.write(str(os.getpid()))
        return self

    def __exit__(self, *exc: object) -> None:
        self.path.unlink(missing_ok=True)


def _alive(lock: Path) -> bool:
    try:
        pid = int(lock.read_text().strip())
        os.kill(pid, 0)
        return pid != os.getpid()
    except (ValueError, OSError):
        return False
