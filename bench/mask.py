"""What the learned mask costs: mask training faces/s, and convert's frames/s with --mask
learned against --mask hull on the same clip.

    python bench/mask.py --faces A B --model MODEL [--mask-model MASKDIR] [--clip VIDEO]
        [--minutes 1] [--frames 100] [--repeats 1] [--out DIR]

1. Mask training: `intracoder mask train --faces A B --model TMP --minutes M` into a
   temporary folder (removed afterwards; a given --mask-model is never trained further),
   faces/s read from its summary line (else from TMP/mask.json). With --mask-model and
   --minutes 0 nothing is trained: faces/s comes from MASKDIR/mask.json, i.e. from the run
   that trained it, on whatever machine that was.
2. Convert: `intracoder convert --model MODEL --end N CLIP OUT` with --mask hull and with
   --mask learned --mask-model MASKDIR (the given one, else the one just trained), each a
   subprocess, frames/s read from convert's summary line. The frames/s cover convert's loop
   (model loading excluded), including the one-time tracing of the model and, in learned
   mode, of the mask net: a short clip overstates the mask's share. With --repeats R the
   pair runs R times, alternating, and the best of each mode is kept (the machine's other
   load only ever slows a run down).
The limit: the mask may cost at most 25% of convert's frames/s (learned/hull >= 0.8). Exit 0
whether the limit is met or not (a benchmark, not a test); 2 for a usage error.
"""

