"""Batches augmented by worker processes, handed over in shared memory.

Threads do not scale here: measured, two augmenting threads made fewer faces per second
than one (the GIL), which caps a GPU's feed near one core's ~1000 faces/s where an H200
training df128 wants ~1900. Processes scale with cores. The faces of both sets are put in
shared memory once, so N workers do not hold N copies of a faceset; each batch is written
by a worker into one of ``depth + 1`` shared slots and handed to the trainer as views of
that slot, without a copy. A batch is therefore valid until the next ``next()``, which
recycles its slot (the trainer has finished its step with it by then), or ``close()``,
which unmaps it.

Workers are spawned, not forked: the trainer's process runs JAX or TensorFlow threads,
which fork does not survive. A batch is a pure function of (seed, iteration), so the
batches are exactly those the threaded Prefetcher makes, in the same order.
"""

from __future__ import annotations

import copy
import multiprocessing as mp
import os
import queue
import signal
import traceback
import weakref
from multiprocessing.shared_memory import SharedMemory
from time import perf_counter

import numpy as np

from intracoder.data.dataset import Batch, FaceSet, PairDataset, Prefetcher
from intracoder.errors import UserError

POLL_SECONDS = 0.5  # how often a waiting trainer checks that its workers still live
SHM = "/dev/shm"


class WorkerError(RuntimeError):
    """A data worker failed; the message carries its traceback."""


class WorkerDied(UserError):
    """A data worker was killed (out of memory, most often): the machine's doing, said in
    one line; the trainer saves before it stops."""


def _layout(dataset: PairDataset) -> list[tuple[int, ...]]:
    """Shapes of the arrays of one batch, flattened: wa, wb, ta, ma, tb, mb[, pa, pb]."""
    n, res = dataset.local_batch_size, dataset.sides[0].images.shape[1]
    rgb, one = (n, res, res, 3), (n, res, res, 1)
    return [rgb, rgb, rgb, one, rgb, one] + ([one, one] if dataset.priority else [])


def _views(buffer, shapes: list[tuple[int, ...]]) -> list[np.ndarray]:
    out, offset = [], 0
    for shape in shapes:
        array = np.ndarray(shape, np.float32, buffer=buffer, offset=offset)
        out.append(array)
        offset += array.nbytes
    return out


def _attach(name: str) -> SharedMemory:
    # Python < 3.13 registers an attached block with the resource tracker too. A spawned
    # child shares its parent's tracker, where that is a no-op; unregistering here would
    # take the trainer's own registration away.
    return SharedMemory(name=name)


def _worker(recipe: PairDataset, faces: list[tuple], slots: list[str], shapes: list,
            tasks: mp.Queue, results: mp.Queue) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the trainer's to handle
    import cv2

    cv2.setNumThreads(1)  # N workers on N cores, not N x cores threads
    blocks = []  # kept referenced: a block's buffer lives only as long as the block

    def shared(name: str, shape: tuple[int, ...]) -> np.ndarray:
        blocks.append(_attach(name))
        return np.ndarray(shape, np.uint8, buffer=blocks[-1].buf)

    sides = []
    for bare, (image_name, mask_name, image_shape, mask_shape) in zip(_unique(recipe.sides),
                                                                      faces):
        side = copy.copy(bare)
        side.images, side.masks = shared(image_name, image_shape), shared(mask_name, mask_shape)
        sides.append(side)
    recipe.sides = (sides[0], sides[-1])
    outputs = []
    for name in slots:
        blocks.append(_attach(name))
        outputs.append(_views(blocks[-1].buf, shapes))
    while (task := tasks.get()) is not None:
        iteration, slot, warp_off = task
        try:
            recipe.warp_off_from(warp_off)
            (wa, wb), y = recipe[iteration]
            for view, array in zip(outputs[slot], (wa, wb, *y), strict=True):
                view[...] = array
            results.put((iteration, None))
        except BaseException:  # noqa: BLE001: reported to the trainer, which raises it
            results.put((iteration, traceback.format_exc()))


