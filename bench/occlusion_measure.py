"""bench/occlusion.py's measurements: the scored regions of a frame (the occluder eroded,
its rim, a ring around it, the rest of the face, the background; scaled with the face), PSNR
and mean difference in them, per frame and per mode, and the bar's verdict.
"""

import math
from pathlib import Path

import cv2
import numpy as np

from occlusion_paint import KINDS
from quality_stages import QualityError

BAR_DB, BAR_SHARE = 30.0, 0.80
PSNR_CAP = 99.0  # identical pixels
# The brief's pixel figures hold for person_a.mp4 at 512x512, whose face is about this wide
# (face-mesh points 234 to 454); other faces scale them.
REF_FACE_WIDTH = 290.0
ERODE_PX, RING_PX = 3.0, (2.0, 8.0)
SWAPPED_MIN_MAD, SWAPPED_SHARE_OF_HULL = 3.0, 0.5


# --------------------------------------------------------------------------- regions

def edge_pixels(face_width: float) -> tuple[int, int, int]:
    """(erosion, ring inner, ring outer) in pixels for a face ``face_width`` wide."""
    s = max(face_width, 1.0) / REF_FACE_WIDTH
    return (max(1, round(ERODE_PX * s)), max(1, round(RING_PX[0] * s)),
            max(2, round(RING_PX[1] * s)))


def _disk(r: int) -> np.ndarray:
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))


def regions(alpha: np.ndarray, face: np.ndarray, pixels: tuple[int, int, int]
            ) -> dict[str, np.ndarray]:
    """Boolean masks of one frame: core (occluder away from its edge, over the face), band
    (the occluder's rim the erosion left out, over the face), ring (outside the occluder,
    inside the face), rest (face away from the occluder), background (away from both)."""
    erode, ring_in, ring_out = pixels
    occ = (alpha >= 0.5).astype(np.uint8)
    core = cv2.erode(occ, _disk(erode), borderType=cv2.BORDER_CONSTANT, borderValue=1) > 0
    grown_in = cv2.dilate(occ, _disk(ring_in)) > 0
    grown_out = cv2.dilate(occ, _disk(ring_out)) > 0
    # convert only paints over the face: the occluder's part there is what is scored
    face_zone = cv2.dilate(face.astype(np.uint8), _disk(ring_out)) > 0
    face_grown = cv2.dilate(face.astype(np.uint8), _disk(max(4, ring_out * 4))) > 0
    return {"core": core & face_zone, "band": (occ > 0) & ~core & face_zone,
            "ring": grown_out & ~grown_in & face & (alpha < 0.02),
            "rest": face & ~grown_out, "background": ~face_grown & ~grown_out}


# --------------------------------------------------------------------------- metrics

def psnr_in(a: np.ndarray, b: np.ndarray, region: np.ndarray) -> float:
    """PSNR in dB between uint8 images ``a`` and ``b`` over the pixels of ``region`` (all
    channels); NaN for an empty region, PSNR_CAP where they are identical."""
    if not region.any():
        return float("nan")
    d = a[region].astype(np.float64) - b[region].astype(np.float64)
    mse = float(np.mean(d * d))
    if mse <= 1e-12:
        return PSNR_CAP
    return min(PSNR_CAP, 10.0 * math.log10(255.0 ** 2 / mse))


def mad_in(a: np.ndarray, b: np.ndarray, region: np.ndarray) -> float:
    """Mean absolute difference in grey levels over ``region``; NaN for an empty one."""
    if not region.any():
        return float("nan")
    return float(np.mean(np.abs(a[region].astype(np.float64) - b[region].astype(np.float64))))


def frame_metrics(inp: np.ndarray, out: np.ndarray, reg: dict[str, np.ndarray]) -> dict:
    return {"core": psnr_in(inp, out, reg["core"]), "band": psnr_in(inp, out, reg["band"]),
            "ring": psnr_in(inp, out, reg["ring"]), "rest": mad_in(inp, out, reg["rest"]),
            "background": psnr_in(inp, out, reg["background"])}


def median(values) -> float:
    v = [x for x in values if x == x]
    return float(np.median(v)) if v else float("nan")


def share(flags) -> float:
    flags = list(flags)
    return sum(flags) / len(flags) if flags else float("nan")


def swapped(rest: float, hull_rest: float | None) -> bool:
    """The face outside the occluder was swapped: changed by >= 3 grey levels on average and
    by at least half as much as hull mode changed it in the same frame."""
    if not rest == rest or rest < SWAPPED_MIN_MAD:
        return False
    return hull_rest is None or not hull_rest == hull_rest or \
        rest >= SWAPPED_SHARE_OF_HULL * hull_rest


