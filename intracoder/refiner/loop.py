"""Training the refiner into MODEL/refiner/, with the main training's rules.

The refiner follows one decoder (B for a2b): it trains on that person's faceset, the one
recorded in the main model's state.json unless --faces names another. Every 10th crop
(sorted by name) is held out for --eval and never trained on; the names are kept in the
refiner's state so later runs hold out the same faces. Saves are atomic with rotating
backups, a non-finite loss rolls back to in-memory good weights with half the learning rate,
and the recipe is frozen on the first run, as for the main model (training/loop.py).
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from pathlib import Path
from typing import Any

import cv2
import keras
import numpy as np

from intracoder.data.dataset import Prefetcher, load_faceset
from intracoder.refiner.degrade import RefinerDataset
from intracoder.errors import UserError
from intracoder.faces.faceset import list_faces, read_meta
from intracoder.refiner.model import RefinerConfig, build_refiner
from intracoder.progress import clock, progress
from intracoder.training import checkpoint, inference
from intracoder.refiner import checkpoint as rc
from intracoder.training.guard import NanGuard
from intracoder.training.loop import StopRequest
from intracoder.refiner.config import RUN_FIELDS, SCALES, RefinerTrainConfig
from intracoder.refiner.evaluate import evaluate

HOLD_OUT_EVERY = 10
EVAL_GRID = "eval.png"
EVAL_REPORT = "eval.json"


def _resume(stored: dict, new: RefinerTrainConfig, given: dict[str, Any]) -> RefinerTrainConfig:
    """The stored recipe with this run's run fields; a contradicting recipe flag is an error."""
    old = RefinerTrainConfig(**stored)
    conflicts = [f"--{k.replace('_', '-')} {getattr(old, k)} (not {v})"
                 for k, v in given.items() if k not in RUN_FIELDS and v != getattr(old, k)]
    if conflicts:
        raise UserError(f"{new.model}: this refiner was trained with {', '.join(conflicts)}; "
                        "drop those options or delete MODEL/refiner/ to start over")
    run = {k: getattr(new, k) for k in RUN_FIELDS}
    run["faces"] = run["faces"] or old.faces
    return dataclasses.replace(old, **run)


def _new_recipe(cfg: RefinerTrainConfig, model_dir: Path) -> tuple[RefinerTrainConfig, int]:
    """Faceset and resolution of a new refiner: from the main model, or given explicitly."""
    main = checkpoint.read_state(model_dir)
    if main is None:
        if not (cfg.faces and cfg.resolution):
            raise UserError(f"{model_dir}: no trained model in it; train one first, or give "
                            "--faces and --resolution to train a refiner on its own")
        if cfg.inputs == "decoder":
            raise UserError(f"{model_dir}: --inputs decoder needs the trained model; use "
                            "--inputs synthetic to train a refiner on its own")
        return dataclasses.replace(cfg, faces=str(Path(cfg.faces).resolve()),
                                   inputs="synthetic"), cfg.resolution
    res = main["model_config"]["resolution"]
    if cfg.resolution not in (None, res):
        raise UserError(f"{model_dir}: the model's faces are {res} px, so the refiner's input "
                        f"is too; drop --resolution {cfg.resolution}")
    faces = cfg.faces or main["facesets"][cfg.side]["path"]
    inputs = "decoder" if cfg.inputs == "auto" else cfg.inputs
    return dataclasses.replace(cfg, faces=str(Path(faces).resolve()), resolution=res,
                               inputs=inputs), res


def _scale(cfg: RefinerTrainConfig, res: int) -> RefinerTrainConfig:
    """--scale as given, or the largest the faceset's crops can teach: 4R targets need
    crops of 4R (one face's crop size stands for all; load_faceset checks every one)."""
    if cfg.scale is not None:
        return cfg
    paths = list_faces(cfg.faces)
    crop = read_meta(paths[0]).size if paths else 0
    return dataclasses.replace(cfg, scale=max(SCALES) if crop >= max(SCALES) * res
                               else min(SCALES))


def split(folder: str | Path, held_before: list[str]) -> tuple[list[int], list[int], list[str]]:
    """(train indices, held-out indices, held-out names) over list_faces(folder)."""
    names = [p.name for p in list_faces(folder)]
    held = set(held_before) | {n for i, n in enumerate(names) if i % HOLD_OUT_EVERY == 0}
    train = [i for i, n in enumerate(names) if n not in held]
    test = [i for i, n in enumerate(names) if n in held]
    if not train or not test:
        raise UserError(f"{folder}: {len(names)} faces; the refiner needs at least 2 (every "
                        f"{HOLD_OUT_EVERY}th is held out for evaluation)")
    return train, test, sorted(held)


