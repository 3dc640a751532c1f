"""The training loop, top to bottom.

open or create the model folder -> load both facesets -> build and compile the model ->
for each iteration: next batch, one train step, NaN guard, log, preview, autosave ->
save when the iteration target or the time budget is reached, or on Ctrl-C.
"""

from __future__ import annotations

import dataclasses
import math
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

import keras
import numpy as np
from tqdm import tqdm

from intracoder.data.dataset import FaceSet, PairDataset, load_faceset
from intracoder.data.workers import WorkerDied, make_prefetcher
from intracoder.errors import UserError
from intracoder.models.autoencoder import LossConfig, ModelConfig, SwapModel, build_model
from intracoder.models.config import flops_per_sample
from intracoder.progress import clock, progress
from intracoder.training import checkpoint, distribute, phase, pretrained, schedule
from intracoder.training.autobatch import auto_batch_size
from intracoder.training.config import AUTO, PRESET_RECIPES, TrainConfig, resume_config
from intracoder.training.device import POLICIES, gpu_visible, resolve_precision
from intracoder.training.guard import NanGuard
from intracoder.training.optimizers import (learning_rate, model_optimizer, replace_optimizer,
                                            set_learning_rate)
from intracoder.training.preview import (LOSS_PLOT, PREVIEW, TensorBoardLog, write_loss_plot,
                                         write_preview)

PREVIEW_FACES = 6
CPU_PRESET = "quick"  # the preset sized for a CPU; the others are sized for a GPU