class ProcessPrefetcher:
    """The next ``depth`` batches, made by ``workers`` processes while the model trains.

    The same interface as Prefetcher: iterate for batches, ``wait_seconds`` is how long the
    loop waited for data, ``close()`` (or leaving the ``with``) stops the workers and frees
    the shared memory.
    """

    def __init__(self, dataset: PairDataset, start: int, workers: int = 2, depth: int = 4):
        self.dataset = dataset
        self.wait_seconds = 0.0
        self.next_index = start
        self._blocks: list[SharedMemory] = []
        self._procs: list[mp.Process] = []
        self._finalizer = weakref.finalize(self, _cleanup, self._procs, self._blocks)
        shapes = _layout(dataset)
        slot_bytes = sum(int(np.prod(s)) * 4 for s in shapes)
        slots = max(depth, workers) + 1
        face_bytes = sum(f.images.nbytes + f.masks.nbytes for f in _unique(dataset.sides))
        _check_room(face_bytes + slots * slot_bytes, slots, slot_bytes)
        faces, recipe = self._share_faces(dataset)
        slot_blocks = [self._block(slot_bytes) for _ in range(slots)]
        slot_names = [block.name for block in slot_blocks]
        ctx = mp.get_context("spawn")
        self._tasks, self._results = ctx.Queue(), ctx.Queue()
        threads = os.environ.get("OMP_NUM_THREADS")
        os.environ["OMP_NUM_THREADS"] = "1"  # inherited by the children at spawn
        try:
            for i in range(workers):
                proc = ctx.Process(target=_worker, name=f"augment-{i}", daemon=True,
                                   args=(recipe, faces, slot_names, shapes, self._tasks,
                                         self._results))
                proc.start()
                self._procs.append(proc)
        finally:
            if threads is None:
                os.environ.pop("OMP_NUM_THREADS")
            else:
                os.environ["OMP_NUM_THREADS"] = threads
        self._outputs = [_views(block.buf, shapes) for block in slot_blocks]
        self._slot_of: dict[int, int] = {}
        self._done: dict[int, str | None] = {}
        self._held: int | None = None  # the slot of the batch last handed out
        for slot in range(slots - 1):
            self._submit(slot)
        self._spare = slots - 1

    def _block(self, size: int) -> SharedMemory:
        block = SharedMemory(create=True, size=max(size, 1))
        self._blocks.append(block)
        return block

    def _share_faces(self, dataset: PairDataset) -> tuple[list[tuple], PairDataset]:
        """The faces of both sides in shared memory (once when A and B are one pool), and
        a picklable copy of the dataset that carries no pixels."""
        faces, light = [], []
        for side in _unique(dataset.sides):
            names = []
            for array in (side.images, side.masks):
                block = self._block(array.nbytes)
                np.ndarray(array.shape, np.uint8, buffer=block.buf)[...] = array
                names.append(block.name)
            faces.append((*names, side.images.shape, side.masks.shape))
            bare = copy.copy(side)  # no __post_init__: the pixels are left out on purpose
            bare.images = bare.masks = None
            light.append(bare)
        recipe = copy.copy(dataset)
        recipe.sides = (light[0], light[-1])
        return faces, recipe

    def _submit(self, slot: int) -> None:
        self._slot_of[self.next_index] = slot
        self._tasks.put((self.next_index, slot, self.dataset.warp_off_iteration))
        self.next_index += 1

    def __iter__(self) -> ProcessPrefetcher:
        return self

    def __next__(self) -> Batch:
        if self._held is not None:
            self._submit(self._held)  # the trainer is done with the batch in it
        else:
            self._submit(self._spare)
        iteration = min(self._slot_of)
        start = perf_counter()
        while iteration not in self._done:
            try:
                done, error = self._results.get(timeout=POLL_SECONDS)
                self._done[done] = error
            except queue.Empty:
                dead = [p for p in self._procs if not p.is_alive()]
                if dead:
                    raise WorkerDied(f"data worker {dead[0].name} died (exit code "
                                     f"{dead[0].exitcode}); out of memory? Use fewer "
                                     "--workers, or --pipeline threads") from None
        self.wait_seconds += perf_counter() - start
        error = self._done.pop(iteration)
        slot = self._held = self._slot_of.pop(iteration)
        if error is not None:
            raise WorkerError(f"augmenting batch {iteration} failed in a worker:\n{error}")
        wa, wb, *y = self._outputs[slot]
        return (wa, wb), tuple(y)

    def close(self) -> None:
        for _ in self._procs:
            self._tasks.put(None)
        self._outputs = []
        self._finalizer()

    def __enter__(self) -> ProcessPrefetcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _unique(sides: tuple[FaceSet, ...]) -> list[FaceSet]:
    return [s for i, s in enumerate(sides) if all(s is not t for t in sides[:i])]


def _check_room(needed: int, slots: int, slot_bytes: int) -> None:
    """A full /dev/shm does not fail when a block is made, but kills the worker that
    writes into it (SIGBUS): check first, and say what to do."""
    try:
        st = os.statvfs(SHM)
    except OSError:
        return
    free = st.f_bavail * st.f_frsize
    if needed > free:
        raise UserError(f"worker processes need {needed / 2**20:.0f} MB of shared memory "
                        f"(the faces and {slots} batches of {slot_bytes / 2**20:.0f} MB) but "
                        f"{SHM} has {free / 2**20:.0f} MB free: run the container with a "
                        "larger --shm-size, lower --prefetch, or use --pipeline threads")


def _cleanup(procs: list[mp.Process], blocks: list[SharedMemory]) -> None:
    for proc in procs:
        proc.join(timeout=2)
        if proc.is_alive():
            proc.terminate()
            proc.join(timeout=2)
    for block in blocks:
        try:
            block.unlink()
        except FileNotFoundError:
            pass
        try:
            block.close()
        except BufferError:  # the trainer still holds the last batch: freed with it
            pass
    blocks.clear()


def make_prefetcher(dataset: PairDataset, start: int, workers: int, depth: int,
                    pipeline: str = "threads") -> Prefetcher | ProcessPrefetcher:
    """The prefetcher of a --pipeline choice: 'threads' or 'processes'."""
    if pipeline == "processes":
        return ProcessPrefetcher(dataset, start, workers, depth)
    if pipeline == "threads":
        return Prefetcher(dataset, start, workers, depth)
    raise ValueError(f"unknown pipeline {pipeline!r}")
