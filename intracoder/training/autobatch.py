"""``--batch-size auto``: the largest per-device batch that fits, found by trying.

On a GPU the step is tried at the preset's batch, then at twice that, and so on, each on
a throwaway copy of the model with random faces, until one runs out of device memory or
reaches ``MAX_BATCH``; the largest batch that ran is kept (and frozen into the model like
any other batch size). Each try is a new shape, so it compiles once: a few minutes on a
GPU for a run that lasts the night. On a CPU there is no device memory to fill and larger
batches train worse per minute (docs/quality.md, o7), so auto is the preset's batch.
"""

from __future__ import annotations

import gc
from typing import Callable

import keras
import numpy as np
from tqdm import tqdm

MAX_BATCH = 1024  # per device and side: beyond this the step is long past the GPU's knee
# What an out-of-memory failure says under each backend (XLA, TensorFlow, PyTorch).
OOM_MARKERS = ("RESOURCE_EXHAUSTED", "out of memory", "OutOfMemory", "OOM when allocating")


def is_out_of_memory(exc: BaseException) -> bool:
    text = f"{type(exc).__name__}: {exc}"
    return any(marker.lower() in text.lower() for marker in OOM_MARKERS)


def largest_batch(fits: Callable[[int], bool], start: int, limit: int = MAX_BATCH) -> int:
    """The largest of start, 2 start, 4 start, ... <= limit for which ``fits`` is True,
    stopping at the first that is not. ``start`` itself must fit."""
    best, size = None, start
    while size <= limit and fits(size):
        best, size = size, size * 2
    if best is None:
        raise MemoryError(f"a batch of {start} per side does not fit on this device")
    return best


def try_step(build: Callable[[], keras.Model], resolution: int, priority: bool,
             batch: int) -> bool:
    """Whether two train steps of ``batch`` faces per side (this process's share of the
    global batch) run on a fresh model."""
    model = build()
    faces = np.random.default_rng(0).random((batch, resolution, resolution, 3), np.float32)
    mask = np.ones((batch, resolution, resolution, 1), np.float32)
    y = (faces, mask, faces, mask) + ((mask, mask) if priority else ())
    try:
        for _ in range(2):
            model.train_on_batch(x=(faces, faces), y=y)
        return True
    except Exception as exc:  # noqa: BLE001: only an out-of-memory failure is an answer
        if not is_out_of_memory(exc):
            raise
        return False
    finally:
        del model
        gc.collect()


def auto_batch_size(build: Callable[[], keras.Model], resolution: int, priority: bool,
                    start: int, gpu: bool, local_devices: int = 1) -> int:
    """The per-device batch for ``--batch-size auto`` (see the module docstring)."""
    if not gpu:
        tqdm.write(f"--batch-size auto: no GPU, the preset's batch {start}")
        return start

    def fits(batch: int) -> bool:
        ok = try_step(build, resolution, priority, batch * local_devices)
        tqdm.write(f"--batch-size auto: {batch} per side {'fits' if ok else 'does not fit'}")
        return ok

    best = largest_batch(fits, start)
    tqdm.write(f"--batch-size auto: training with {best} per side per device")
    return best