def score_mode(occluded: Path, converted: Path, built: dict, pixels) -> list[dict | None]:
    """Per frame metrics of ``converted`` against ``occluded`` (None: no occluder there)."""
    from intracoder.media.video import iter_frames

    rows: list[dict | None] = []
    for i, (inp, out) in enumerate(zip(iter_frames(occluded), iter_frames(converted))):
        if i >= built["n"]:
            break
        if built["kinds"][i] == "none":
            rows.append(None)
            continue
        if inp.shape != out.shape:
            raise QualityError(f"{converted}: frame {i} is {out.shape[1]}x{out.shape[0]}, "
                               f"the input {inp.shape[1]}x{inp.shape[0]}")
        reg = regions(built["alphas"][i].astype(np.float32) / 255.0, built["faces"][i], pixels)
        rows.append(frame_metrics(inp, out, reg))
    if len(rows) < built["n"]:
        raise QualityError(f"{converted}: {len(rows)} frames, the input has {built['n']}")
    return rows


# --------------------------------------------------------------------------- report

def fmt(v: float, spec: str = "{:.1f}") -> str:
    return "-" if not v == v else spec.format(v)


def print_table(modes: list[str], scores: dict[str, list], kinds: list[str],
                hull_rest: list) -> dict[str, dict]:
    head = (f"{'mode':18s} {'occluder':10s} {'frames':>6s} {'occl dB':>8s} {'>=30dB':>7s} "
            f"{'edge dB':>8s} {'ring dB':>8s} {'face chg':>8s} {'swapped':>8s} {'bg dB':>6s}")
    print("\n" + head)
    print("-" * len(head))
    totals = {}
    for mode in modes:
        for kind in (*KINDS, "all"):
            idx = [i for i, k in enumerate(kinds) if k != "none" and (kind == "all" or k == kind)
                   and scores[mode][i] is not None]
            if not idx:
                continue
            rows = [scores[mode][i] for i in idx]
            sw = [swapped(r["rest"], hull_rest[i] if mode != "hull" else None)
                  for r, i in zip(rows, idx)]
            kept = [r["core"] >= BAR_DB for r in rows]
            stats = {"frames": len(idx), "core": median(r["core"] for r in rows),
                     "kept": share(kept), "band": median(r["band"] for r in rows),
                     "ring": median(r["ring"] for r in rows),
                     "rest": median(r["rest"] for r in rows), "swapped": share(sw),
                     "background": median(r["background"] for r in rows),
                     "pass": share(k and s for k, s in zip(kept, sw))}
            if kind == "all":
                totals[mode] = stats
            print(f"{mode:18s} {kind:10s} {stats['frames']:6d} {fmt(stats['core']):>8s} "
                  f"{fmt(100 * stats['kept'], '{:.0f}%'):>7s} {fmt(stats['band']):>8s} "
                  f"{fmt(stats['ring']):>8s} {fmt(stats['rest']):>8s} "
                  f"{fmt(100 * stats['swapped'], '{:.0f}%'):>8s} {fmt(stats['background']):>6s}")
    print("occl: PSNR inside the eroded occluder (median); >=30dB: share of frames; edge: the "
          "occluder's rim left out by the erosion; ring: just outside the occluder, in the "
          "face; face chg: mean |out - in| on the rest of the face (grey levels); swapped: "
          "face chg >= 3 and >= half of hull's; bg: away from the face (encode + watermark)")
    return totals


def print_verdict(totals: dict[str, dict], modes: list[str], pixels) -> bool:
    """The bar's lines for the headline mode (learned, else the last one), against hull mode
    where it ran; False when no frame with an occluder was scored."""
    head = "learned" if "learned" in totals else modes[-1]
    t = totals.get(head)
    if t is None:
        print("occlusion: no frame with an occluder was scored")
        return False
    if "hull" in totals and head != "hull":
        h = totals["hull"]
        ratio = t["rest"] / h["rest"] if h["rest"] and h["rest"] == h["rest"] else float("nan")
        print(f"rest of the face: {head} changes it by {fmt(t['rest'])} grey levels, hull by "
              f"{fmt(h['rest'])} (ratio {fmt(ratio, '{:.2f}')}); swapped in "
              f"{fmt(100 * t['swapped'], '{:.0f}')}% of frames")
        print(f"ring {pixels[1]}-{pixels[2]} px outside the occluder: {head} {fmt(t['ring'])} dB, "
              f"hull {fmt(h['ring'])} dB ({head} - hull {fmt(t['ring'] - h['ring'], '{:+.1f}')}"
              f" dB; about 0: swapped up to the occluder as hull swaps it; far above 0, towards "
              f"the background's {fmt(t['background'])} dB: the original face left around the "
              f"occluder, a halo)")
    unswapped = t["kept"] - t["pass"]
    if unswapped > 0:
        print(f"note: {fmt(100 * unswapped, '{:.0f}')}% of frames kept the occluder but their "
              "face was not swapped; they do not count as kept below")
    verdict = "PASS" if t["pass"] >= BAR_SHARE else "FAIL"
    print(f"occlusion: {head} keeps the occluder in {100 * t['pass']:.0f}% of frames (median "
          f"{fmt(t['core'])} dB); bar {100 * BAR_SHARE:.0f}% at {BAR_DB:.0f} dB -> {verdict}")
    return True