def train_refiner(cfg: RefinerTrainConfig, given: dict[str, Any]) -> int:
    if not cfg.model:
        raise UserError("--model is required: the model folder the refiner belongs to")
    model_dir = Path(cfg.model)
    state = rc.read_state(model_dir, repair=True)
    if state is None:
        if cfg.eval and cfg.minutes is None and cfg.iterations is None:
            raise UserError(f"{model_dir}: no trained refiner to evaluate")
        cfg, res = _new_recipe(cfg, model_dir)
        cfg = _scale(cfg, res)
        refiner_config = cfg.refiner_config(res)
    else:
        # Refiners saved before --scale existed are 2x: their stored recipe says so.
        stored = {"scale": state["refiner_config"].get("scale", 2), **state["config"]}
        cfg = _resume(stored, cfg, given)
        refiner_config = RefinerConfig(**state["refiner_config"])
        res = refiner_config.resolution

    faceset = load_faceset(cfg.faces, refiner_config.scale * res, cfg.workers)
    train_idx, test_idx, held = split(cfg.faces, state["held_out"]["names"] if state else [])
    keras.utils.set_random_seed(cfg.seed)  # the same initial weights for the same recipe
    model = build_refiner(refiner_config)
    model.compile(optimizer=rc.optimizer_for(model, cfg.lr))
    model.optimizer.build(model.trainable_variables)
    info = faceset.info()
    if state is None:
        state = rc.new_state(dataclasses.asdict(cfg), refiner_config, info, cfg.side, held)
        rc.save(model_dir, model, state, cfg.keep_backups)
    else:
        rc.restore(model_dir, model)
        state.update(config=dataclasses.asdict(cfg), faceset=info)
        state["held_out"]["names"] = held
    iteration = state["iteration"]
    if cfg.minutes is not None or cfg.iterations is not None or not cfg.eval:
        images = faceset.images[train_idx]
        generated = decoder_outputs(model_dir, cfg.side, images, res) \
            if cfg.inputs == "decoder" else None
        iteration = _loop(cfg, model, state, images, faceset.masks[train_idx], model_dir,
                          generated)
    if cfg.eval:
        report = evaluate(model, faceset.images[test_idx], faceset.masks[test_idx],
                          rc.refiner_dir(model_dir) / EVAL_GRID)
        report["iteration"] = iteration
        (rc.refiner_dir(model_dir) / EVAL_REPORT).write_text(json.dumps(report, indent=1))
        print(format_report(report), flush=True)
    return 0


def format_report(report: dict) -> str:
    lines = [f"held-out faces: {report['faces']}, {report['resolution']} -> "
             f"{report.get('scale', 2) * report['resolution']} px, PSNR / SSIM inside the "
             "mask"]
    for method in ("refiner", "bicubic+rct", "bicubic"):
        lines.append(f"  {method:<12} {report[method]['psnr']:7.2f} dB  "
                     f"{report[method]['ssim']:.4f}")
    m = report["margin_vs_rct"]
    lines.append(f"  refiner - (bicubic+rct): {m['psnr']:+.2f} dB, SSIM {m['ssim']:+.4f}; "
                 f"{report['ms_per_face']['refiner']:.1f} ms per face")
    return "\n".join(lines)


def decoder_outputs(model_dir: Path, side: str, images: np.ndarray, res: int) -> np.ndarray:
    """What the main model's decoder ``side`` makes of each face (sR uint8 RGB in; R uint8
    RGB out): the refiner's inputs with ``--inputs decoder``."""
    main, _ = inference.load_model(model_dir)
    small = np.stack([cv2.resize(im, (res, res), interpolation=cv2.INTER_AREA) for im in images])
    rgb, _ = main.decode(small, side)
    return np.clip(np.rint(rgb * 255), 0, 255).astype(np.uint8)


def _loop(cfg: RefinerTrainConfig, model, state: dict, images: np.ndarray, masks: np.ndarray,
          model_dir: Path, generated: np.ndarray | None = None) -> int:
    dataset = RefinerDataset(images, masks, cfg.batch_size, cfg.seed, generated,
                             model.config.scale)
    iteration = first = state["iteration"]
    guard = NanGuard(model, state, iteration, cfg.rollback_every, model_dir, "refiner")
    window: list[float] = []
    power = model.config.gan_power
    gan = f", adversarial term {power:g}" if power else ""

    def save() -> None:
        guard.snapshot(iteration)  # never writes broken weights: rolls back to good ones
        state["iteration"] = iteration
        rc.save(model_dir, model, state, cfg.keep_backups)

    def record() -> None:
        nonlocal window
        if window:
            state["history"].append([iteration, round(float(np.mean(window)), 6)])
            window = []

    start = last_save = time.monotonic()
    deadline = start + cfg.minutes * 60 if cfg.minutes else math.inf
    reason = "the iteration target"
    with Prefetcher(dataset, iteration, cfg.workers, cfg.prefetch) as batches, \
            StopRequest() as stop, progress(cfg.iterations, "it", "refiner",
                                            initial=iteration) as bar:
        print(f"training the refiner of {model_dir} ({keras.backend.backend()}): "
              f"{model.config.resolution} -> {model.config.scale * model.config.resolution} "
              f"px on "
              f"{len(images)} faces ({'its decoder' if generated is not None else 'synthetic'} "
              f"inputs{gan}), from iteration {iteration}", flush=True)
        while cfg.iterations is None or iteration < cfg.iterations:
            if stop.requested or time.monotonic() >= deadline:
                reason = "Ctrl-C" if stop.requested else "the time budget"
                break
            x, y = next(batches)
            loss = float(model.train_on_batch(x=x, y=y, return_dict=True)["loss"])
            iteration += 1
            if not guard.after_step((loss,), iteration):
                iteration = guard.good.iteration  # undone steps are not iterations trained
                continue
            window.append(loss)
            if len(window) >= cfg.log_every:
                record()
            bar.set_postfix_str(f"loss {loss:.4f}", refresh=False)
            bar.update()
            if cfg.autosave_minutes and time.monotonic() - last_save >= cfg.autosave_minutes * 60:
                save()
                last_save = time.monotonic()
    elapsed = time.monotonic() - start
    record()
    state["train_seconds"] = state.get("train_seconds", 0.0) + elapsed
    save()
    done = iteration - first
    rate = f", {done * cfg.batch_size / elapsed:.1f} faces/s" if done and elapsed > 0 else ""
    print(f"refiner stopped at iteration {iteration} ({reason}) after {clock(elapsed)}{rate}; "
          f"saved to {rc.refiner_dir(model_dir)}", flush=True)
    return iteration
