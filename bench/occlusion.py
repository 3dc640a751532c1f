"""Does convert keep what stands in front of the face? Occluders pasted on a real clip, then
converted with each --mask mode; the occluder's pixels must come through unchanged.

    python bench/occlusion.py --model MODEL [--mask-model MASKDIR] [--clip VIDEO]
        [--frames 60] [--modes hull,learned] [--out DIR] [--direction a2b]

The acceptance bar of the learned mask: objects pasted in front of the face of a held-out
clip and converted with --mask learned keep their pixels (away from their edge) at a PSNR of
at least 30 dB in at least 80% of the frames, while the rest of the face is still swapped,
and with no halo along the occluder's edge.

1. The occluded clip: the first --frames frames of --clip (default person_a.mp4 of
   ../shared/facedata: a talking head of the model's source person), the face found in each
   frame (FaceFinder) and three occluders pasted over it in turn, following it: a CUP over
   mouth and chin (cut from scikit-image's coffee photo, which the mask's training never
   sees), a MICROPHONE (dark ball with a square grille on a handle from the bottom edge, in
   front of the mouth) and a SKIN-COLOURED HAND over a cheek (palm, fingers and thumb filled
   with the skin of another person, scikit-image's astronaut, shaded at its outline). The
   shapes are drawn here, not by intracoder.data.occluders. Each frame's alpha is kept
   (1 = occluder); the clip is written with intracoder's H.264 writer.
2. `intracoder convert --model MODEL --mask MODE [--mask-model MASKDIR] occluded.mp4
   out_MODE.mp4` once per mode (a subprocess each: a crash is one error line).
3. Per frame, output against the occluded input as decoded:
   - occluder: PSNR inside the occluder eroded by 3 px for a face as wide as person_a's
     (290 px between the face mesh's cheek points at 512x512), scaled with the face, where
     it covers the face (grown by the ring's width): convert never paints elsewhere;
   - edge band: PSNR in the occluder's outer rim that the erosion leaves out;
   - ring: PSNR in a ring 2-8 px (same scaling) outside the occluder, inside the face hull;
     a ring far closer to the input than hull mode's is a band of the original face left
     around the occluder (a halo), a far lower PSNR than hull's is a seam;
   - face rest: mean absolute difference inside the face hull minus the occluder grown by
     the ring's width: the swap itself, which must stay as large as in hull mode;
   - background: PSNR away from face and occluder, i.e. what re-encoding and the invisible
     watermark alone cost (the ceiling of every other PSNR).
   A frame counts for the bar when its occluder PSNR is >= 30 dB and its face was swapped
   (face-rest change at least half of hull mode's in the same frame, and >= 3 grey levels).
Prints a table per mode and occluder, the bar's line, and writes side-by-side PNGs (input |
each mode) of a few frames per occluder into --out (default out/occlusion). Exit 0 whether
the bar is met or not (a benchmark, not a test); 2 for a usage error.

Beside this script: occlusion_paint.py (the face anchors, the occluder painters),
occlusion_measure.py (the scored regions, PSNR, per-frame and per-mode statistics, the bar).
"""

import argparse
import os
import re
import shlex
import sys
import time
from pathlib import Path

