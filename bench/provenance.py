"""Cost and robustness of the provenance watermark; numbers go to docs/benchmarks.md.

    python bench/provenance.py            # everything (about 2 minutes on 2 cores)
    python bench/provenance.py --no-extra # skip the attacks the mark is not meant to survive

Prints: ms per frame to mark (512x512, 1920x1080) and to detect; PSNR of marked frames;
the detection rate after each attack, per frame and per video (verify's verdict, which also
decodes the average of the sampled frames); false positives on unmarked real footage.
Stills are the bundled portraits plus /work/shared/facedata/stills; clips are rendered from
the portraits plus the facedata clips. The facedata parts are skipped when it is absent.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from intracoder import samples  # noqa: E402
from intracoder.media.video import iter_frames  # noqa: E402
from intracoder.provenance import mark_frame, payload_for, watermark  # noqa: E402
from intracoder.provenance.verify import verify_file  # noqa: E402

FACEDATA = Path(__file__).resolve().parents[1].parent / "shared" / "facedata"
MODEL = "bench-model"
PAYLOAD = payload_for(MODEL)
CLIP_FRAMES = 48


def ffmpeg() -> str:
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def write_video(frames: list[np.ndarray], path: Path, crf: int = 18) -> None:
    h, w = frames[0].shape[:2]
    cmd = [ffmpeg(), "-y", "-loglevel", "error", "-f", "rawvideo", "-pix_fmt", "bgr24",
           "-s", f"{w}x{h}", "-r", "25", "-i", "-", "-c:v", "libx264", "-crf", str(crf),
           "-pix_fmt", "yuv420p", str(path)]
    subprocess.run(cmd, input=b"".join(f.tobytes() for f in frames), check=True)


def reencode(src: Path, dst: Path, crf: int, scale: float | None = None) -> None:
    vf = ["-vf", f"scale=trunc(iw*{scale}/2)*2:trunc(ih*{scale}/2)*2"] if scale else []
    subprocess.run([ffmpeg(), "-y", "-loglevel", "error", "-i", str(src), *vf,
                    "-c:v", "libx264", "-crf", str(crf), "-pix_fmt", "yuv420p", str(dst)],
                   check=True)


def read_video(path: Path, limit: int | None = None) -> list[np.ndarray]:
    return list(iter_frames(path, 0, limit))


def jpeg(frame: np.ndarray, quality: int) -> np.ndarray:
    return cv2.imdecode(cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, quality])[1], 1)


def scale(frame: np.ndarray, factor: float) -> np.ndarray:
    h, w = frame.shape[:2]
    size = (max(1, round(w * factor)), max(1, round(h * factor)))
    return cv2.resize(frame, size, interpolation=cv2.INTER_AREA)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 10 * np.log10(255.0 ** 2 / mse)


def hit(frame: np.ndarray) -> bool:
    d = watermark.detect(frame)
    return d.found and d.payload == PAYLOAD


def stills() -> dict[str, np.ndarray]:
    out = {name: samples.portrait(name) for name in samples.PORTRAITS}
    for path in sorted((FACEDATA / "stills").glob("*.jpg")) if FACEDATA.is_dir() else []:
        out[path.name] = cv2.imread(str(path))
    return out


def clips() -> dict[str, list[np.ndarray]]:
    out = {f"{name}@{size}": samples.render_clip(name, CLIP_FRAMES, size).frames
           for name in samples.PORTRAITS for size in (256, 512)}
    for path in sorted(FACEDATA.glob("*.mp4")) if FACEDATA.is_dir() else []:
        out[path.name] = read_video(path, CLIP_FRAMES)
    return out


def timing() -> None:
    print("## cost per frame (median of 15)")
    for label, frame in (("512x512", samples.portrait("astronaut")),
                         ("1920x1080", cv2.resize(samples.portrait("grace_hopper"), (1920, 1080),
                                                  interpolation=cv2.INTER_CUBIC))):
        mark, det = [], []
        for _ in range(15):
            t0 = time.perf_counter()
            marked = mark_frame(frame, MODEL)
            t1 = time.perf_counter()
            watermark.detect(marked)
            t2 = time.perf_counter()
            mark.append(t1 - t0)
            det.append(t2 - t1)
        print(f"{label:>10}: mark {1000 * np.median(mark):6.1f} ms   detect "
              f"{1000 * np.median(det):5.1f} ms   PSNR {psnr(frame, marked):.1f} dB")


STILL_ATTACKS = {
    "none": lambda f: f,
    "jpeg q75": lambda f: jpeg(f, 75),
    "scale 75%": lambda f: scale(f, 0.75),
    "scale 75% + jpeg q75": lambda f: jpeg(scale(f, 0.75), 75),
}
EXTRA_ATTACKS = {
    "jpeg q50": lambda f: jpeg(f, 50),
    "scale 50%": lambda f: scale(f, 0.5),
    "scale 25%": lambda f: scale(f, 0.25),
    "blur sigma 2": lambda f: cv2.GaussianBlur(f, (0, 0), 2.0),
    "blur sigma 5": lambda f: cv2.GaussianBlur(f, (0, 0), 5.0),
    "brightness +20": lambda f: cv2.add(f, np.full_like(f, 20)),
    "contrast x0.9": lambda f: np.clip((f.astype(np.float32) - 128) * 0.9 + 128, 0,
                                       255).astype(np.uint8),
    "contrast x1.1": lambda f: np.clip((f.astype(np.float32) - 128) * 1.1 + 128, 0,
                                       255).astype(np.uint8),
    "crop 2% border": lambda f: f[f.shape[0] // 50: -(f.shape[0] // 50),
                                  f.shape[1] // 50: -(f.shape[1] // 50)],
    "crop 10% border": lambda f: f[f.shape[0] // 10: -(f.shape[0] // 10),
                                   f.shape[1] // 10: -(f.shape[1] // 10)],
    "rotate 1 deg": lambda f: cv2.warpAffine(
        f, cv2.getRotationMatrix2D((f.shape[1] / 2, f.shape[0] / 2), 1.0, 1.0),
        (f.shape[1], f.shape[0]), borderMode=cv2.BORDER_REFLECT),
    "flip horizontal": lambda f: np.ascontiguousarray(f[:, ::-1]),
}


def still_rates(extra: bool) -> tuple[list[float], int, int, float]:
    images = stills()
    marked = {k: mark_frame(v, MODEL) for k, v in images.items()}
    psnrs = [psnr(images[k], marked[k]) for k in images]
    attacks = dict(STILL_ATTACKS, **(EXTRA_ATTACKS if extra else {}))
    print(f"## stills ({len(images)}: {', '.join(images)})")
    false_hits, checked, worst = 0, 0, -1.0
    for name, attack in attacks.items():
        ok = sum(hit(attack(f)) for f in marked.values())
        null = [watermark.detect(attack(f)) for f in images.values()]
        false_hits += sum(d.found for d in null)
        checked += len(null)
        worst = max([worst] + [d.score for d in null])
        print(f"{name:>22}: detected {ok}/{len(marked)}")
    return psnrs, false_hits, checked, worst


def clip_rates(work: Path) -> tuple[list[float], int, int, float]:
    print(f"## clips ({CLIP_FRAMES} frames each): per-frame rate / video verdict")
    psnrs: list[float] = []
    false_hits, checked, worst = 0, 0, -1.0
    header = ["none (crf 18)", "crf 28", "scale 75%", "scale 75% + crf 28"]
    print(f"{'clip':>18}  " + "  ".join(f"{h:>20}" for h in header))
    for name, frames in clips().items():
        marked = [mark_frame(f, MODEL) for f in frames]
        psnrs += [psnr(a, b) for a, b in zip(frames, marked)]
        cells = []
        for tag, source in (("m", marked), ("u", frames)):
            base = work / f"{tag}-{name}.mp4"
            write_video(source, base, crf=18)
            variants = {"none (crf 18)": base}
            for label, crf, factor in (("crf 28", 28, None), ("scale 75%", 18, 0.75),
                                       ("scale 75% + crf 28", 28, 0.75)):
                variants[label] = work / f"{tag}-{name}-{crf}-{factor}.mp4"
                reencode(base, variants[label], crf, factor)
            for label in header:
                decoded = read_video(variants[label])
                verdict = verify_file(variants[label], frames=CLIP_FRAMES)
                if tag == "m":
                    rate = np.mean([hit(f) for f in decoded])
                    good = verdict.watermark_found and verdict.payload == PAYLOAD.hex()
                    cells.append(f"{100 * rate:5.1f}% / {'found' if good else 'MISSED':>6}")
                else:
                    dets = [watermark.detect(f) for f in decoded]
                    false_hits += sum(d.found for d in dets) + int(verdict.watermark_found)
                    checked += len(dets) + 1
                    worst = max([worst] + [d.score for d in dets])
        print(f"{name:>18}  " + "  ".join(f"{c:>20}" for c in cells))
    return psnrs, false_hits, checked, worst


def unmarked_sources() -> tuple[int, int, float]:
    """Every frame of the facedata clips as shipped, never marked."""
    false_hits, checked, worst = 0, 0, -1.0
    for path in sorted(FACEDATA.glob("*.mp4")) if FACEDATA.is_dir() else []:
        for frame in read_video(path):
            d = watermark.detect(frame)
            false_hits += d.found
            checked += 1
            worst = max(worst, d.score)
        false_hits += int(verify_file(path).watermark_found)
        checked += 1
    return false_hits, checked, worst


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-extra", action="store_true",
                        help="skip the attacks the mark is not designed to survive")
    args = parser.parse_args()
    print(f"facedata: {'present' if FACEDATA.is_dir() else 'absent (skipped)'}")
    timing()
    p1, f1, n1, w1 = still_rates(not args.no_extra)
    with tempfile.TemporaryDirectory() as tmp:
        p2, f2, n2, w2 = clip_rates(Path(tmp))
    f3, n3, w3 = unmarked_sources()
    every = p1 + p2
    print(f"## PSNR marked vs unmarked: min {min(every):.1f} dB, mean {np.mean(every):.1f} dB "
          f"over {len(every)} frames")
    print(f"## false positives: {f1 + f2 + f3} of {n1 + n2 + n3} unmarked frames/videos "
          f"(max soft score {max(w1, w2, w3):.2f}; a clean mark scores ~1.0)")


if __name__ == "__main__":
    main()