import argparse
import json
import os
import re
import shlex
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("INTRACODER_NO_PROGRESS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:  # the helpers beside this script, also when loaded by path
    sys.path.append(str(HERE))

from quality_stages import ROOT, QualityError, read_state, run_main, run_stage  # noqa: E402

sys.path.insert(0, str(ROOT))
FACEDATA = ROOT.parent / "shared" / "facedata"
OUT = ROOT / "out" / "mask_bench"
LIMIT = 0.8  # learned frames/s over hull frames/s: the mask may cost at most 25%

_CONVERT_LINE = re.compile(r"(\d+) frames \(([\d.]+)/s\), (\d+) faces swapped")
_TRAIN_LINE = re.compile(r"mask model .*: iteration (\d+), loss \S+, ([\d.]+) faces/s")


def convert_rate(text: str) -> tuple[int, float, int]:
    """(frames, frames/s, faces swapped) of the last convert summary line in ``text``."""
    found = _CONVERT_LINE.findall(text)
    if not found:
        raise QualityError("no convert summary line ('N frames (R/s), F faces swapped') in "
                           "its output")
    frames, rate, faces = found[-1]
    return int(frames), float(rate), int(faces)


def train_rate(text: str) -> tuple[int, float] | None:
    """(iterations, faces/s) of the last `intracoder mask train` summary line, if any."""
    found = _TRAIN_LINE.findall(text)
    return (int(found[-1][0]), float(found[-1][1])) if found else None


def mask_state(folder: Path) -> dict:
    try:
        return json.loads((folder / "mask.json").read_text())
    except (OSError, ValueError):
        raise QualityError(f"{folder}: not a mask model folder (no readable mask.json)") \
            from None


def verdict(hull: float, learned: float, limit: float = LIMIT) -> tuple[float, str]:
    """(learned/hull, 'PASS' or 'FAIL')."""
    ratio = learned / hull if hull > 0 else float("nan")
    return ratio, "PASS" if ratio >= limit else "FAIL"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    p.add_argument("--faces", nargs="+", required=True, metavar="DIR",
                   help="faceset folders the mask trains on (e.g. the model's A and B)")
    p.add_argument("--model", required=True, help="a trained face model folder")
    p.add_argument("--mask-model", help="mask model for convert (default: the one trained "
                   "here); with --minutes 0 its mask.json gives the training faces/s")
    p.add_argument("--clip", default=str(FACEDATA / "person_a.mp4"),
                   help="video converted (default: %(default)s)")
    p.add_argument("--minutes", "--train-minutes", dest="minutes", type=float, default=1.0,
                   help="mask training time measured (default: 1; 0: none, needs --mask-model)")
    p.add_argument("--frames", type=int, default=100,
                   help="frames converted per run, from the first (convert --end; default: "
                   "100: enough to dilute the one-time tracing)")
    p.add_argument("--repeats", type=int, default=1,
                   help="runs of each mode, alternating; the best counts (default: 1)")
    p.add_argument("--direction", default="a2b", choices=["a2b", "b2a"])
    p.add_argument("--out", default=str(OUT),
                   help="converted clips and logs (default: %(default)s)")
    p.add_argument("--convert-args", default="",
                   help='more `intracoder convert` options, one string: --convert-args="--batch 8"')
    return p


def run(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    if args.minutes < 0:
        raise QualityError("--minutes must be >= 0")
    if args.minutes == 0 and not args.mask_model:
        raise QualityError("--minutes 0 measures no training: give --mask-model MASKDIR")
    if args.frames < 1 or args.repeats < 1:
        raise QualityError("--frames and --repeats must be at least 1")
    for folder in args.faces:
        if not (Path(folder) / "faces.json").is_file():
            raise QualityError(f"{folder}: not a faceset (no faces.json)")
    model = Path(args.model).resolve()
    if read_state(model) is None:
        raise QualityError(f"{model}: no trained model there (no checkpoint/state.json)")
    clip = Path(args.clip)
    if not clip.is_file():
        raise QualityError(f"clip not found: {clip}")
    mask_model = Path(args.mask_model).resolve() if args.mask_model else None
    if mask_model is not None:
        mask_state(mask_model)
    extra = shlex.split(args.convert_args)
    out = Path(args.out).resolve()
    logs = out / "logs"
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()

    with tempfile.TemporaryDirectory(prefix="mask_bench_") as tmp_name:
        # 1. mask training
        if args.minutes > 0:
            trained = Path(tmp_name) / "mask"
            log = logs / "mask_train.log"
            run_stage("mask train", ["mask", "train", "--faces", *args.faces, "--model",
                                     str(trained), "--minutes", f"{args.minutes:g}"], log)
            state = mask_state(trained)
            parsed = train_rate(log.read_text(errors="replace"))
            iterations, train_fps = parsed if parsed else (state.get("iteration"),
                                                           state.get("faces_per_second"))
            train_from = f"trained here for {args.minutes:g} min"
            mask_model = mask_model or trained
        else:
            state = mask_state(mask_model)
            iterations, train_fps = state.get("iteration"), state.get("faces_per_second")
            train_from = (f"from {mask_model / 'mask.json'}, "
                          f"{state.get('seconds', '?')} s of training")
        segmenter = state.get("segmenter", {})

        # 2. convert, hull and learned, alternating
        rates: dict[str, list[tuple[int, float, int]]] = {"hull": [], "learned": []}
        for rep in range(args.repeats):
            for mode in ("hull", "learned"):
                target = out / f"convert_{mode}.mp4"
                words = ["convert", "--model", str(model), "--direction", args.direction,
                         "--mask", mode, "--end", str(args.frames)]
                if mode == "learned":
                    words += ["--mask-model", str(mask_model)]
                log = logs / f"convert_{mode}_{rep + 1}.log"
                run_stage(f"convert --mask {mode} ({rep + 1}/{args.repeats})",
                          [*words, *extra, str(clip), str(target)], log)
                rates[mode].append(convert_rate(log.read_text(errors="replace")))

    best = {mode: max(runs, key=lambda r: r[1]) for mode, runs in rates.items()}
    ratio, result = verdict(best["hull"][1], best["learned"][1])
    shown = mask_model if args.mask_model else "(the one trained here, removed)"
    print(f"\n== mask cost: model {model}, mask model {shown} "
          f"({segmenter.get('resolution', '?')} px), clip {clip.name}, {args.direction}")
    print(f"  mask training          {train_fps if train_fps is not None else '-'} faces/s "
          f"({iterations} iterations, {train_from})")
    for mode in ("hull", "learned"):
        frames, fps, faces = best[mode]
        runs = ", ".join(f"{r[1]:.2f}" for r in rates[mode])
        print(f"  convert --mask {mode:8s} {fps:6.2f} frames/s ({frames} frames, {faces} faces; "
              f"runs: {runs})")
    if best["hull"][2] != best["learned"][2]:
        print(f"  note: the modes swapped different numbers of faces ({best['hull'][2]} vs "
              f"{best['learned'][2]})")
    print(f"mask: convert with the learned mask runs at {ratio:.2f}x hull's frames/s "
          f"(learned {best['learned'][1]:.2f}, hull {best['hull'][1]:.2f}); limit "
          f">= {LIMIT:.2f} (the mask may cost 25%) -> {result}")
    print(f"out: {out} ({time.perf_counter() - started:.0f} s)")
    return 0


def main() -> int:
    return run_main("mask", run, sys.argv[1:])


if __name__ == "__main__":
    raise SystemExit(main())