class StopRequest:
    """First Ctrl-C: finish the current iteration, save, stop. A second Ctrl-C aborts at
    once; the last checkpoint on disk stays loadable because saves are atomic."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: Any = None

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        tqdm.write("Ctrl-C: saving after this iteration (press again to quit without saving)")

    def __enter__(self) -> StopRequest:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


def _check_facesets(state: dict | None, a: FaceSet, b: FaceSet) -> None:
    if a.face_type != b.face_type:
        raise UserError(f"A has {a.face_type!r} faces and B has {b.face_type!r} faces; "
                        "extract both with the same --face-type")
    if state is None:
        return
    if a.face_type != state["face_type"]:
        raise UserError(f"this model was trained on {state['face_type']!r} faces, the facesets "
                        f"are {a.face_type!r}; extract them with --face-type {state['face_type']}")
    old = state["facesets"]
    if a is not b and (a.fingerprint, b.fingerprint) == (old["b"]["fingerprint"],
                                                         old["a"]["fingerprint"]):
        raise UserError("--a and --b are swapped compared with how this model was trained")
    for side, faces in (("a", a), ("b", b)):
        if faces.fingerprint != old[side]["fingerprint"]:
            print(f"note: faceset {side.upper()} changed since the last run "
                  f"({old[side]['count']} -> {len(faces)} faces)", flush=True)


def train(cfg: TrainConfig, given: dict[str, Any]) -> int:
    """Train (or resume) the model of ``cfg.model``; restores Keras' global dtype policy
    and distribution."""
    policy = keras.mixed_precision.global_policy()
    distribution = keras.distribution.distribution()
    try:
        return _train(cfg, given)
    finally:
        keras.mixed_precision.set_global_policy(policy)
        keras.distribution.set_distribution(distribution)


def _auto_batch(cfg: TrainConfig, model_config: ModelConfig, loss_config: LossConfig,
                gpu: bool, local_devices: int) -> int:
    """--batch-size auto: the largest per-device batch a fresh model trains on."""
    def probe() -> SwapModel:
        trial = build_model(model_config, loss_config)
        trial.compile(optimizer=model_optimizer(trial, cfg.optimizer, cfg.lr))
        return trial

    start = PRESET_RECIPES.get(cfg.preset, PRESET_RECIPES["df128"])["batch_size"]
    return auto_batch_size(probe, model_config.resolution, cfg.eyes_mouth_priority, start, gpu,
                           local_devices)


def _train(cfg: TrainConfig, given: dict[str, Any]) -> int:
    # --- the model folder: a new one, or an existing one resumed with its stored recipe ---
    if not cfg.model:
        raise UserError("--model is required: the folder that holds (or will hold) the model")
    model_dir = Path(cfg.model)
    cluster = distribute.setup(cfg.devices)
    # Only the chief writes to the model folder: the others only read it at the start.
    state = checkpoint.read_state(model_dir, repair=cluster.chief)
    pretrained.check_mode(cfg, state, model_dir)
    source = None  # the state of the --from model
    if state is None:
        if cfg.resume:
            raise UserError(f"{model_dir}: no model to resume (no checkpoint in it)")
        if not (cfg.pretrain or cfg.a and cfg.b):
            raise UserError("--a and --b (folders of extracted faces) are required for a new model")
        cfg, source = pretrained.new_model_config(cfg, given)
        paths = {k: _absolute(getattr(cfg, k)) for k in ("a", "b", "faces") if getattr(cfg, k)}
        cfg = dataclasses.replace(cfg, **paths).resolved()
        model_config, loss_config = cfg.model_config(), cfg.loss_config()
    else:
        stored = state["config"]
        cfg = resume_config(stored, state["model_config"], cfg, given).resolved()
        model_config = ModelConfig(**state["model_config"])
        loss_config = LossConfig(**state["loss_config"])
        # Models from before phase switches existed ran the phase their recipe describes.
        state.setdefault("phase", dataclasses.asdict(phase.base_phase(stored)))
    iteration = state["iteration"] if state else 0
    seconds_before = state.get("train_seconds", 0.0) if state else 0.0
    plan = schedule.plan(state and state.get("schedule"), cfg.lr, cfg.lr * cfg.lr_floor,
                         cfg.warmup, iteration, seconds_before, cfg.iterations, cfg.minutes)
    current = phase.phase_at(cfg, plan, iteration, seconds_before)
    if cfg.sharpen_last and plan.unit is None and (state is None or "sharpen_last" in given):
        raise UserError("--sharpen-last is a share of the budget: give --iterations or --minutes")

    # --- data: both facesets decoded and resized once, batches augmented by workers ---
    gpu = gpu_visible()
    res = model_config.resolution
    pipeline = cfg.pipeline if cfg.pipeline != "auto" else ("processes" if gpu else "threads")
    workers = cfg.augment_workers(pipeline)
    if cfg.pretrain:  # both sides draw from one pool of many people
        faces_a = faces_b = pretrained.load_pool(cfg.faces, res, workers, cfg.held_out_every)
    else:
        faces_a = load_faceset(cfg.a, res, workers, cfg.held_out_every)
        faces_b = load_faceset(cfg.b, res, workers, cfg.held_out_every)
    _check_facesets(state, faces_a, faces_b)
    if state is not None and cfg.iterations is not None and state["iteration"] >= cfg.iterations:
        print(f"{model_dir} is already at iteration {state['iteration']}; nothing to do "
              "(raise --iterations to train on)", flush=True)
        return 0

    # --- the device: precision, the mesh, and the batch that fits on it ---
    precision = resolve_precision(cfg.mixed_precision)
    if precision != "off":
        keras.mixed_precision.set_global_policy(POLICIES[precision])
    cluster.activate()
    if cfg.batch_size == AUTO:  # a new model: a resumed one has its number frozen in
        cfg = dataclasses.replace(cfg, batch_size=_auto_batch(cfg, model_config, loss_config,
                                                              gpu, cluster.local_devices))
    # Each process makes only its own rows of the global batch (distribute.py).
    dataset = PairDataset(faces_a, faces_b, cluster.global_batch(cfg.batch_size), cfg,
                          cfg.seed, cfg.eyes_mouth_priority, uniform_yaw=cfg.uniform_yaw,
                          ct_mode=cfg.ct_mode, part=cluster.batch_part(cfg.batch_size))

    # --- model, optimiser, and their state when resuming ---

    def enter(now: phase.Phase, why: str) -> None:
        """Train with the switches of ``now`` from this iteration on."""
        dataset.warp_off_from(None if now.random_warp else iteration)
        phase.enter(state, iteration, now, why)

    def compile_for(now: phase.Phase) -> keras.optimizers.Optimizer:
        model.set_gan_power(now.gan_power)
        return model_optimizer(model, cfg.optimizer, cfg.lr, cfg.clipnorm, now.lr_dropout,
                               cfg.seed)

    keras.utils.set_random_seed(cfg.seed)
    # A model has its discriminator from the first run that asks for a GAN on.
    ckpt = checkpoint.find_checkpoint(model_dir) if state else None
    with_gan = cfg.gan_power > 0 or bool(ckpt and checkpoint.has_discriminator(ckpt))
    model = build_model(model_config, loss_config, cfg.gan_dims if with_gan else 0)
    model.compile(optimizer=compile_for(current))
    model.optimizer.build(model.trainable_variables)
    facesets = {"a": faces_a.info(), "b": faces_b.info()}
    if state is None:
        state = checkpoint.new_state(cfg.to_dict(), model_config, loss_config, facesets,
                                     faces_a.face_type)
        if source is not None:
            state["from"] = pretrained.start_from(model, source, Path(cfg.from_model),
                                                  cfg.from_reset, faces_a.face_type)
        enter(current, "start")
        if cluster.chief:
            checkpoint.save(model_dir, model, state, cfg.keep_backups)
    else:
        checkpoint.restore(model_dir, model)
        state.update(config=cfg.to_dict(), facesets=facesets)
        enter(current, "resume")
    state["schedule"] = plan.to_dict()
    state["devices"] = {"count": cluster.devices, "processes": cluster.num_processes,
                        "global_batch": cluster.global_batch(cfg.batch_size),
                        "lr_factor": round(cluster.lr_factor, 6)}

    def save() -> None:
        guard.snapshot(iteration)  # never writes broken weights: rolls back to good ones
        state["iteration"] = iteration
        state["train_seconds"] = seconds_before + time.monotonic() - start
        if cluster.chief:
            checkpoint.save(model_dir, model, state, cfg.keep_backups)

    def draw() -> None:
        if not cluster.chief:
            return
        title = f"{model_dir.name}: iteration {iteration}, {current.describe()}"
        write_preview(model, preview_a, preview_b, model_dir / PREVIEW, title)
        write_loss_plot(state["history"], state["rollbacks"], model_dir / LOSS_PLOT, title,
                        state.get("rates"), state.get("phases"), state.get("gan_history"))

    def record() -> None:
        """One loss-history point: the mean of the iterations since the last one."""
        nonlocal window, gan_window
        if gan_window:
            mean_d, mean_g = (round(float(v), 6) for v in np.mean(gan_window, axis=0))
            state.setdefault("gan_history", []).append([iteration, mean_d, mean_g])
            gan_window = []
        if window:
            mean_a, mean_b = (round(float(v), 6) for v in np.mean(window, axis=0))
            state["history"].append([iteration, mean_a, mean_b])
            rate = learning_rate(model.optimizer)
            state.setdefault("rates", []).append([iteration, float(f"{rate:.4g}")])
            if tensorboard:
                tensorboard.scalars(iteration, {"loss_a": mean_a, "loss_b": mean_b,
                                                "learning_rate": rate})
            window = []

    # --- the loop ---
    preview_a, preview_b = dataset.fixed_faces(PREVIEW_FACES)
    tensorboard = TensorBoardLog(model_dir / "logs") if cfg.tensorboard and cluster.chief \
        else None
    guard = NanGuard(model, state, iteration, cfg.rollback_every, model_dir)
    faces_per_step = 2 * cluster.global_batch(cfg.batch_size)
    first_iteration, window, gan_window = iteration, [], []
    step_time, reason, failure = None, "the iteration target", None
    warn_cpu = cfg.preset != CPU_PRESET and not gpu
    bar = progress(cfg.iterations, "it", "train", initial=iteration, quiet=not cluster.chief)
    with make_prefetcher(dataset, iteration, workers, cfg.prefetch, pipeline) as batches, \
            StopRequest() as stop, bar:
        tqdm.write(f"{'pretraining' if cfg.pretrain else 'training'} {model_dir} "
                   f"({keras.backend.backend()}, {precision}): "
                   f"{model_config.arch} {res} px, batch {cfg.batch_size} per side"
                   + (f" and device ({cluster.describe()}, "
                      f"{cluster.global_batch(cfg.batch_size)} in all)"
                      if cluster.distribution is not None else "")
                   + f", {workers} augmenting {pipeline}, "
                   f"{cfg.optimizer} lr {cfg.lr:g}, {current.describe()}, "
                   f"from iteration {iteration}"
                   + (f" to {cfg.iterations}" if cfg.iterations is not None else "")
                   + (f" for at most {cfg.minutes:g} min" if cfg.minutes else "")
                   + (f", a pool of {len(faces_a)} faces from {len(cfg.faces)} folders"
                      if cfg.pretrain else ""))
        sys.stdout.flush()
        start = last_save = time.monotonic()
        deadline = start + cfg.minutes * 60 if cfg.minutes else math.inf
        if plan.unit == "seconds":  # a resumed time schedule ends where it was planned to
            deadline = min(deadline, start + plan.end - seconds_before)
        while cfg.iterations is None or iteration < cfg.iterations:
            # Every process stops at the same iteration and follows the chief's clock.
            stopping, seconds = cluster.agree(stop.requested or time.monotonic() >= deadline,
                                              seconds_before + time.monotonic() - start)
            if stopping:
                reason = "Ctrl-C" if stop.requested else "the time budget"
                break
            t0 = time.perf_counter()
            now = phase.phase_at(cfg, plan, iteration, seconds)
            if now != current:
                if (now.lr_dropout, now.gan_power) != (current.lr_dropout, current.gan_power):
                    replace_optimizer(model, compile_for(now))
                    guard.snapshot(iteration)  # the rollback target of the new optimiser
                enter(now, f"--sharpen-last {cfg.sharpen_last:g}")
                current = now
                tqdm.write(f"iteration {iteration}: {now.describe()}")
            set_learning_rate(model.optimizer, plan.rate(iteration, seconds)
                              * state.get("lr_scale", 1.0) * cluster.lr_factor)
            try:
                x, y = next(batches)
            except WorkerDied as exc:  # saved below, then said in one line
                failure, reason = exc, "a data worker died"
                break
            logs = model.train_on_batch(x=x, y=y, return_dict=True)
            loss_a, loss_b = float(logs["loss_a"]), float(logs["loss_b"])
            gan = (float(logs["loss_d"]), float(logs["loss_g"])) if current.gan_power else ()
            iteration += 1
            dt = time.perf_counter() - t0
            # The first steps include tracing/compiling: keep them out of the average.
            warm = iteration > first_iteration + 2 and step_time is not None
            step_time = 0.9 * step_time + 0.1 * dt if warm else dt
            if not guard.after_step((loss_a, loss_b, *gan), iteration):
                # The weights are those of the snapshot again, and so is the count: an
                # undone step is not an iteration trained.
                iteration = guard.good.iteration
                continue
            if warn_cpu and iteration == first_iteration + 4:
                warn_cpu = False
                tqdm.write(f"no GPU: one {cfg.preset} iteration takes {step_time:.1f} s here "
                           f"({flops_per_sample(model_config) * faces_per_step / 1e9:.0f} "
                           f"GFLOP); --preset {CPU_PRESET} is sized to train in minutes on "
                           "a CPU")

            window.append((loss_a, loss_b))
            if gan:
                gan_window.append(gan)
            if len(window) >= cfg.log_every:
                record()
            elapsed = time.monotonic() - start
            left = deadline - time.monotonic()
            if cfg.iterations is not None:
                left = min(left, (cfg.iterations - iteration) * step_time)
            wait = batches.wait_seconds / max(elapsed, 1e-9)
            speed = f"{faces_per_step / step_time:.1f} faces/s, data wait {wait:.0%}"
            bar.set_postfix_str(f"A {loss_a:.4f} B {loss_b:.4f} {speed}, left {clock(left)}",
                                refresh=False)
            bar.update()
            if iteration == cfg.iterations:
                break  # saved and drawn below, once
            if cfg.preview_every and iteration % cfg.preview_every == 0:
                draw()
                tqdm.write(f"iteration {iteration}: loss A {loss_a:.4f} B {loss_b:.4f}, {speed}")
            if (cfg.autosave_minutes and time.monotonic() - last_save >= cfg.autosave_minutes * 60
                    or cfg.save_every and iteration % cfg.save_every == 0):
                save()
                last_save = time.monotonic()

    # --- stop: the iteration target, the time budget or Ctrl-C ---
    elapsed = time.monotonic() - start
    record()
    save()
    if cfg.preview_every:
        draw()
    if tensorboard:
        tensorboard.close()
    done = iteration - first_iteration
    rate = f", {done * faces_per_step / elapsed:.1f} faces/s" if done and elapsed > 0 else ""
    loss = (f", loss A {state['history'][-1][1]:.5f} B {state['history'][-1][2]:.5f}"
            if state["history"] else "")
    print(f"stopped at iteration {iteration} ({reason}){loss} after {clock(elapsed)}{rate}, "
          f"data wait {batches.wait_seconds / max(elapsed, 1e-9):.0%}; saved to {model_dir}",
          flush=True)
    if failure is not None:
        raise failure
    return 0


def _absolute(paths: str | list[str]) -> str | list[str]:
    if isinstance(paths, str):
        return str(Path(paths).resolve())
    return [str(Path(p).resolve()) for p in paths]
