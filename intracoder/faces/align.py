"""Similarity alignment of dense landmarks to a mean-face template (DFL / faceswap style).

The template is the classic 68-point mean face used by DeepFaceLab and faceswap
(``landmarks_2D_new``: brows, nose, eyes and the two mouth corners, in a unit square),
matched to the corresponding MediaPipe face-mesh indices. A least-squares similarity
(Umeyama) over these 33 rigid-ish points is stable from frame to frame: the jaw, which
moves when a person talks, is left out on purpose.
"""

from __future__ import annotations

import numpy as np
from skimage.transform import SimilarityTransform

# 68-point indices 17..47, 48 and 54 -> the same anatomical points on the face mesh.
MESH_INDICES = np.array([
    70, 63, 105, 66, 107, 336, 296, 334, 293, 300,  # brows (17-26)
    168, 197, 5, 4,  # nose bridge (27-30)
    75, 97, 2, 326, 305,  # nose base (31-35)
    33, 160, 158, 133, 153, 144,  # eye, image left (36-41)
    362, 385, 387, 263, 373, 380,  # eye, image right (42-47)
    61, 291,  # mouth corners (48, 54)
])

TEMPLATE = np.array([
    [0.000213256, 0.106454], [0.0752622, 0.038915], [0.18113, 0.0187482],
    [0.29077, 0.0344891], [0.393397, 0.0773906], [0.586856, 0.0773906],
    [0.689483, 0.0344891], [0.799124, 0.0187482], [0.904991, 0.038915],
    [0.98004, 0.106454], [0.490127, 0.203352], [0.490127, 0.307009],
    [0.490127, 0.409805], [0.490127, 0.515625], [0.36688, 0.587326],
    [0.426036, 0.609345], [0.490127, 0.628106], [0.554217, 0.609345],
    [0.613373, 0.587326], [0.121737, 0.216423], [0.187122, 0.178758],
    [0.265825, 0.179852], [0.334606, 0.231733], [0.260918, 0.245099],
    [0.182743, 0.244077], [0.645647, 0.231733], [0.714428, 0.179852],
    [0.793132, 0.178758], [0.858516, 0.216423], [0.79751, 0.244077],
    [0.719335, 0.245099], [0.254149, 0.780233], [0.726104, 0.780233],
])

# Each eye point counts EYE_WEIGHT times in the fit. Measured with dlib's 5-point model on
# the crops of ../shared/facedata (bench/extract.py): with equal weights the eye centres
# wander 1.6% of the crop on a clip with head turns, because the nose and mouth points
# shift under yaw; with eyes x12 they stay within 0.8% and the eye line within 1 degree.
EYE_WEIGHT = 12
_FIT_ROWS = np.repeat(np.arange(len(MESH_INDICES)),
                      [EYE_WEIGHT if 19 <= i < 31 else 1 for i in range(len(MESH_INDICES))])

# Padding around the template (DFL's values) and how far the crop centre moves up, in
# template units, so that whole-face and head crops include the forehead and hair.
FACE_TYPES = {
    "full": (0.2109375, 0.0),
    "whole": (0.40, 0.07),
    "head": (0.70, 0.20),
}


def template_to_crop(face_type: str, size: int) -> np.ndarray:
    """3x3 matrix: unit template space -> crop pixels for a face type and crop size."""
    if face_type not in FACE_TYPES:
        raise ValueError(f"unknown face type {face_type!r}; choose from {sorted(FACE_TYPES)}")
    pad, lift = FACE_TYPES[face_type]
    side = 1.0 + 2.0 * np.sqrt(2.0) * pad  # DFL: half-diagonal grows by pad*sqrt(2)
    s = size / side
    cx, cy = 0.5, 0.5 - lift
    return np.array([[s, 0, size / 2 - s * cx], [0, s, size / 2 - s * cy], [0, 0, 1.0]])


class DegenerateLandmarks(ValueError):
    """Landmarks no similarity can be fitted to (all on one point, or not
    finite): a broken face-mesh result, skipped by its callers rather than fatal."""


def alignment_matrix(landmarks: np.ndarray, face_type: str = "full", size: int = 256) -> np.ndarray:
    """2x3 affine (source -> crop) from 468x2(+) face-mesh landmarks in source pixels;
    DegenerateLandmarks when none fits."""
    src = np.asarray(landmarks, np.float64)[MESH_INDICES, :2]
    # skimage's Umeyama takes no weights; repeating rows is an exact integer weighting.
    fitted = (SimilarityTransform.from_estimate(src[_FIT_ROWS], TEMPLATE[_FIT_ROWS])
              if np.isfinite(src).all() else None)
    # skimage 0.26 returns a falsy FailedEstimation (whose .params raises) when it cannot fit.
    if not fitted or not np.isfinite(fitted.params).all():
        raise DegenerateLandmarks("the landmarks do not span a face")
    return (template_to_crop(face_type, size) @ fitted.params)[:2]


def transform_points(points: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    pts = np.asarray(points, np.float64)[:, :2]
    return pts @ matrix[:, :2].T + matrix[:, 2]


def invert(matrix: np.ndarray) -> np.ndarray:
    full = np.vstack([matrix, [0, 0, 1]])
    return np.linalg.inv(full)[:2]


def crop_outline(matrix: np.ndarray, size: int) -> np.ndarray:
    """The crop square's four corners in source pixels (for drawing)."""
    corners = np.array([[0, 0], [size, 0], [size, size], [0, size]], np.float64)
    return transform_points(corners, invert(matrix))
