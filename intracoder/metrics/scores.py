"""The numbers that score a swap (REFERENCE.md section 5): identity, expression and pose
kept (468-point mesh and, independently, dlib's 5 points), sharpness, blend seam, flicker,
and each decoder's reconstruction of held-out faces.

Everything here is deterministic (no sampling at random), so two runs on the same inputs
give the same numbers.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Iterable

import cv2
import numpy as np

from intracoder.errors import UserError
from intracoder.faces.faceset import list_faces, read_face
from intracoder.faces.masks import LEFT_EYE, RIGHT_EYE, head_pose
from intracoder.metrics import image_quality
from intracoder.identity.embedding import SAME_PERSON, distance, embed


def mesh_box(points_xy: np.ndarray) -> tuple[float, float, float, float]:
    """A face box from dense landmarks, so frames and crops are boxed the same way."""
    lo, hi = points_xy.min(0), points_xy.max(0)
    return float(lo[0]), float(lo[1]), float(hi[0] - lo[0]), float(hi[1] - lo[1])


def inter_ocular(points_xy: np.ndarray) -> float:
    return float(np.linalg.norm(points_xy[list(LEFT_EYE)].mean(0) - points_xy[list(RIGHT_EYE)].mean(0)))


def faceset_embedding(folder: str | Path, samples: int) -> np.ndarray:
    """Mean dlib embedding of up to ``samples`` evenly spaced crops of a faceset."""
    paths = list_faces(folder)
    if not paths:
        raise UserError(f"{folder}: faceset is empty")
    picks = [paths[i] for i in np.unique(np.linspace(0, len(paths) - 1, samples).round().astype(int))]
    embs = []
    for p in picks:
        face = read_face(p)
        e = embed(face.image, mesh_box(face.meta.landmarks_in_crop()))
        if e is not None:
            embs.append(e)
    if not embs:
        raise UserError(f"{folder}: no identity embedding could be computed from its faces")
    return np.mean(embs, axis=0)


@dataclass
class FrameScore:
    frame: int
    swapped_found: bool
    dist_b: float | None = None  # swapped face to the target person's mean
    dist_a: float | None = None  # swapped face to the source person's mean
    source_dist_b: float | None = None
    source_dist_a: float | None = None
    landmark_error: float | None = None  # mean 468-point distance / inter-ocular distance
    yaw_diff: float | None = None
    pitch_diff: float | None = None
    roll_diff: float | None = None
    dlib5_error: float | None = None  # mean dlib 5-point distance / 5-point inter-ocular distance
    sharpness_source: float | None = None  # Laplacian variance in the source face's box
    sharpness_swapped: float | None = None  # the same over the same box of the swapped frame
    sharpness_ratio: float | None = None  # swapped / source
    # The same over dlib's own face-detector box of the source frame: tighter than the mesh
    # box (brows to chin), so fewer unswapped pixels (hair, jaw edge) dilute it; the box an
    # independent dlib check draws.
    sharpness_dlib_source: float | None = None
    sharpness_dlib_swapped: float | None = None
    seam_score: float | None = None  # edge added at the blend boundary; 1.0 = none
    colour_error: float | None = None  # CIELAB distance of the face's mean colour to the source's


def identity_summary(to_target: list[float], to_source: list[float]) -> dict:
    t, s = np.asarray(to_target), np.asarray(to_source)
    if not len(t):
        return {"frames": 0}
    return {"frames": int(len(t)), "mean_distance_to_target": float(t.mean()),
            "mean_distance_to_source": float(s.mean()),
            "share_under_threshold": float((t < SAME_PERSON).mean()),
            "retrieval": float((t < s).mean())}


def score_frames(finder, source_frames: list[np.ndarray], swapped_frames: list[np.ndarray],
                 indices: list[int], target_mean: np.ndarray, source_mean: np.ndarray
                 ) -> tuple[list[FrameScore], float | None]:
    """score_pairs over frames already in memory."""
    return score_pairs(finder, zip(indices, source_frames, swapped_frames), target_mean,
                       source_mean)


BATCH = 8  # frames per face-finder call: faster in batches; bounds what is held


def score_pairs(finder, pairs: Iterable[tuple[int, np.ndarray, np.ndarray]],
                target_mean: np.ndarray, source_mean: np.ndarray
                ) -> tuple[list[FrameScore], float | None]:
    """Per-frame scores of (frame number, source frame, swapped frame) triples, and the
    temporal-stability ratio (output flicker / source flicker inside the face region; 1.0 =
    no flicker added; None when no two neighbouring frames both had a face).

    ``pairs`` is read a batch at a time and nothing but the previous frame is kept after
    its batch, so a generator of decoded frames is scored in bounded memory."""
    scores: list[FrameScore] = []
    flicker = ([], [])  # (output, source) change per neighbouring pair
    prev = None
    it = iter(pairs)
    while batch := list(islice(it, BATCH)):
        prev = _score_batch(finder, batch, prev, target_mean, source_mean, scores, flicker)
        # Dropped before the next batch is decoded, or two batches would be held at once.
        del batch
    out_change, src_change = flicker
    total = float(np.sum(src_change))
    ratio = float(np.sum(out_change)) / total if src_change and total > 0 else None
    return scores, ratio


def _score_batch(finder, batch, prev, target_mean, source_mean, scores, flicker):
    """Score one batch into ``scores`` and ``flicker``; return the new previous frame
    (number, source, swapped), the only frames that outlive their batch."""
    indices = [b[0] for b in batch]
    src_b = [b[1] for b in batch]
    sw_b = [b[2] for b in batch]
    out_change, src_change = flicker
    for i, src, sw, f_src, f_sw in zip(indices, src_b, sw_b, finder.find(src_b),
                                       finder.find(sw_b)):
        score = FrameScore(frame=i, swapped_found=bool(f_sw))
        if f_src:
            s = f_src[0]
            e_src = embed(src, mesh_box(s.landmarks[:, :2]))
            if e_src is not None:
                score.source_dist_b = distance(e_src, target_mean)
                score.source_dist_a = distance(e_src, source_mean)
            mask = _face_region(s.landmarks[:, :2], src.shape[:2])
            score.colour_error = image_quality.colour_error(src, sw, mask)
            if prev is not None and prev[0] == i - 1 and prev[1].shape == src.shape:
                src_change.append(_mean_abs(src, prev[1], mask))
                out_change.append(_mean_abs(sw, prev[2], mask))
            prev = (i, src, sw)
            box = mesh_box(s.landmarks[:, :2])
            score.sharpness_source = image_quality.sharpness(src, box)
            score.sharpness_swapped = image_quality.sharpness(sw, box)
            if score.sharpness_source and score.sharpness_swapped is not None:
                score.sharpness_ratio = score.sharpness_swapped / score.sharpness_source
            rect = dlib_face_box(src)
            if rect is not None:
                score.sharpness_dlib_source = image_quality.sharpness(src, rect)
                score.sharpness_dlib_swapped = image_quality.sharpness(sw, rect)
            score.seam_score = image_quality.seam_score(src, sw, s.landmarks[:, :2])
        if f_src and f_sw:
            s, o = f_src[0], f_sw[0]
            e = embed(sw, mesh_box(o.landmarks[:, :2]))
            if e is not None:
                score.dist_b = distance(e, target_mean)
                score.dist_a = distance(e, source_mean)
            iod = inter_ocular(s.landmarks[:, :2])
            err = np.linalg.norm(o.landmarks[:, :2] - s.landmarks[:, :2], axis=1).mean()
            score.landmark_error = float(err / max(iod, 1e-6))
            ps, po = head_pose(s.landmarks), head_pose(o.landmarks)
            score.yaw_diff, score.pitch_diff, score.roll_diff = (
                float(abs(a - b)) for a, b in zip(po, ps))
            score.dlib5_error = image_quality.dlib5_error(
                src, sw, mesh_box(s.landmarks[:, :2]), mesh_box(o.landmarks[:, :2]))
        scores.append(score)
    return prev


def _face_region(points_xy: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    mask = np.zeros(shape, np.uint8)
    hull = cv2.convexHull(np.round(points_xy).astype(np.int32))
    cv2.fillConvexPoly(mask, hull, 1)
    return mask.astype(bool)


def _mean_abs(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> float:
    if not mask.any():
        return 0.0
    # Over the mask's bounding box only: the whole frame in int16 is several frames' worth
    # of memory (and time) to average a face.
    ys, xs = np.nonzero(mask.any(1))[0], np.nonzero(mask.any(0))[0]
    y0, y1, x0, x1 = ys[0], ys[-1] + 1, xs[0], xs[-1] + 1
    diff = np.abs(a[y0:y1, x0:x1].astype(np.int16) - b[y0:y1, x0:x1].astype(np.int16))
    return float(diff[mask[y0:y1, x0:x1]].mean())


def reconstruction(model, folder: str | Path, names: list[str], decoder: str) -> dict:
    """SSIM and PSNR of a decoder's rebuild of held-out faces of its own person."""
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    res = model.config.resolution
    paths = [Path(folder) / n for n in names if (Path(folder) / n).exists()]
    if not paths:
        return {"faces": 0}
    faces = np.stack([cv2.resize(read_face(p).image, (res, res), interpolation=cv2.INTER_AREA)[..., ::-1]
                      for p in paths]).astype(np.float32) / 255.0
    rgb, _ = model.decode(faces, decoder)
    ssim = [structural_similarity(t, r, channel_axis=2, data_range=1.0) for t, r in zip(faces, rgb)]
    psnr = [peak_signal_noise_ratio(t, np.clip(r, 0, 1), data_range=1.0) for t, r in zip(faces, rgb)]
    return {"faces": len(paths), "ssim": float(np.mean(ssim)), "psnr": float(np.mean(psnr))}


