"""Image-quality yardsticks of a swap, as small pure functions on arrays: how sharp the face
is next to the source's, how visible the blend boundary is, and how far dlib's 5 points
moved (an expression check independent of the 468-point mesh).

All of them compare the swapped frame with its source frame over the same pixels, so
whatever the source image already has (blur, edges, texture) cancels out. Deterministic.
"""

from __future__ import annotations

import cv2
import numpy as np

# Seam: a pixel belongs to the pasted region where the frames differ by more than this (grey
# levels, after a light blur that keeps codec noise out), within the source face hull grown by
# HULL_GROW of the face size (convert pastes inside the hull, feathered outwards).
DIFF_THRESHOLD = 10.0
HULL_GROW = 0.12
# The region must cover at least this share of the face hull to count; otherwise (an untouched
# frame, codec noise) the hull itself is the boundary measured.
MIN_REGION = 0.05
# Band width on, inside and outside the boundary, as a share of the face size.
BAND = 0.03


def face_size(points_xy: np.ndarray) -> float:
    """Geometric mean of the landmark box's sides, in pixels."""
    lo, hi = np.asarray(points_xy)[:, :2].min(0), np.asarray(points_xy)[:, :2].max(0)
    w, h = hi - lo
    return float(np.sqrt(max(w, 1.0) * max(h, 1.0)))


def _clip_box(box, shape) -> tuple[int, int, int, int]:
    x, y, w, h = box
    x0, y0 = max(0, int(round(x))), max(0, int(round(y)))
    x1, y1 = min(shape[1], int(round(x + w))), min(shape[0], int(round(y + h)))
    return x0, y0, x1, y1


