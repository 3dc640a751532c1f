"""Mask labels (DeepFaceLab XSeg style): include/exclude polygons drawn on a crop.

They live in the crop's own metadata, ``meta.extra["mask_labels"] = {"polygons": [...],
"propagated_from": None | crop name}``, so they survive sort, rename and copy. A polygon is
``{"mode": "include" | "exclude", "points": [[x, y], ...]}`` in pixels of the stored crop.
A propagated label also records ``from_frame``, the frame of the hand-drawn label it came
from, so a nearer label wins even after the crops were renamed.

:func:`propagate` carries polygons from one crop to another of the same person through the
468-point face mesh: crop A -> A's source frame -> a piecewise-affine map over the Delaunay
triangles of A's mesh onto B's mesh (points outside the mesh follow a similarity fitted to
the nearest mesh points) -> crop B.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import cv2
import numpy as np

from intracoder.errors import UserError
from intracoder.faces.faceset import FaceMeta, read_face, rewrite_face

KEY = "mask_labels"
MODES = ("include", "exclude")
MAX_POLYGONS = 64
MAX_POINTS = 1000  # over all polygons of one crop
NEAREST = 12  # mesh points a vertex outside the mesh follows


# --- reading and writing -------------------------------------------------------------------

def _entry(meta: FaceMeta) -> dict | None:
    entry = (meta.extra or {}).get(KEY)
    return entry if isinstance(entry, dict) and isinstance(entry.get("polygons"), list) else None


def labels_of(meta: FaceMeta) -> list[dict]:
    """The crop's polygons (a copy), [] when it has none."""
    entry = _entry(meta)
    if entry is None:
        return []
    return [{"mode": p["mode"], "points": [list(pt) for pt in p["points"]]}
            for p in entry["polygons"] if isinstance(p, dict) and p.keys() >= {"mode", "points"}]


def propagated_from(meta: FaceMeta) -> str | None:
    """The crop a propagated label came from; None for a hand-drawn label or none at all."""
    entry = _entry(meta)
    return entry.get("propagated_from") if entry else None


def is_labelled(meta: FaceMeta) -> bool:
    return bool(labels_of(meta))


def is_user_label(meta: FaceMeta) -> bool:
    """Labelled by hand (in the studio or imported), not propagated."""
    return is_labelled(meta) and propagated_from(meta) is None


def _number(v, where: str) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)):
        raise UserError(f"mask labels: {where}: {v!r} is not a number")
    v = float(v)
    if not math.isfinite(v):
        raise UserError(f"mask labels: {where}: {v} is not a finite number")
    return v


def validate(polygons, size: int | None = None) -> list[dict]:
    """Check polygons and return them cleaned (coordinates rounded to 0.01). With ``size``
    (the crop's), coordinates must lie within [-size, 2*size]. Raises a one-line UserError."""
    if not isinstance(polygons, (list, tuple)):
        raise UserError(f"mask labels: expected a list of polygons, got {type(polygons).__name__}")
    if len(polygons) > MAX_POLYGONS:
        raise UserError(f"mask labels: {len(polygons)} polygons; at most {MAX_POLYGONS} per crop")
    out, total = [], 0
    for i, poly in enumerate(polygons, 1):
        if not isinstance(poly, dict):
            raise UserError(f"mask labels: polygon {i} is not an object with mode and points")
        mode = poly.get("mode")
        if mode not in MODES:
            raise UserError(f"mask labels: polygon {i}: mode {mode!r} is not include or exclude")
        pts = poly.get("points")
        if isinstance(pts, np.ndarray):
            pts = pts.tolist()
        if not isinstance(pts, (list, tuple)) or len(pts) < 3:
            n = len(pts) if isinstance(pts, (list, tuple)) else 0
            raise UserError(f"mask labels: polygon {i} has {n} points; a polygon needs at least 3")
        total += len(pts)
        if total > MAX_POINTS:
            raise UserError(f"mask labels: more than {MAX_POINTS} points in all")
        clean = []
        for j, pt in enumerate(pts, 1):
            if not isinstance(pt, (list, tuple, np.ndarray)) or len(pt) != 2:
                raise UserError(f"mask labels: polygon {i}, point {j}: expected [x, y], got {pt!r}")
            x, y = (_number(v, f"polygon {i}, point {j}") for v in pt)
            if size is not None and not all(-size <= c <= 2 * size for c in (x, y)):
                raise UserError(f"mask labels: polygon {i}, point {j}: ({x:g}, {y:g}) lies beyond "
                                f"[{-size}, {2 * size}] of a {size}-px crop")
            clean.append([round(x, 2), round(y, 2)])
        out.append({"mode": mode, "points": clean})
    return out


