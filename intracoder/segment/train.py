"""`intracoder mask train`: teach the mask net what of a face is visible, from the facesets
themselves, resuming where the folder's last run stopped.

Read top to bottom: load the crops, split off the held-out ones, build (or load) the net,
then step until the budget is spent, with a producer thread making the next batches
(augmented crops with synthetic occluders) while the net learns from this one. Half-way,
the net's confident pixels redraw the hull's edge of every crop without a label. At the end
the held-out crops are scored and everything is saved.
"""

from __future__ import annotations

import math
import queue
import threading
import time
from pathlib import Path

import numpy as np

from intracoder.progress import clock, progress
from intracoder.segment import samples, store
from intracoder.segment.config import MaskTrainConfig
from intracoder.segment.score import refine_outline, score
from intracoder.training.loop import StopRequest

QUEUE = 4  # batches made ahead
MIN_REFINE = 150  # iterations before the net's opinion of an outline is worth anything


def _producer(data: samples.MaskSet, pool, cfg: MaskTrainConfig, seed: int,
              out: queue.Queue, done: threading.Event) -> None:
    rng = np.random.default_rng(seed)
    weights = (1.0, cfg.label_weight / 2.0, cfg.label_weight)
    while not done.is_set():
        idx = samples.draw_indices(data, rng, cfg.batch)
        batch = samples.make_batch(data, idx, rng, pool, cfg.occlude, weights)
        while not done.is_set():
            try:
                out.put(batch, timeout=0.2)
                break
            except queue.Full:
                continue


def _net(cfg: MaskTrainConfig, state: dict | None, folder: Path):
    import keras

    from intracoder.models.segmenter import build_segmenter
    from intracoder.segment.loss import segmentation_loss

    if state is not None:
        return store.load_net(folder, compile=True)
    keras.utils.set_random_seed(cfg.seed)
    net = build_segmenter(cfg.segmenter())
    net.compile(optimizer=keras.optimizers.Adam(cfg.learning_rate), loss=segmentation_loss)
    return net


def _check_resume(cfg: MaskTrainConfig, given: dict, state: dict | None, folder: Path) -> MaskTrainConfig:
    if state is None:
        return cfg
    from intracoder.errors import UserError

    if "size" in given and given["size"] != state["size"]:
        raise UserError(f"{folder} is a {state['size']} mask model; it resumes as one "
                        f"(--size {given['size']} needs a new folder)")
    return MaskTrainConfig(**{**cfg.__dict__, "size": state["size"]})


def train_masks(cfg: MaskTrainConfig, given: dict | None = None, quiet: bool = False) -> dict:
    """Train (or resume) the mask model in ``cfg.model``; returns its saved state."""
    cfg.check()
    folder = Path(cfg.model)
    with store.WriterLock(folder):
        state = store.read_state(folder)
        cfg = _check_resume(cfg, given or {}, state, folder)
        res = cfg.segmenter().resolution
        data = samples.load_maskset(cfg.faces, res, quiet=quiet)
        train, held = samples.split(data, cfg.hold_out)
        pool = samples.build_pool(train, cfg.seed)
        net = _net(cfg, state, folder)
        state = state or {"size": cfg.size, "segmenter": cfg.segmenter().__dict__,
                          "face_type": data.face_type, "iteration": 0, "seconds": 0.0,
                          "history": []}
        start_iteration, seconds_before = state["iteration"], state["seconds"]
        minutes, iterations = cfg.budget()
        deadline = time.monotonic() + minutes * 60 if minutes else math.inf
        last = start_iteration + iterations if iterations else None
        refine_at = _refine_point(cfg, minutes, iterations, start_iteration)

        batches: queue.Queue = queue.Queue(QUEUE)
        done = threading.Event()
        worker = threading.Thread(target=_producer, daemon=True,
                                  args=(train, pool, cfg, cfg.seed + start_iteration, batches, done))
        worker.start()
        began, saved_at, losses, faces = time.monotonic(), time.monotonic(), [], 0
        bar = progress(iterations, unit="it", desc="mask train", quiet=quiet)
        try:
            with StopRequest() as stop:
                while not stop.requested and time.monotonic() < deadline and \
                        (last is None or state["iteration"] < last):
                    x, y, w = batches.get()
                    losses.append(float(net.train_on_batch(x, y, sample_weight=w)))
                    state["iteration"] += 1
                    if state["iteration"] == start_iteration + 1:
                        began = time.monotonic()  # the rate leaves out the first step's tracing
                    else:
                        faces += len(x)
                    bar.update(1)
                    rate = faces / (time.monotonic() - began)
                    left = deadline - time.monotonic()
                    bar.set_postfix_str(f"loss {np.mean(losses[-50:]):.4f} {rate:.1f} faces/s"
                                        + (f", left {clock(left)}" if left < math.inf else ""),
                                        refresh=False)
                    if refine_at is not None and _reached(refine_at, state["iteration"], began):
                        changed = refine_outline(net, train, res)
                        state["history"].append({"iteration": state["iteration"], "refined": changed})
                        refine_at = None
                    if time.monotonic() - saved_at > cfg.save_every_minutes * 60:
                        _record(state, losses, began, faces, seconds_before)
                        store.save(folder, net, state)
                        saved_at = time.monotonic()
        finally:
            done.set()
            bar.close()
        _record(state, losses, began, faces, seconds_before)
        state["scores"] = score(net, held, pool, res, cfg.seed) if len(held) else {}
        state["trained_on"] = [str(f) for f in cfg.faces]
        store.save(folder, net, state)
    return state


def _refine_point(cfg: MaskTrainConfig, minutes, iterations, start: int):
    """When this run redraws the hull's edge: half-way through its budget, and only when
    the net has had enough steps to be trusted (or not at all)."""
    if not cfg.refine_outline:
        return None
    if iterations:
        at = start + iterations // 2
        return ("iteration", at) if at >= MIN_REFINE else None
    return ("seconds", minutes * 30.0)


def _reached(point, iteration: int, began: float) -> bool:
    kind, value = point
    if kind == "iteration":
        return iteration >= value
    return iteration >= MIN_REFINE and time.monotonic() - began >= value


def _record(state: dict, losses: list[float], began: float, faces: int, before: float) -> None:
    seconds = time.monotonic() - began
    state["loss"] = float(np.mean(losses[-50:])) if losses else state.get("loss")
    state["faces_per_second"] = round(faces / seconds, 2) if seconds > 0 else 0.0
    state["seconds"] = round(before + seconds, 1)