def dlib_face_box(image_bgr: np.ndarray) -> tuple[int, int, int, int] | None:
    """(x, y, w, h) of the largest face dlib's HOG detector finds, or None."""
    from intracoder.identity import dlib_models

    found = dlib_models.rects(np.ascontiguousarray(image_bgr[..., ::-1]))
    if not found:
        return None
    r = max(found, key=lambda r: r.area())
    return r.left(), r.top(), r.width(), r.height()


def _ratio_of_sums(scores: list[FrameScore], swapped: str, source: str) -> float | None:
    """sum(swapped) / sum(source) over the frames that have both: the ratio of the mean
    variances, so a few busy frames do not dominate."""
    pairs = [(getattr(s, swapped), getattr(s, source)) for s in scores
             if getattr(s, swapped) is not None and getattr(s, source) is not None]
    total = float(np.sum([p[1] for p in pairs]))
    return float(np.sum([p[0] for p in pairs]) / total) if pairs and total > 0 else None


def summarise(scores: list[FrameScore], temporal_ratio: float | None) -> dict:
    def mean(key):
        vals = [getattr(s, key) for s in scores if getattr(s, key) is not None]
        return float(np.mean(vals)) if vals else None

    swapped = [s for s in scores if s.dist_b is not None]
    source = [s for s in scores if s.source_dist_b is not None]
    return {
        "frames_scored": len(scores),
        "frames_with_swapped_face": sum(s.swapped_found for s in scores),
        "identity": {
            "swapped": identity_summary([s.dist_b for s in swapped], [s.dist_a for s in swapped]),
            "source_baseline": identity_summary([s.source_dist_b for s in source],
                                                [s.source_dist_a for s in source]),
        },
        "expression": {"landmark_error_iod": mean("landmark_error"), "yaw_diff_deg": mean("yaw_diff"),
                       "pitch_diff_deg": mean("pitch_diff"), "roll_diff_deg": mean("roll_diff"),
                       "dlib5_error_iod": mean("dlib5_error")},
        "sharpness_ratio": _ratio_of_sums(scores, "sharpness_swapped", "sharpness_source"),
        "sharpness_ratio_dlib_box": _ratio_of_sums(scores, "sharpness_dlib_swapped",
                                                   "sharpness_dlib_source"),
        "seam_score": mean("seam_score"),
        "colour_error_lab": mean("colour_error"),
        "temporal_stability": temporal_ratio,
    }
