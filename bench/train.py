"""Training throughput: the train step alone, the data pipeline alone, and both together.

    KERAS_BACKEND=jax python bench/train.py [--preset quick] [--arch liae-ud] [--batch-size 8]
                                            [--mixed-precision off|bf16] [--steps 12]
                                            [--workers 2] [--data-only] [--a DIR --b DIR]

The step runs on one batch held in memory, so it is the ceiling; the full loop is what
the trainer does every iteration (next batch from the prefetching thread pool, then one
train step). full/step close to 1 (target >= 0.95) means augmentation is hidden behind
the step. Without --a/--b, 48 crops per side are cut from clips rendered from the bundled
portraits (centre crop, landmarks placed where eyes and mouth are): augmentation costs the
same on them as on extracted faces, and no TensorFlow/MTCNN is needed on a GPU machine.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("INTRACODER_NO_PROGRESS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import cv2  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402

from intracoder.data.augmentation import PRIORITY_REGIONS  # noqa: E402
from intracoder.data.dataset import PairDataset, Prefetcher, load_faceset  # noqa: E402
from intracoder.faces.faceset import FaceMeta, write_face  # noqa: E402
from intracoder.models.autoencoder import build_model, flops_per_sample  # noqa: E402
from intracoder.samples import render_clip  # noqa: E402
from intracoder.training.config import TrainConfig  # noqa: E402
from intracoder.training.device import POLICIES  # noqa: E402
from intracoder.training.optimizers import make_optimizer  # noqa: E402

# Where eyes and mouth sit in a centre crop of a rendered clip (fractions of the crop).
REGIONS = ((0.36, 0.42, 0.07, 0.03), (0.64, 0.42, 0.07, 0.03), (0.5, 0.72, 0.12, 0.05))


def write_crops(folder: Path, portrait: str, n: int, size: int) -> None:
    folder.mkdir(parents=True)
    clip = render_clip(portrait, n_frames=n, size=size * 2, max_angle=8, zoom=(0.95, 1.05))
    landmarks = np.zeros((468, 3))
    landmarks[:, :2] = size / 2
    for region, (cx, cy, rx, ry) in zip(PRIORITY_REGIONS, REGIONS):
        t = np.linspace(0, 2 * np.pi, len(region), endpoint=False)
        landmarks[list(region), :2] = np.c_[cx + rx * np.cos(t), cy + ry * np.sin(t)] * size
    mask = np.zeros((size, size), np.uint8)
    cv2.ellipse(mask, (size // 2, size // 2), (size * 3 // 8, size * 7 // 16), 0, 0, 360, 255, -1)
    for i, frame in enumerate(clip.frames):
        crop = cv2.resize(frame[size * 3 // 8: size * 13 // 8, size * 3 // 8: size * 13 // 8],
                          (size, size), interpolation=cv2.INTER_AREA)
        meta = FaceMeta(source=portrait, frame=i, face_index=0, confidence=1.0,
                        points5=[[0, 0]] * 5, landmarks=landmarks.tolist(),
                        matrix=[[1, 0, 0], [0, 1, 0]], face_type="full", size=size, blur=1.0,
                        yaw=0, pitch=0, roll=0, version="bench")
        write_face(folder / f"{portrait}_{i:06d}_0.png", crop, mask, meta)


def rate(fn, count: int, faces_per_call: int) -> float:
    start = time.perf_counter()
    for _ in range(count):
        fn()
    return count * faces_per_call / (time.perf_counter() - start)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="quick")
    p.add_argument("--arch", default=None, help="model layout (default: the preset's)")
    p.add_argument("--resolution", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--mixed-precision", default="off", choices=["off", "bf16", "fp16"])
    p.add_argument("--steps", type=int, default=12, help="steps of each kind")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--priority", action="store_true", help="eyes/mouth priority masks too")
    p.add_argument("--data-only", action="store_true", help="measure the data pipeline only")
    p.add_argument("--a")
    p.add_argument("--b")
    args = p.parse_args()
    load_before = os.getloadavg()[0]  # other processes: this machine may be shared

    cfg = TrainConfig(preset=args.preset, arch=args.arch, resolution=args.resolution,
                      batch_size=args.batch_size, eyes_mouth_priority=args.priority,
                      workers=args.workers).resolved()
    args.batch_size = cfg.batch_size
    if args.mixed_precision != "off":
        keras.mixed_precision.set_global_policy(POLICIES[args.mixed_precision])
    mc = cfg.model_config()
    res = mc.resolution
    faces = 2 * args.batch_size
    with tempfile.TemporaryDirectory() as tmp:
        if args.a and args.b:
            a_dir, b_dir = Path(args.a), Path(args.b)
        else:
            a_dir, b_dir = Path(tmp) / "a", Path(tmp) / "b"
            write_crops(a_dir, "grace_hopper", 48, max(res, 128))
            write_crops(b_dir, "astronaut", 48, max(res, 128))
        dataset = PairDataset(load_faceset(a_dir, res), load_faceset(b_dir, res),
                              args.batch_size, cfg, priority=args.priority)

        # 1. data pipeline alone: one thread, then the prefetching pool.
        it = iter(range(10**9))
        data_one = rate(lambda: dataset[next(it)], 20, faces)
        with Prefetcher(dataset, 0, args.workers, cfg.prefetch) as batches:
            next(batches)
            data_pool = rate(lambda: next(batches), 40, faces)

        if args.data_only:
            print(f"{args.preset} ({res} px), batch {args.batch_size} per side, data pipeline: "
                  f"1 thread {data_one:.0f} faces/s, "
                  f"{args.workers} workers {data_pool:.0f} faces/s")
            return

        # 2. the train step alone, on a batch already in memory, and 3. the full loop: what
        # the trainer does per iteration (the batch it takes is replaced by one built on a
        # worker thread during this same step). One of each in turn, medians: other
        # processes on a shared machine slow both alike.
        keras.utils.set_random_seed(0)
        model = build_model(mc, cfg.loss_config())
        model.compile(optimizer=make_optimizer(cfg.optimizer, cfg.lr))
        x, y = dataset[0]
        for _ in range(2):  # trace / compile
            model.train_on_batch(x=x, y=y)
        step_times, full_times = [], []
        with Prefetcher(dataset, 1, args.workers, cfg.prefetch) as batches:
            for _ in range(args.steps):
                start = time.perf_counter()
                model.train_on_batch(x=x, y=y)
                step_times.append(time.perf_counter() - start)
                start = time.perf_counter()
                model.train_on_batch(*next(batches))
                full_times.append(time.perf_counter() - start)
            waited = batches.wait_seconds
        step = faces / statistics.median(step_times)
        full = faces / statistics.median(full_times)
        full_seconds = sum(full_times)

    flops = flops_per_sample(mc)
    backend = keras.backend.backend()
    print(f"backend {backend}, preset {args.preset} ({mc.arch}, {res} px, "
          f"{args.mixed_precision}), batch {args.batch_size} per "
          f"side = {faces} faces/step, workers {args.workers}, cpu cores {os.cpu_count()}, "
          f"median of {args.steps} steps each, load average before {load_before:.1f}")
    print(f"data pipeline, 1 thread     {data_one:9.1f} faces/s")
    print(f"data pipeline, {args.workers} workers   {data_pool:9.1f} faces/s")
    print(f"train step alone            {step:9.1f} faces/s")
    print(f"full loop                   {full:9.1f} faces/s   (waited for data "
          f"{waited:.2f} s of {full_seconds:.0f} s)")
    print(f"full / step                 {full / step:9.3f}")
    print(f"model FLOPs per face        {flops / 1e9:9.2f} GFLOP (training: fwd + bwd)")
    print(f"achieved                    {flops * step / 1e9:9.1f} GFLOP/s (step), "
          f"{flops * full / 1e9:.1f} GFLOP/s (full loop)")
    print(f"| {backend} | {args.preset} | {args.batch_size} | {step:.1f} | {data_pool:.0f} | "
          f"{full:.1f} | {full / step:.3f} | {waited / full_seconds:.1%} | {flops / 1e9:.2f} | "
          f"{flops * step / 1e9:.1f} |")


if __name__ == "__main__":
    main()
