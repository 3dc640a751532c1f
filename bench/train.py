"""Training throughput: the data pipeline alone, the train step alone, the full loop, the
fraction of the device's peak, and the scaling over N devices.

    [KERAS_BACKEND=jax] python bench/train.py [--preset df128] [--arch liae-ud]
        [--batch-size 8|auto] [--mixed-precision off|bf16|fp16] [--devices N|all]
        [--pipeline threads|processes] [--workers N] [--steps 12] [--data-only]
        [--a DIR --b DIR]

Data pipeline: batches per second from one thread, from ``--workers`` threads, from one
worker process and from ``--workers`` processes (data/workers.py), as faces/s in total
and per worker. The step trains on one batch held in memory, so it is the ceiling; the
full loop is what the trainer does every iteration (next batch from the prefetcher, then
one step). full/step close to 1 (target >= 0.95) means augmentation is hidden behind the
step. The fraction of peak is training FLOPs per second over the device's dense peak in
the run's precision (PEAKS; a CPU's is measured here with a large matmul). With
``--devices N`` (JAX) the step also runs on one device at the per-device batch, and the
scaling efficiency is faces/s on N / (N x faces/s on one).

Without --a/--b, 48 crops per side are cut from clips rendered from the bundled portraits
(landmarks placed where eyes and mouth are): augmentation costs the same on them as on
extracted faces, and no TensorFlow/MTCNN is needed on a GPU machine.
"""

from __future__ import annotations

import argparse
import dataclasses
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
from intracoder.data.dataset import PairDataset, load_faceset  # noqa: E402
from intracoder.data.workers import make_prefetcher  # noqa: E402
from intracoder.faces.faceset import FaceMeta, write_face  # noqa: E402
from intracoder.models.autoencoder import build_model, flops_per_sample  # noqa: E402
from intracoder.training import distribute  # noqa: E402
from intracoder.training.autobatch import auto_batch_size  # noqa: E402
from intracoder.training.config import AUTO, TrainConfig  # noqa: E402
from intracoder.training.device import POLICIES, gpu_visible  # noqa: E402
from intracoder.training.optimizers import make_optimizer  # noqa: E402

# Where eyes and mouth sit in a centre crop of a rendered clip (fractions of the crop).
REGIONS = ((0.36, 0.42, 0.07, 0.03), (0.64, 0.42, 0.07, 0.03), (0.5, 0.72, 0.12, 0.05))
# Dense bf16/fp16 matrix peaks in FLOP/s, by a word of the device's name. H100/H200: as
# measured on the lent machine (REFERENCE.md); the others from their makers' sheets.
# float32 peaks are not listed: a GPU's float32 run is scored against its bf16 peak.
PEAKS = {"H200": 790e12, "H100": 790e12, "A100": 312e12, "4090": 165e12}


def write_crops(folder: Path, portrait: str, n: int, size: int) -> None:
    from intracoder.samples import render_clip

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


def pipeline_rate(dataset: PairDataset, pipeline: str, workers: int, depth: int,
                  batches: int) -> float:
    """Faces/s a prefetcher delivers when nothing else runs (its start-up excluded)."""
    with make_prefetcher(dataset, 0, workers, depth, pipeline) as feed:
        for _ in range(max(depth, workers) + 1):  # warm: every worker has started
            next(feed)
        return rate(lambda: next(feed), batches, 2 * dataset.local_batch_size)


def device_peak(precision: str) -> tuple[float, str]:
    """(peak FLOP/s, where it comes from) of the first device Keras trains on."""
    name = device_name()
    for word, peak in PEAKS.items():
        if word in name:
            return peak, f"{name}, listed"
    return measured_matmul_peak(precision), f"{name}, measured (matmul)"


def device_name() -> str:
    if keras.backend.backend() == "jax":
        import jax

        return jax.devices()[0].device_kind
    if keras.backend.backend() == "torch":
        import torch

        if torch.cuda.is_available():
            return torch.cuda.get_device_name(0)
    return f"CPU x{os.cpu_count()}"


