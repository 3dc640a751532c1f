"""The refiner against bicubic + rct on held-out faces of a real person.

    python bench/refiner.py [--faces DIR] [--model DIR] [--minutes 20] [--resolution 64]

Trains (or resumes) a standalone refiner on DIR, person_b.mp4 of ../shared/facedata by
default (extracted into a temporary folder with --size 256 --largest --every 2), then scores
on the held-out faces (every 10th crop, never trained on), given the same degraded inputs:
(a) the refiner, (b) bicubic upscaling + rct, (c) bicubic alone; PSNR and SSIM inside the
face mask at 2R, time per face, and a before/after grid in MODEL/refiner/eval.png. Prints
the markdown rows of docs/benchmarks.md's Refiner section.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("INTRACODER_NO_PROGRESS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402

from intracoder.refiner import checkpoint as refiner_checkpoint  # noqa: E402
from intracoder.refiner.config import RefinerTrainConfig  # noqa: E402
from intracoder.refiner.loop import EVAL_REPORT, train_refiner  # noqa: E402

FACEDATA = Path(__file__).resolve().parents[2] / "shared" / "facedata"


def extract_person_b(out: Path) -> Path:
    video = FACEDATA / "person_b.mp4"
    if not video.exists():
        sys.exit(f"{video} is not present; pass --faces DIR (a faceset of one person)")
    subprocess.run([sys.executable, "-m", "intracoder", "extract", str(video), str(out),
                    "--size", "256", "--largest", "--every", "2"], check=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--faces", type=Path, help="faceset of one person (default: person_b)")
    parser.add_argument("--model", type=Path, help="model folder (default: a temporary one)")
    parser.add_argument("--minutes", type=float, default=20.0,
                        help="training time; 0: only evaluate the refiner already in --model")
    parser.add_argument("--resolution", type=int, default=64)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench_refiner_"))
    faces = args.faces or extract_person_b(work / "faces")
    model = args.model or work / "model"
    train_refiner(RefinerTrainConfig(model=str(model), faces=str(faces),
                                     resolution=args.resolution, minutes=args.minutes or None,
                                     autosave_minutes=5, eval=True), {})
    folder = refiner_checkpoint.refiner_dir(model)
    report = json.loads((folder / EVAL_REPORT).read_text())
    _, state = refiner_checkpoint.load(model)
    its, secs = state["iteration"], state["train_seconds"]
    print(f"\n{keras.backend.backend()}, {its} iterations of {state['config']['batch_size']} "
          f"faces in {secs / 60:.1f} min; grid: {folder / 'eval.png'}\n")
    print("| method | PSNR (dB) | SSIM | time per face |")
    print("|---|---|---|---|")
    times = report["ms_per_face"]
    for method, ms in (("refiner", times["refiner"]), ("bicubic+rct", times["bicubic+rct"]),
                       ("bicubic", None)):
        row = report[method]
        print(f"| {method} | {row['psnr']:.2f} | {row['ssim']:.4f} | "
              + (f"{ms:.1f} ms |" if ms is not None else "- |"))
    m = report["margin_vs_rct"]
    print(f"\nmargin over bicubic+rct: {m['psnr']:+.2f} dB PSNR, {m['ssim']:+.4f} SSIM")


if __name__ == "__main__":
    main()
