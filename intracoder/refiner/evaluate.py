"""How much the refiner helps, measured on held-out faces it never trained on.

Every held-out face is degraded once with a seed of its own (blur, slight warp, colour
shifts: data/degrade.py), and three ways of getting from that degraded face at R back to the
clean face at scale x R are scored inside the face mask: (a) the refiner, (b) bicubic
upscaling plus rct colour transfer from the same reference the refiner sees, (c) bicubic
upscaling alone. (b) is what convert does without a refiner, so it is the baseline to beat.
"""

from __future__ import annotations

import time
from pathlib import Path

import cv2
import numpy as np
from skimage.metrics import structural_similarity

from intracoder.atomic import atomic_path
from intracoder.imaging.colour_transfer import rct
from intracoder.refiner.degrade import Sample, batch_arrays, make_sample
from intracoder.refiner.model import Refiner

METHODS = ("refiner", "bicubic+rct", "bicubic")
EVAL_SEED = 20261121


def held_out_samples(images: np.ndarray, masks: np.ndarray, scale: int = 2) -> list[Sample]:
    """One fixed degraded sample per clean face at scale x R (RGB uint8), the same on every
    run."""
    return [make_sample(image, mask, np.random.default_rng([EVAL_SEED, i]), augment=False,
                        scale=scale)
            for i, (image, mask) in enumerate(zip(images, masks))]


def masked_psnr(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> float:
    sel = mask >= 128
    mse = np.mean((a[sel].astype(np.float64) - b[sel].astype(np.float64)) ** 2)
    return float(10 * np.log10(255.0 ** 2 / max(mse, 1e-10)))


def masked_ssim(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> float:
    """Mean of the SSIM map (7x7 windows, per channel) over the face pixels."""
    _, ssim_map = structural_similarity(a, b, channel_axis=2, data_range=255, full=True)
    return float(ssim_map[mask >= 128].mean())


def _upscale(face: np.ndarray, size: int) -> np.ndarray:
    return cv2.resize(face, (size, size), interpolation=cv2.INTER_CUBIC)


def _rct_rgb(face: np.ndarray, reference: np.ndarray, mask: np.ndarray) -> np.ndarray:
    # colour.rct works on BGR (its LAB conversion assumes OpenCV order).
    return rct(face[..., ::-1].copy(), reference[..., ::-1].copy(), mask)[..., ::-1]


def baselines(samples: list[Sample]) -> dict[str, list[np.ndarray]]:
    """(b) and (c) for every sample, uint8 RGB at the targets' size."""
    size = samples[0].target.shape[0]
    bicubic = [_upscale(s.face, size) for s in samples]
    with_rct = [_rct_rgb(up, _upscale(s.reference, size), s.target_mask)
                for up, s in zip(bicubic, samples)]
    return {"bicubic+rct": with_rct, "bicubic": bicubic}


def _timed(fn, count: int, repeats: int = 3):
    """(median milliseconds per face, result of the last call)."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append((time.perf_counter() - start) * 1000 / count)
    return float(np.median(times)), result


def evaluate(refiner: Refiner, images: np.ndarray, masks: np.ndarray,
             grid_path: str | Path | None = None) -> dict:
    """PSNR/SSIM inside the mask at the output size of the three methods, and time per face."""
    samples = held_out_samples(images, masks, refiner.config.scale)
    x, _ = batch_arrays(samples)
    refiner.refine(*x)  # trace/compile outside the timing
    # Median of a few repeats: the machine may be shared, and one run is noisy.
    refiner_ms, refined = _timed(lambda: refiner.refine(*x), len(samples))
    rct_ms, outputs = _timed(lambda: baselines(samples), len(samples))
    outputs = {"refiner": list(np.clip(np.rint(refined * 255), 0, 255).astype(np.uint8)),
               **outputs}
    report: dict = {"faces": len(samples), "resolution": refiner.config.resolution,
                    "scale": refiner.config.scale,
                    "ms_per_face": {"refiner": round(refiner_ms, 2),
                                    "bicubic+rct": round(rct_ms, 2)}}
    for method in METHODS:
        psnr = [masked_psnr(o, s.target, s.target_mask) for o, s in zip(outputs[method], samples)]
        ssim = [masked_ssim(o, s.target, s.target_mask) for o, s in zip(outputs[method], samples)]
        report[method] = {"psnr": round(float(np.mean(psnr)), 3),
                          "ssim": round(float(np.mean(ssim)), 4)}
    report["margin_vs_rct"] = {
        "psnr": round(report["refiner"]["psnr"] - report["bicubic+rct"]["psnr"], 3),
        "ssim": round(report["refiner"]["ssim"] - report["bicubic+rct"]["ssim"], 4)}
    if grid_path is not None:
        write_grid(samples, outputs, grid_path, refiner.config.reference_grid)
    return report


def pooled_reference(reference: np.ndarray, mask: np.ndarray, grid: int) -> np.ndarray:
    """The reference as the refiner sees it: masked means over a grid x grid raster."""
    m = mask.astype(np.float32)[..., None] / 255.0
    total = cv2.resize(reference * m, (grid, grid), interpolation=cv2.INTER_AREA)
    cover = cv2.resize(m, (grid, grid), interpolation=cv2.INTER_AREA)[..., None]
    return np.clip(total / np.maximum(cover, 1e-4), 0, 255).astype(np.uint8)


def write_grid(samples: list[Sample], outputs: dict[str, list[np.ndarray]],
               path: str | Path, grid: int, rows: int = 6) -> None:
    """Before/after PNG per row: degraded input, the pooled reference the refiner sees,
    (c), (b), (a) and the clean target."""
    names = ["input", f"reference {grid}x{grid}", "bicubic", "bicubic+rct", "refiner",
             "target"]
    picks = np.linspace(0, len(samples) - 1, min(rows, len(samples))).round().astype(int)
    size = samples[0].target.shape[0]
    lines = []
    for i in picks:
        s = samples[i]
        tiles = [cv2.resize(s.face, (size, size), interpolation=cv2.INTER_NEAREST),
                 cv2.resize(pooled_reference(s.reference, s.mask, grid), (size, size),
                            interpolation=cv2.INTER_NEAREST),
                 outputs["bicubic"][i], outputs["bicubic+rct"][i], outputs["refiner"][i],
                 s.target]
        lines.append(np.hstack(tiles))
    header = np.full((24, size * len(names), 3), 255, np.uint8)
    for k, name in enumerate(names):
        cv2.putText(header, name, (k * size + 4, 17), cv2.FONT_HERSHEY_SIMPLEX, 0.45,
                    (0, 0, 0), 1, cv2.LINE_AA)
    grid = np.vstack([header, *lines])
    with atomic_path(path) as tmp:
        cv2.imwrite(str(tmp), grid[..., ::-1])