def with_labels(meta: FaceMeta, polygons, propagated_from: str | None = None, *,
                from_frame: int | None = None) -> FaceMeta:
    """A copy of ``meta`` with its labels set to ``polygons`` ([] removes them)."""
    extra = dict(meta.extra or {})
    cleaned = validate(polygons, meta.size)
    if cleaned:
        entry = {"polygons": cleaned, "propagated_from": propagated_from}
        if propagated_from is not None and isinstance(from_frame, int):
            entry["from_frame"] = int(from_frame)
        extra[KEY] = entry
    else:
        extra.pop(KEY, None)
    return dataclasses.replace(meta, extra=extra)


def rasterise(polygons, size: int) -> np.ndarray:
    """The labels as a size x size uint8 mask, as DeepFaceLab's XSeg does: start from 0 and
    fill each polygon in order, include with 255, exclude with 0."""
    mask = np.zeros((size, size), np.uint8)
    for poly in validate(polygons):
        pts = np.round(np.asarray(poly["points"], np.float64) * 16).astype(np.int32)
        cv2.fillPoly(mask, [pts], 255 if poly["mode"] == "include" else 0, cv2.LINE_8, shift=4)
    return mask


def save_labels(path: str | Path, polygons) -> FaceMeta:
    """Set hand-drawn labels on the crop at ``path`` (atomically); returns its new metadata."""
    face = read_face(path)
    meta = with_labels(face.meta, polygons)
    rewrite_face(path, dataclasses.replace(face, meta=meta))
    return meta


# --- propagation ---------------------------------------------------------------------------

def _affine(points: np.ndarray, m: np.ndarray) -> np.ndarray:
    return points @ m[:, :2].T + m[:, 2]


def _triangulation(points: np.ndarray):
    """(simplices Nx3, locate(points) -> (simplex index or -1, barycentric Nx3))."""
    try:
        from scipy.spatial import Delaunay
    except ImportError:  # pragma: no cover - scipy ships with scikit-image
        return _subdiv_triangulation(points)
    tri = Delaunay(points)

    def locate(q):
        s = tri.find_simplex(q)
        t = tri.transform[np.maximum(s, 0)]
        b = np.einsum("nij,nj->ni", t[:, :2], q - t[:, 2])
        return s, np.c_[b, 1 - b.sum(1)]
    return tri.simplices, locate


def _subdiv_triangulation(points: np.ndarray):
    lo, hi = points.min(0) - 1, points.max(0) + 1
    sub = cv2.Subdiv2D((int(lo[0]), int(lo[1]), int(hi[0] - lo[0]) + 2, int(hi[1] - lo[1]) + 2))
    sub.insert([(float(x), float(y)) for x, y in points])
    lookup = {(round(float(x), 3), round(float(y), 3)): i for i, (x, y) in enumerate(points)}
    simplices = []
    for t in sub.getTriangleList():
        ids = [lookup.get((round(float(t[k]), 3), round(float(t[k + 1]), 3))) for k in (0, 2, 4)]
        if None not in ids:
            simplices.append(ids)
    simplices = np.asarray(simplices, np.int64).reshape(-1, 3)
    a, b, c = (points[simplices[:, k]] for k in range(3))

    def locate(q):
        v0, v1 = b - a, c - a
        det = v0[:, 0] * v1[:, 1] - v0[:, 1] * v1[:, 0]
        det = np.where(np.abs(det) < 1e-12, np.nan, det)
        d = q[:, None, :] - a[None]
        l1 = (d[..., 0] * v1[:, 1] - d[..., 1] * v1[:, 0]) / det
        l2 = (v0[:, 0] * d[..., 1] - v0[:, 1] * d[..., 0]) / det
        bary = np.stack([1 - l1 - l2, l1, l2], -1)
        ok = np.nan_to_num(bary, nan=-1).min(-1) >= -1e-9
        s = np.where(ok.any(1), ok.argmax(1), -1)
        return s, bary[np.arange(len(q)), np.maximum(s, 0)]
    return simplices, locate


