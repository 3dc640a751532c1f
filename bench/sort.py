"""Faceset sorting speed: blur and yaw sort on 5000 index rows against reading the index
alone, and identity / histogram sorting on real crops.

    python bench/sort.py [--rows 5000] [--every 8]

The real crops are extracted from ../shared/facedata/person_a.mp4 (every --every-th frame)
when present, else from a clip rendered from the bundled grace_hopper portrait. The 5000-row
faceset is those crops hard-linked under 5000 names with synthetic rows (blur, yaw, pitch
drawn at random) in faces.json. "ratio" is a sort's time over json.loads of faces.json
alone (the floor: blur and yaw sorting need nothing else).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("INTRACODER_NO_PROGRESS", "1")

from intracoder.faces.extract import ExtractConfig, extract  # noqa: E402
from intracoder.faces.faceset import FacesetIndex, list_faces  # noqa: E402
from intracoder.faces.sort import sort_faces  # noqa: E402
from intracoder.samples import render_clip, write_clip  # noqa: E402

import numpy as np  # noqa: E402

FACEDATA = Path(__file__).resolve().parents[1].parent / "shared" / "facedata"


def best_of(fn, repeats: int = 5) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def real_crops(root: Path, every: int) -> tuple[Path, str]:
    clip = FACEDATA / "person_a.mp4"
    label = "person_a.mp4"
    if not clip.exists():
        clip, label = root / "grace_hopper.mp4", "rendered grace_hopper"
        write_clip(render_clip("grace_hopper", n_frames=24, size=256, seed=1).frames, clip)
        every = 1
    out = root / "real"
    extract(ExtractConfig(input=str(clip), out_dir=str(out), every=every, size=128, largest=True))
    return out, label


def synthetic(real: Path, root: Path, rows: int) -> Path:
    big = root / "big"
    big.mkdir()
    crops = list_faces(real)
    src = FacesetIndex(real)
    index = FacesetIndex(big)
    index.data["sources"] = src.data["sources"]
    rng = np.random.default_rng(0)
    template = next(iter(src.faces.values()))
    for i in range(rows):
        crop = crops[i % len(crops)]
        name = f"synthetic_{i:06d}_0{crop.suffix}"
        os.link(crop, big / name)
        index.faces[name] = {**template, "frame": i, "blur": round(float(rng.gamma(2, 400)), 2),
                             "yaw": round(float(rng.normal(0, 25)), 2),
                             "pitch": round(float(rng.normal(0, 12)), 2)}
    index.save()
    return big


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=5000)
    ap.add_argument("--every", type=int, default=8)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        real, label = real_crops(root, args.every)
        big = synthetic(real, root, args.rows)
        floor = best_of(lambda: json.loads((big / "faces.json").read_text()))
        print(f"index read alone: {args.rows} rows in {floor * 1000:.1f} ms "
              f"({args.rows / floor:.0f} rows/s)")
        for by in ("blur", "yaw"):
            t = best_of(lambda: sort_faces(big, by))
            print(f"sort by {by}: {args.rows} crops in {t * 1000:.1f} ms ({args.rows / t:.0f} "
                  f"crops/s), ratio against the limit (index read) {t / floor:.2f}")
        n = len(list_faces(real))
        for by in ("identity", "histogram", "similarity"):
            r = sort_faces(real, by)
            print(f"sort by {by}: {n} real crops of {label} in {r.seconds:.2f} s "
                  f"({r.faces_per_second:.1f} faces/s)")


if __name__ == "__main__":
    main()