os.environ.setdefault("INTRACODER_NO_PROGRESS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:  # the helpers beside this script, also when loaded by path
    sys.path.append(str(HERE))

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from occlusion_measure import (edge_pixels, fmt, print_table, print_verdict,  # noqa: E402
                               score_mode)
from occlusion_paint import KINDS, Anchors, hull_mask, kind_of, paint  # noqa: E402
from quality_stages import ROOT, QualityError, read_state, run_main, run_stage  # noqa: E402

sys.path.insert(0, str(ROOT))
FACEDATA = ROOT.parent / "shared" / "facedata"
OUT = ROOT / "out" / "occlusion"

LEARNED_MODES = ("learned", "learned-predicted", "auto")  # modes that take --mask-model
SHEET_PER_KIND = 2


# --------------------------------------------------------------------------- stages

def build_occluded(clip: Path, frames: int, out: Path) -> dict:
    """Writes OUT/occluded.mp4 and OUT/occluded_alpha.npz; returns what the scoring needs."""
    from intracoder.faces.extract import FaceFinder
    from intracoder.media.video import VideoWriter, iter_frames, probe

    info = probe(clip)
    n = min(frames, info.frame_count) if info.frame_count else frames
    images = list(iter_frames(clip, 0, n))
    n = len(images)
    if not n:
        raise QualityError(f"{clip}: no frames")
    print(f"== occluded clip: first {n} frames of {clip} ({info.width}x{info.height})",
          flush=True)
    start = time.perf_counter()
    finder = FaceFinder(largest=True)
    geos: list[Anchors | None] = []
    for i in range(0, n, 8):
        for faces in finder.find(images[i:i + 8]):
            geos.append(Anchors.from_face(faces[0]) if faces else None)
    found = [g for g in geos if g is not None]
    if not found:
        raise QualityError(f"{clip}: no face found in its first {n} frames")
    width = float(np.median([g.width for g in found]))
    alphas = np.zeros((n, info.height, info.width), np.uint8)
    faces = np.zeros((n, info.height, info.width), bool)
    kinds = []
    path = out / "occluded.mp4"
    with VideoWriter(path, info.width, info.height, info.fps_fraction) as writer:
        for i, (image, geo) in enumerate(zip(images, geos)):
            kind = kind_of(i, n) if geo is not None else "none"
            if geo is not None:
                image, alpha = paint(kind, image, geo)  # one seed: the same texture throughout
                alphas[i] = np.clip(np.rint(alpha * 255), 0, 255).astype(np.uint8)
                faces[i] = hull_mask(geo.hull, image.shape)
            kinds.append(kind)
            writer.write(image)
    np.savez_compressed(out / "occluded_alpha.npz", alpha=alphas, face=faces,
                        kinds=np.array(kinds))
    print(f"  faces found in {len(found)}/{n} frames, face width {width:.0f} px (median), "
          f"{time.perf_counter() - start:.0f} s; {path}")
    return {"path": path, "alphas": alphas, "faces": faces, "kinds": kinds, "width": width,
            "n": n}


def side_by_side(occluded: Path, outputs: dict[str, Path], picks: list[int], scores, kinds,
                 folder: Path) -> list[Path]:
    from intracoder.media.video import read_frames_at

    if not picks:
        return []
    inputs = read_frames_at(occluded, picks)
    converted = {m: read_frames_at(p, picks) for m, p in outputs.items()}
    written = []
    for i in picks:
        panels = [("input", inputs[i])]
        for mode in outputs:
            row = scores[mode][i]
            label = f"{mode}  {fmt(row['core'])} dB" if row else mode
            panels.append((label, converted[mode][i]))
        h = min(512, panels[0][1].shape[0])
        strip = []
        for label, img in panels:
            scale = h / img.shape[0]
            img = cv2.resize(img, (round(img.shape[1] * scale), h), interpolation=cv2.INTER_AREA)
            bar = np.full((28, img.shape[1], 3), 24, np.uint8)
            cv2.putText(bar, label, (8, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (255, 255, 255), 1,
                        cv2.LINE_AA)
            strip.append(np.vstack([bar, img]))
        path = folder / f"sbs_{kinds[i]}_{i:04d}.png"
        cv2.imwrite(str(path), np.hstack(strip))
        written.append(path)
    return written


def sheet_picks(kinds: list[str], per_kind: int = SHEET_PER_KIND) -> list[int]:
    """``per_kind`` frames of each occluder's run, spread inside it (never its first frame)."""
    picks = []
    for kind in KINDS:
        idx = [i for i, k in enumerate(kinds) if k == kind]
        for j in range(per_kind):
            if idx:
                picks.append(idx[min(len(idx) - 1, (j + 1) * len(idx) // (per_kind + 1))])
    return sorted(set(picks))


# --------------------------------------------------------------------------- main

def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    p.add_argument("--model", required=True, help="a trained face model folder")
    p.add_argument("--mask-model", help="mask model folder for the learned modes (default: "
                   "MODEL/mask, as convert finds it)")
    p.add_argument("--clip", default=str(FACEDATA / "person_a.mp4"),
                   help="video whose face gets the occluders (default: %(default)s)")
    p.add_argument("--frames", type=int, default=60, help="frames used, from the first "
                   "(default: 60; the occluders take a third each)")
    p.add_argument("--modes", default="hull,learned",
                   help="comma-separated --mask modes of convert (default: %(default)s)")
    p.add_argument("--direction", default="a2b", choices=["a2b", "b2a"])
    p.add_argument("--out", default=str(OUT), help="output folder (default: %(default)s)")
    p.add_argument("--convert-args", default="",
                   help="more `intracoder convert` options, one string: "
                   '--convert-args="--blend alpha"')
    return p


def run(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    if args.frames < 3:
        raise QualityError("--frames must be at least 3 (one run per occluder)")
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    from intracoder.convert.settings import MASK_MODES

    bad = [m for m in modes if m not in MASK_MODES]
    if not modes or bad or len(set(modes)) != len(modes):
        raise QualityError(f"--modes {args.modes!r}: give distinct modes of "
                           f"{', '.join(MASK_MODES)}")
    model = Path(args.model).resolve()
    if read_state(model) is None:
        raise QualityError(f"{model}: no trained model there (no checkpoint/state.json)")
    clip = Path(args.clip)
    if not clip.is_file():
        raise QualityError(f"clip not found: {clip}")
    mask_model = Path(args.mask_model).resolve() if args.mask_model else None
    if mask_model is not None and not (mask_model / "mask.json").is_file():
        raise QualityError(f"{mask_model}: not a mask model folder (no mask.json)")
    if any(m in ("learned", "learned-predicted") for m in modes) and mask_model is None \
            and not (model / "mask" / "mask.json").is_file():
        raise QualityError("the learned modes need --mask-model MASKDIR (or MODEL/mask)")
    extra = shlex.split(args.convert_args)
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()

    built = build_occluded(clip, args.frames, out)
    pixels = edge_pixels(built["width"])
    outputs: dict[str, Path] = {}
    scores: dict[str, list] = {}
    for mode in modes:
        target = out / f"out_{re.sub(r'[^a-z-]', '', mode)}.mp4"
        words = ["convert", "--model", str(model), "--direction", args.direction,
                 "--mask", mode]
        if mask_model is not None and mode in LEARNED_MODES:
            words += ["--mask-model", str(mask_model)]
        run_stage(f"convert --mask {mode}", [*words, *extra, str(built["path"]), str(target)],
                  out / "logs" / f"convert_{mode}.log")
        outputs[mode] = target
        scores[mode] = score_mode(built["path"], target, built, pixels)

    kinds = built["kinds"]
    n = built["n"]
    hull_rest = [r["rest"] if r else None for r in scores["hull"]] if "hull" in scores \
        else [None] * n
    print(f"\n== occlusion: {clip.name}, {n} frames, model {model.name}, mask model "
          f"{mask_model.name if mask_model else '(MODEL/mask)'}; face {built['width']:.0f} px "
          f"wide: occluder eroded {pixels[0]} px, ring {pixels[1]}-{pixels[2]} px")
    totals = print_table(modes, scores, kinds, hull_rest)

    picks = sheet_picks(kinds)
    pngs = side_by_side(built["path"], outputs, picks, scores, kinds, out)
    print(f"\nside by side (input | {' | '.join(modes)}):")
    for p in pngs:
        print(f"  {p}")

    if not print_verdict(totals, modes, pixels):
        return 0
    print(f"out: {out} ({time.perf_counter() - started:.0f} s)")
    return 0


def main() -> int:
    return run_main("occlusion", run, sys.argv[1:])


if __name__ == "__main__":
    raise SystemExit(main())
