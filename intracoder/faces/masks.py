"""Face masks and per-face measurements that come straight from the dense landmarks."""

from __future__ import annotations

import cv2
import numpy as np

# MediaPipe face-mesh indices for the eyes and the lips (outer contour), for the
# eyes/mouth priority of training.
LEFT_EYE = (33, 7, 163, 144, 145, 153, 154, 155, 133, 173, 157, 158, 159, 160, 161, 246)
RIGHT_EYE = (263, 249, 390, 373, 374, 380, 381, 382, 362, 398, 384, 385, 386, 387, 388, 466)
LIPS = (61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291, 409, 270, 269, 267, 0, 37, 39, 40, 185)


def hull_mask(points_xy: np.ndarray, size: int) -> np.ndarray:
    """Filled convex hull of the face-mesh points: the face oval, 255 inside."""
    mask = np.zeros((size, size), np.uint8)
    hull = cv2.convexHull(np.round(points_xy[:, :2] * 16).astype(np.int32))
    cv2.fillConvexPoly(mask, hull, 255, lineType=cv2.LINE_AA, shift=4)
    return mask


def priority_mask(points_xy: np.ndarray, size: int, dilate: float = 0.04) -> np.ndarray:
    """Eyes and mouth regions (filled hulls, slightly grown), 255 inside."""
    mask = np.zeros((size, size), np.uint8)
    for idx in (LEFT_EYE, RIGHT_EYE, LIPS):
        hull = cv2.convexHull(np.round(points_xy[list(idx), :2]).astype(np.int32))
        cv2.fillConvexPoly(mask, hull, 255)
    k = max(1, int(size * dilate)) * 2 + 1
    return cv2.dilate(mask, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k)))


def blur_score(image_bgr: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Variance of the Laplacian inside the mask: low means blurry."""
    gray = cv2.cvtColor(image_bgr, cv2.COLOR_BGR2GRAY)
    lap = cv2.Laplacian(gray, cv2.CV_64F)
    if mask is not None and mask.any():
        inner = cv2.erode(mask, np.ones((5, 5), np.uint8)) > 127
        if inner.any():
            return float(lap[inner].var())
    return float(lap.var())


def head_pose(landmarks: np.ndarray) -> tuple[float, float, float]:
    """Yaw, pitch, roll in degrees from the face mesh's 3-D points.

    The face's own axes are read off the mesh: x from the outer corner of the image-left
    eye (33) to that of the image-right eye (263), y from mid-forehead (10) to chin (152),
    z their cross product. Yaw > 0: the face turns towards the image right; pitch > 0: chin
    down; roll > 0: the eye line rotates clockwise in the image."""
    p = np.asarray(landmarks, np.float64)
    x = p[263] - p[33]
    x /= np.linalg.norm(x)
    y = p[152] - p[10]
    y -= x * (y @ x)
    y /= np.linalg.norm(y)
    yaw = np.degrees(np.arctan2(x[2], np.hypot(x[0], x[1])))
    pitch = np.degrees(np.arctan2(-y[2], np.hypot(y[0], y[1])))
    roll = np.degrees(np.arctan2(x[1], x[0]))
    return float(yaw), float(pitch), float(roll)