def _local_similarity(q: np.ndarray, src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Map each point of q by the similarity fitted (weights 1/distance) to its nearest
    mesh points, in complex numbers: dst - mu_d = z (src - mu_s)."""
    d = np.linalg.norm(q[:, None] - src[None], axis=-1)
    k = min(NEAREST, len(src))
    idx = np.argpartition(d, k - 1, axis=1)[:, :k]
    dist = np.take_along_axis(d, idx, 1)
    scale = max(float(np.ptp(src, axis=0).max()), 1.0)
    w = 1.0 / np.maximum(dist, 1e-3 * scale)
    w /= w.sum(1, keepdims=True)
    s = src[idx, 0] + 1j * src[idx, 1]
    t = dst[idx, 0] + 1j * dst[idx, 1]
    mu_s, mu_t = (w * s).sum(1), (w * t).sum(1)
    sc, tc = s - mu_s[:, None], t - mu_t[:, None]
    z = (w * np.conj(sc) * tc).sum(1) / np.maximum((w * np.abs(sc) ** 2).sum(1), 1e-12)
    out = mu_t + z * (q[:, 0] + 1j * q[:, 1] - mu_s)
    return np.c_[out.real, out.imag]


def mesh_map(points: np.ndarray, src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Carry Nx2 points from mesh ``src`` (468x2) onto mesh ``dst``: barycentric inside
    the Delaunay triangles of ``src``, a local similarity outside them."""
    points = np.asarray(points, np.float64).reshape(-1, 2)
    simplices, locate = _triangulation(src)
    s, bary = locate(points)
    out = np.einsum("ni,nij->nj", bary, dst[simplices[np.maximum(s, 0)]])
    outside = (s < 0) | ~np.isfinite(out).all(1)
    if outside.any():
        out[outside] = _local_similarity(points[outside], src, dst)
    return out


def propagate(polygons, from_meta: FaceMeta, to_meta: FaceMeta) -> list[dict]:
    """``polygons`` drawn on crop ``from_meta`` as they fall on crop ``to_meta``."""
    polygons = validate(polygons)
    if not polygons:
        return []
    src = from_meta.landmarks_np[:, :2]
    dst = to_meta.landmarks_np[:, :2]
    if src.shape != dst.shape or len(src) < 3:
        raise UserError("mask labels: both crops need the 468-point face mesh to propagate")
    counts = [len(p["points"]) for p in polygons]
    crop_a = np.concatenate([np.asarray(p["points"], np.float64) for p in polygons])
    in_source = _affine(crop_a, cv2.invertAffineTransform(from_meta.matrix_np))
    crop_b = _affine(mesh_map(in_source, src, dst), to_meta.matrix_np)
    crop_b = np.clip(np.nan_to_num(crop_b), -to_meta.size, 2 * to_meta.size)
    out, start = [], 0
    for poly, n in zip(polygons, counts):
        out.append({"mode": poly["mode"], "points": np.round(crop_b[start:start + n], 2).tolist()})
        start += n
    return out


def propagate_in_folder(folder: str | Path, name: str, radius: int = 10,
                        overwrite_user: bool = False) -> list[str]:
    """Propagate the hand-drawn label of crop ``name`` to the crops of the same source and
    face index within +-``radius`` frames. Crops labelled by hand are kept (unless
    ``overwrite_user``); a crop propagated from another label is overwritten only when this
    label's frame is nearer (or it came from this same frame). Returns the names written."""
    from intracoder.faces.sort import face_rows

    folder = Path(folder)
    if radius < 0:
        raise UserError(f"--radius must be >= 0, got {radius}")
    path = folder / name
    if not path.is_file():
        raise UserError(f"{path}: no such crop")
    origin = read_face(path).meta
    polygons = labels_of(origin)
    if not polygons:
        raise UserError(f"{name}: has no mask labels to propagate; draw some in the studio first")
    if not is_user_label(origin):
        raise UserError(f"{name}: its labels were propagated from {propagated_from(origin)}; "
                        "propagate from a hand-drawn label")
    key = (origin.source, origin.face_index)
    written = []
    for other, row in zip(*face_rows(folder)):
        if other == name or (row.get("source"), row.get("face_index")) != key \
                or abs(int(row.get("frame", -10**9)) - origin.frame) > radius:
            continue
        face = read_face(folder / other)
        meta = face.meta
        distance = abs(meta.frame - origin.frame)
        if (meta.source, meta.face_index) != key or distance > radius:
            continue  # a stale index row
        if is_user_label(meta) and not overwrite_user:
            continue
        if is_labelled(meta) and not is_user_label(meta):
            old = _entry(meta).get("from_frame")
            if old is not None and old != origin.frame and abs(meta.frame - old) <= distance:
                continue  # already carries a label from a nearer (or as near) frame
        new = with_labels(meta, propagate(polygons, origin, meta), propagated_from=name,
                          from_frame=origin.frame)
        rewrite_face(folder / other, dataclasses.replace(face, meta=new))
        written.append(other)
    return written