def measured_matmul_peak(precision: str, n: int = 2048, repeats: int = 8) -> float:
    dtype = {"bf16": "bfloat16", "fp16": "float16"}.get(precision, "float32")
    a = keras.ops.ones((n, n), dtype=dtype)
    keras.ops.convert_to_numpy(keras.ops.matmul(a, a))  # warm up
    start = time.perf_counter()
    for _ in range(repeats):
        out = keras.ops.matmul(a, a)
    keras.ops.convert_to_numpy(out)
    return 2 * n**3 * repeats / (time.perf_counter() - start)


def compiled(mc, cfg) -> keras.Model:
    model = build_model(mc, cfg.loss_config())
    model.compile(optimizer=make_optimizer(cfg.optimizer, cfg.lr))
    return model


def step_rate(mc, cfg, x, y, steps: int) -> tuple[keras.Model, float, list[float]]:
    """A fresh model's median faces/s on one batch held in memory, and its step times."""
    keras.utils.set_random_seed(0)
    model = compiled(mc, cfg)
    for _ in range(2):  # trace / compile
        model.train_on_batch(x=x, y=y)
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        model.train_on_batch(x=x, y=y)
        times.append(time.perf_counter() - start)
    return model, 2 * len(x[0]) / statistics.median(times), times


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="quick")
    p.add_argument("--arch", default=None, help="model layout (default: the preset's)")
    p.add_argument("--resolution", type=int, default=None)
    p.add_argument("--batch-size", default=None,
                   help="per side and device, or auto: the largest that fits (GPU)")
    p.add_argument("--mixed-precision", default="off", choices=["off", "bf16", "fp16"])
    p.add_argument("--devices", default="1", help="N or all: data parallel (JAX only)")
    p.add_argument("--pipeline", default="threads", choices=["threads", "processes"],
                   help="the full loop's prefetcher")
    p.add_argument("--steps", type=int, default=12, help="steps of each kind")
    p.add_argument("--workers", type=int, default=None,
                   help="augmenting workers (default: as train's, for --pipeline)")
    p.add_argument("--priority", action="store_true", help="eyes/mouth priority masks too")
    p.add_argument("--data-only", action="store_true", help="measure the data pipeline only")
    p.add_argument("--a")
    p.add_argument("--b")
    args = p.parse_args()
    load_before = os.getloadavg()[0]  # other processes: this machine may be shared

    auto = args.batch_size == AUTO
    cfg = TrainConfig(preset=args.preset, arch=args.arch, resolution=args.resolution,
                      batch_size=None if auto or args.batch_size is None
                      else int(args.batch_size),
                      eyes_mouth_priority=args.priority, workers=args.workers).resolved()
    workers = cfg.augment_workers(args.pipeline)
    cluster = distribute.setup(args.devices)
    if args.mixed_precision != "off":
        keras.mixed_precision.set_global_policy(POLICIES[args.mixed_precision])
    mc = cfg.model_config()
    if auto:  # as train --batch-size auto does it
        cluster.activate()
        cfg = dataclasses.replace(cfg, batch_size=auto_batch_size(
            lambda: compiled(mc, cfg), mc.resolution, args.priority, cfg.batch_size,
            gpu_visible(), cluster.local_devices))
    per_device = cfg.batch_size
    batch = cluster.global_batch(per_device)
    res = mc.resolution
    faces = 2 * batch
    print(f"backend {keras.backend.backend()}, preset {args.preset} ({mc.arch}, {res} px, "
          f"{args.mixed_precision}), batch {per_device} per side and device x "
          f"{cluster.devices} device(s) = {faces} faces/step, cpu cores {os.cpu_count()}, "
          f"median of {args.steps} steps, load average before {load_before:.1f}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        if args.a and args.b:
            a_dir, b_dir = Path(args.a), Path(args.b)
        else:
            a_dir, b_dir = Path(tmp) / "a", Path(tmp) / "b"
            write_crops(a_dir, "grace_hopper", 48, max(res, 128))
            write_crops(b_dir, "astronaut", 48, max(res, 128))
        dataset = PairDataset(load_faceset(a_dir, res), load_faceset(b_dir, res), batch, cfg,
                              priority=args.priority)

        # 1. the data pipeline alone: one thread in this process, the thread pool, one
        # worker process and the process pool.
        it = iter(range(10**9))
        data = {"1 thread": rate(lambda: dataset[next(it)], 20, faces)}
        pool = max(workers, 2)
        for kind, one in (("threads", "thread"), ("processes", "process")):
            for n in sorted({1, pool}):
                if (kind, n) != ("threads", 1):
                    data[f"{n} {one if n == 1 else kind}"] = (
                        pipeline_rate(dataset, kind, n, cfg.prefetch, 30))
        for name, value in data.items():
            n = int(name.split()[0])
            print(f"data pipeline, {name:<12} {value:9.1f} faces/s  ({value / n:.1f} per "
                  "worker)", flush=True)
        if args.data_only:
            return

        # 2. the step alone (on one device first when scaling is asked for), then 3. the
        # full loop with the chosen prefetcher.
        x, y = dataset[0]
        single = None
        if cluster.devices > 1:
            keras.distribution.set_distribution(None)
            x1 = tuple(a[:per_device] for a in x)
            _, single, _ = step_rate(mc, cfg, x1, tuple(a[:per_device] for a in y), args.steps)
        cluster.activate()
        model, step, _ = step_rate(mc, cfg, x, y, args.steps)
        full_times = []
        with make_prefetcher(dataset, 1, workers, cfg.prefetch, args.pipeline) as feed:
            for _ in range(2):
                model.train_on_batch(*next(feed))
            waited_before = feed.wait_seconds
            for _ in range(args.steps):
                start = time.perf_counter()
                model.train_on_batch(*next(feed))
                full_times.append(time.perf_counter() - start)
            waited = feed.wait_seconds - waited_before
        full = faces / statistics.median(full_times)

    flops = flops_per_sample(mc)
    peak, peak_source = device_peak(args.mixed_precision)
    print(f"train step alone            {step:9.1f} faces/s")
    feeder = f"{workers} {args.pipeline if workers > 1 else args.pipeline.rstrip('es') + ''}"
    print(f"full loop ({feeder:<13}) {full:9.1f} faces/s   (waited for data "
          f"{waited:.2f} s of {sum(full_times):.1f} s)")
    print(f"full / step                 {full / step:9.3f}")
    print(f"model FLOPs per face        {flops / 1e9:9.2f} GFLOP (training: fwd + bwd)")
    print(f"achieved                    {flops * step / 1e12:9.3f} TFLOP/s (step), "
          f"{flops * full / 1e12:.3f} TFLOP/s (full loop)")
    print(f"device peak                 {peak / 1e12:9.3f} TFLOP/s ({peak_source})")
    print(f"fraction of peak            {flops * step / peak:9.1%} (step), "
          f"{flops * full / peak:.1%} (full loop)")
    if single is not None:
        print(f"1 device, {per_device} per side      {single:9.1f} faces/s")
        print(f"scaling efficiency          {step / (cluster.devices * single):9.1%} "
              f"({cluster.devices} devices)")
    best_data = max(v for k, v in data.items() if "process" in k)
    print(f"| {keras.backend.backend()} | {args.preset} | {args.mixed_precision} | "
          f"{per_device}x{cluster.devices} | {step:.1f} | {best_data:.0f} | {full:.1f} | "
          f"{full / step:.3f} | {flops * step / peak:.1%} |")


if __name__ == "__main__":
    main()