def _gray(image: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(image, cv2.COLOR_BGR2GRAY) if image.ndim == 3 else image


def sharpness(image_bgr: np.ndarray, box) -> float | None:
    """Variance of the Laplacian (grayscale, CV_64F) inside ``box`` (x, y, w, h); None when
    the box holds fewer than 3x3 pixels of the image."""
    x0, y0, x1, y1 = _clip_box(box, image_bgr.shape)
    if x1 - x0 < 3 or y1 - y0 < 3:
        return None
    lap = cv2.Laplacian(_gray(image_bgr[y0:y1, x0:x1]), cv2.CV_64F)
    return float(lap.var())


def hull_region(points_xy: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """The filled convex hull of the landmarks, as a bool mask of ``shape``."""
    mask = np.zeros(shape[:2], np.uint8)
    hull = cv2.convexHull(np.round(np.asarray(points_xy)[:, :2]).astype(np.int32))
    cv2.fillConvexPoly(mask, hull, 1)
    return mask.astype(bool)


def paste_region(source_bgr: np.ndarray, swapped_bgr: np.ndarray, points_xy: np.ndarray
                 ) -> np.ndarray:
    """Where the swapped frame was pasted over the source: pixels that differ by more than
    DIFF_THRESHOLD, cleaned (open/close), kept within the grown face hull, largest component,
    holes filled. Falls back to the face hull when that region is (almost) empty."""
    size = face_size(points_xy)
    hull = hull_region(points_xy, source_bgr.shape)
    diff = cv2.absdiff(source_bgr, swapped_bgr)
    diff = diff.max(2) if diff.ndim == 3 else diff
    diff = cv2.GaussianBlur(diff.astype(np.float32), (5, 5), 0)
    grow = max(3, int(round(size * HULL_GROW))) * 2 + 1
    allowed = cv2.dilate(hull.astype(np.uint8), cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (grow, grow)))
    region = ((diff > DIFF_THRESHOLD) & (allowed > 0)).astype(np.uint8)
    k = max(3, int(round(size * 0.02)) * 2 + 1)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k))
    region = cv2.morphologyEx(region, cv2.MORPH_OPEN, kernel)
    region = cv2.morphologyEx(region, cv2.MORPH_CLOSE, kernel)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(region, connectivity=8)
    if n > 1:
        biggest = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
        region = (labels == biggest).astype(np.uint8)
        # Fill holes: whatever the outer contour encloses.
        contours, _ = cv2.findContours(region, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        cv2.drawContours(region, contours, -1, 1, thickness=cv2.FILLED)
    if region.sum() < MIN_REGION * max(1, hull.sum()):
        return hull
    return region.astype(bool)


def boundary_bands(region: np.ndarray, width: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Three bands ``width`` pixels wide: ON the region's edge, just INSIDE it and just
    OUTSIDE it (a half-width gap away from the ON band, so a step's Sobel response stays
    in ON)."""
    r = region.astype(np.uint8)
    d_in = cv2.distanceTransform(r, cv2.DIST_L2, 5)  # inside: distance to the outside
    d_out = cv2.distanceTransform(1 - r, cv2.DIST_L2, 5)
    half = width / 2.0
    on = (region & (d_in <= half)) | (~region & (d_out <= half))
    lo, hi = half + half, half + half + width
    inside = region & (d_in > lo) & (d_in <= hi)
    outside = ~region & (d_out > lo) & (d_out <= hi)
    return on, inside, outside


def _edge_ratio(gray: np.ndarray, on: np.ndarray, inside: np.ndarray, outside: np.ndarray) -> float:
    g = gray.astype(np.float64)
    mag = np.hypot(cv2.Sobel(g, cv2.CV_64F, 1, 0, ksize=3), cv2.Sobel(g, cv2.CV_64F, 0, 1, ksize=3))
    either_side = 0.5 * (mag[inside].mean() + mag[outside].mean())
    return float(mag[on].mean() / max(either_side, 1e-6))


def seam_score(source_bgr: np.ndarray, swapped_bgr: np.ndarray, points_xy: np.ndarray
               ) -> float | None:
    """How visible the blend boundary is: the swapped frame's mean Sobel gradient magnitude
    ON the pasted region's edge over the mean of the bands just INSIDE and just OUTSIDE it,
    divided by the same ratio of the source frame over the same bands. 1.0: no edge added;
    a hard edge or a halo scores above 1. ``points_xy``: the SOURCE face's landmarks.
    None when a band is empty (a face at the very border of the frame) or the frames differ
    in size."""
    if source_bgr.shape != swapped_bgr.shape:
        return None
    size = face_size(points_xy)
    # Work on a crop around the face: the bands lie within the grown hull plus two widths.
    pad = size * (HULL_GROW + 4 * BAND) + 8
    lo, hi = np.asarray(points_xy)[:, :2].min(0) - pad, np.asarray(points_xy)[:, :2].max(0) + pad
    x0, y0, x1, y1 = _clip_box((lo[0], lo[1], hi[0] - lo[0], hi[1] - lo[1]), source_bgr.shape)
    if x1 - x0 < 8 or y1 - y0 < 8:
        return None
    src, sw = source_bgr[y0:y1, x0:x1], swapped_bgr[y0:y1, x0:x1]
    pts = np.asarray(points_xy)[:, :2] - (x0, y0)
    region = paste_region(src, sw, pts)
    on, inside, outside = boundary_bands(region, max(2.0, BAND * size))
    if not (on.any() and inside.any() and outside.any()):
        return None
    ratio_src = _edge_ratio(_gray(src), on, inside, outside)
    ratio_sw = _edge_ratio(_gray(sw), on, inside, outside)
    return float(ratio_sw / max(ratio_src, 1e-6))


def colour_error(source_bgr: np.ndarray, swapped_bgr: np.ndarray, region: np.ndarray
                 ) -> float | None:
    """Distance in CIELAB (L 0-100) between the mean colour of the face ``region`` in the
    swapped frame and in the source frame: how far the pasted face's skin tone and light
    are from the face it replaces (what colour transfer is for). None for an empty region."""
    if not region.any():
        return None
    # Converted over the region's bounding box only: a whole frame in float LAB is a dozen
    # frames' worth of memory to average one face.
    ys, xs = np.nonzero(region.any(1))[0], np.nonzero(region.any(0))[0]
    y0, y1, x0, x1 = ys[0], ys[-1] + 1, xs[0], xs[-1] + 1
    inside = region[y0:y1, x0:x1]
    lab = [cv2.cvtColor(im[y0:y1, x0:x1].astype(np.float32) / 255.0,
                        cv2.COLOR_BGR2LAB)[inside].mean(axis=0)
           for im in (source_bgr, swapped_bgr)]
    return float(np.linalg.norm(lab[0] - lab[1]))


def inter_ocular_5(points5: np.ndarray) -> float:
    """Distance between the eye centres of dlib's 5 points (0-1 one eye's corners, 2-3 the
    other's)."""
    p = np.asarray(points5, np.float64)
    return float(np.linalg.norm(p[0:2].mean(0) - p[2:4].mean(0)))


def five_point_error(source5: np.ndarray, swapped5: np.ndarray) -> float:
    """Mean distance between corresponding 5 points over the source's inter-ocular distance."""
    s, o = np.asarray(source5, np.float64), np.asarray(swapped5, np.float64)
    return float(np.linalg.norm(o - s, axis=1).mean() / max(inter_ocular_5(s), 1e-6))


def dlib5_error(source_bgr: np.ndarray, swapped_bgr: np.ndarray, source_box, swapped_box) -> float:
    """``five_point_error`` of dlib's 5-point predictor run on each frame, each with the
    rect of its own 468-point box (x, y, w, h)."""
    from intracoder.identity import dlib_models
    from intracoder.identity.embedding import _rect

    pts = [dlib_models.five_points(np.ascontiguousarray(img[..., ::-1]), _rect(box))
           for img, box in ((source_bgr, source_box), (swapped_bgr, swapped_box))]
    return five_point_error(pts[0], pts[1])
