"""Conversion throughput per stage, against its two floors; numbers go to docs/benchmarks.md.

    python bench/convert.py [--frames N] [--model DIR] [--blend seamless|alpha]

Without --model, a quick-preset model is trained for a few iterations on faces extracted
from the bundled portraits (its quality does not matter for speed, its size does). Clips:
a 512x512 clip rendered from a portrait and, when present, the first N frames of
/work/shared/facedata/person_a.mp4 (512x512, 25 fps). For each clip it prints the whole
run in frames/s, its CPU time per frame (far less sensitive than wall time to other jobs on
a shared machine), milliseconds per frame of each stage, and two ratios: the whole run
against decoding and re-encoding the clip alone (the floor any conversion pays), and
against the model's inference alone on the same number of faces.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("INTRACODER_NO_PROGRESS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from intracoder.convert.pipeline import STAGES, ConvertConfig, convert  # noqa: E402
from intracoder.faces.extract import ExtractConfig, FaceFinder, extract  # noqa: E402
from intracoder.media.video import VideoWriter, iter_frames, probe  # noqa: E402
from intracoder.samples import render_clip, write_clip  # noqa: E402

WRITER_STAGES = ("mark", "encode")
FACEDATA = Path(__file__).resolve().parents[2] / "shared" / "facedata"


def quick_model(root: Path, finder: FaceFinder, iterations: int) -> Path:
    from intracoder.training.config import TrainConfig
    from intracoder.training.loop import train

    sides = []
    for side, name in (("a", "grace_hopper"), ("b", "astronaut")):
        clip = root / f"{name}.mp4"
        write_clip(render_clip(name, n_frames=12, size=256, seed=1).frames, clip)
        extract(ExtractConfig(input=str(clip), out_dir=str(root / side), size=128, largest=True),
                finder=finder)
        sides.append(str(root / side))
    model = root / "model"
    train(TrainConfig(a=sides[0], b=sides[1], model=str(model), preset="quick",
                      iterations=iterations, batch_size=4, lr=5e-4, preview_every=0), {})
    return model


def cpu_seconds() -> float:
    """CPU time (user + system) of this process, decoding and encoding included (PyAV runs
    FFmpeg's libraries in it). Unlike wall time it hardly depends on what else the shared
    machine is running."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    return own.ru_utime + own.ru_stime


def floor_seconds(clip: Path, out: Path, frames: int) -> float:
    """Decode + H.264 encode of the same frames with convert's settings, nothing else."""
    info = probe(clip)
    start = time.perf_counter()
    with VideoWriter(out, info.width, info.height, info.fps_fraction,
                     audio_from=clip if info.has_audio else None) as writer:
        for frame in iter_frames(clip, 0, frames):
            writer.write(frame)
    return time.perf_counter() - start


def model_seconds(model, faces: int, batch: int) -> float:
    """Inference alone on ``faces`` crops, batched as convert batches them."""
    res = model.config.resolution
    crops = np.random.default_rng(0).integers(0, 256, (batch, res, res, 3), dtype=np.uint8)
    model.decode(crops, "b", batch_size=batch)  # trace outside the timing
    start = time.perf_counter()
    for done in range(0, faces, batch):
        model.decode(crops[:min(batch, faces - done)], "b", batch_size=batch)
    return time.perf_counter() - start


def bench_clip(clip: Path, model_dir: Path, loaded, finder, args, tmp: Path) -> None:
    frames = min(args.frames, probe(clip).frame_count)
    cfg = ConvertConfig(input=str(clip), output=str(tmp / f"swapped_{clip.stem}.mp4"),
                        model=str(model_dir), blend=args.blend, color=args.color, end=frames,
                        batch=args.batch, detect_every=args.detect_every, workers=1)
    # A short run first: the model's predict graph is traced once per process.
    convert(dataclasses.replace(cfg, end=min(frames, args.batch)), finder, loaded)
    cpu_before = cpu_seconds()
    summary = convert(cfg, finder, loaded)
    cpu_self = cpu_seconds() - cpu_before
    floor = floor_seconds(clip, tmp / f"floor_{clip.stem}.mp4", frames)
    infer = model_seconds(loaded[0], max(summary.faces_swapped, 1), args.batch)
    n = summary.frames
    print(f"== {clip.name}: {n} frames, {summary.faces_swapped} faces, "
          f"blend {args.blend}, colour {args.color}, detect every {args.detect_every}")
    print(f"  whole run              {n / summary.seconds:8.2f} frames/s")
    print(f"  CPU per frame: {1000 * cpu_self / n:.1f} ms (all threads, decode and encode "
          f"included)")
    # mark and encode run on the writer thread, alongside the next chunk's other stages.
    for stage in STAGES:
        where = " (writer thread)" if stage in WRITER_STAGES else ""
        print(f"  {stage:22s} {1000 * summary.stages[stage] / n:8.2f} ms/frame{where}")
    other = summary.seconds - sum(t for s, t in summary.stages.items() if s not in WRITER_STAGES)
    print(f"  {'(rest: loop, waiting)':22s} {1000 * other / n:8.2f} ms/frame")
    print(f"  floor: decode+encode alone {n / floor:8.2f} frames/s; whole/floor "
          f"time ratio {summary.seconds / floor:.2f}")
    print(f"  model inference alone {1000 * infer / n:8.2f} ms/frame; whole/model time ratio "
          f"{summary.seconds / infer:.2f}")
    print(f"  blend/model stage time ratio {summary.stages['blend'] / summary.stages['model']:.2f} "
          "(the target is below 1)")


def bench_parts(clip: Path, model_dir: Path, args, tmp: Path) -> None:
    """The same clip converted by one worker process and in parts over N (workers load the
    model themselves, as in a real run, so their start-up is counted)."""
    frames = min(args.frames, probe(clip).frame_count)
    base = ConvertConfig(input=str(clip), output="", model=str(model_dir), blend=args.blend,
                         color=args.color, end=frames, batch=args.batch,
                         detect_every=args.detect_every, segment_frames=args.segment_frames)
    one = convert(dataclasses.replace(base, output=str(tmp / f"one_{clip.stem}.mp4"),
                                      workers=1))
    many = convert(dataclasses.replace(base, output=str(tmp / f"parts_{clip.stem}.mp4"),
                                       workers=args.workers or 2, cluster=args.cluster))
    where = f"Ray local, {args.workers or 2} CPUs" if args.cluster else f"{args.workers} workers"
    print(f"== {clip.name} in parts ({where}, {many.parts} parts of <= {args.segment_frames})")
    print(f"  one worker             {one.frames / one.seconds:8.2f} frames/s")
    print(f"  in parts               {many.frames / many.seconds:8.2f} frames/s; speed-up "
          f"{one.seconds / many.seconds:.2f}x (workers' start-up included)")
    print(f"  join (no re-encode)    {1000 * many.join_seconds / many.frames:8.2f} ms/frame, "
          f"{many.join_seconds:.2f} s in all")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=100, help="frames per clip")
    ap.add_argument("--model", help="a trained model folder (default: train a quick one)")
    ap.add_argument("--iterations", type=int, default=20, help="training of the quick model")
    defaults = {f.name: f.default for f in dataclasses.fields(ConvertConfig)}
    ap.add_argument("--blend", default=defaults["blend"], choices=["seamless", "alpha"])
    ap.add_argument("--color", default=defaults["color"])
    ap.add_argument("--batch", type=int, default=defaults["batch"])
    ap.add_argument("--detect-every", type=int, default=defaults["detect_every"])
    ap.add_argument("--workers", type=int, default=0, help="also convert in parts on N worker "
                    "processes and report the speed-up over one worker and the join cost")
    ap.add_argument("--cluster", choices=["local"], help="the parts as tasks of a local Ray "
                    "cluster (with --workers CPUs)")
    ap.add_argument("--segment-frames", type=int, default=defaults["segment_frames"])
    args = ap.parse_args()

    from intracoder.training.inference import load_model

    finder = FaceFinder()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        model_dir = Path(args.model) if args.model else quick_model(tmp, finder, args.iterations)
        loaded = load_model(model_dir)
        clips = [tmp / "portrait_512.mp4"]
        write_clip(render_clip("grace_hopper", n_frames=args.frames, size=512, seed=3).frames,
                   clips[0])
        if (FACEDATA / "person_a.mp4").exists():
            clips.append(FACEDATA / "person_a.mp4")
        for clip in clips:
            bench_clip(clip, model_dir, loaded, finder, args, tmp)
            if args.workers or args.cluster:
                bench_parts(clip, model_dir, args, tmp)


if __name__ == "__main__":
    main()
