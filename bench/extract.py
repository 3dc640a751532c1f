"""Extraction throughput per stage, and the whole run against MTCNN detection alone.

    python bench/extract.py [--frames N] [--size 256]

Runs on a 512x512 clip rendered from the bundled portraits and, when present, on
../shared/facedata/person_a.mp4. Detection is the floor: the whole run should add little
on top of it (ratio whole/detect close to 1).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("INTRACODER_NO_PROGRESS", "1")

from intracoder.faces.extract import ExtractConfig, FaceFinder, crop_face, extract, face_meta  # noqa: E402
from intracoder.faces.faceset import write_face  # noqa: E402
from intracoder.faces.frames import FrameSource  # noqa: E402
from intracoder.samples import render_clip, write_clip  # noqa: E402

FACEDATA = Path(__file__).resolve().parents[1].parent / "shared" / "facedata"


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def bench_clip(path: Path, finder: FaceFinder, size: int, batch: int, limit: int) -> dict:
    source = FrameSource(path)
    frames, t_decode = timed(lambda: [f for f, _ in zip(source.frames(), range(limit))])
    images = [f.image for f in frames]
    n = len(images)

    dets, t_detect = timed(lambda: sum((finder.detector.detect(images[i:i + batch])
                                        for i in range(0, n, batch)), []))
    _, t_detect_single = timed(lambda: [finder.detector.detect([im]) for im in images[:batch]])
    faces = [(im, d) for im, ds in zip(images, dets) for d in ds[:1]]
    meshes, t_mesh = timed(lambda: [finder.mesh.landmarks(im, d.points5, d.box) for im, d in faces])

    with tempfile.TemporaryDirectory() as tmp:
        def align_write():
            from intracoder.faces.extract import FoundFace

            for k, ((im, d), (lm, score)) in enumerate(zip(faces, meshes)):
                crop, mask, m = crop_face(im, lm, "full", size)
                meta = face_meta(str(path), k, 0, FoundFace(d, lm, score), m, crop, mask, "full", size)
                write_face(Path(tmp) / f"{k:06d}.png", crop, mask, meta)

        _, t_write = timed(align_write)
        cfg = ExtractConfig(input=str(path), out_dir=str(Path(tmp) / "run"), size=size,
                            batch_size=batch, largest=True)
        summary, t_whole = timed(lambda: extract(cfg, finder=finder))
    nf = len(faces)
    return {
        "clip": path.name, "frames": n, "faces": nf,
        "decode fps": n / t_decode,
        "detect fps (batch %d)" % batch: n / t_detect,
        "detect fps (one by one)": min(batch, n) / t_detect_single,
        "landmarks faces/s": nf / t_mesh,
        "align+write faces/s": nf / t_write,
        "whole run fps": summary.frames_read / t_whole,
        "whole/detect time ratio": (t_whole / summary.frames_read) / (t_detect / n),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=64, help="frames per clip")
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--batch", type=int, default=8)
    args = ap.parse_args()
    finder = FaceFinder(largest=True)
    clips = []
    with tempfile.TemporaryDirectory() as tmp:
        rendered = Path(tmp) / "portrait_512.mp4"
        write_clip(render_clip("grace_hopper", n_frames=args.frames, size=512).frames, rendered)
        clips.append(rendered)
        if (FACEDATA / "person_a.mp4").exists():
            clips.append(FACEDATA / "person_a.mp4")
        for clip in clips:
            result = bench_clip(clip, finder, args.size, args.batch, args.frames)
            print(f"== {result.pop('clip')}: {result.pop('frames')} frames, {result.pop('faces')} faces")
            for k, v in result.items():
                print(f"  {k:28s} {v:8.2f}")


if __name__ == "__main__":
    main()
