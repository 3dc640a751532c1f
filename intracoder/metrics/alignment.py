"""How steady the aligned crops of a clip are, judged by a landmark model that played no
part in making them (dlib's 5-point predictor): eye centres should stay put in the crop
and the eye line should stay level."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np

from intracoder.identity import dlib_models


@dataclass
class AlignmentStability:
    faces: int  # crops where dlib found the face
    eye_centre_std: float  # mean over both eyes of the positional std, as a fraction of crop size
    mean_tilt_deg: float  # mean absolute angle of the eye line
    max_tilt_deg: float

    def as_dict(self) -> dict:
        return asdict(self)


def eye_centres(image_bgr: np.ndarray) -> np.ndarray | None:
    """(2, 2): the two eye centres (image left first), or None when dlib finds no face."""
    rgb = np.ascontiguousarray(image_bgr[..., ::-1])
    found = dlib_models.rects(rgb)
    if not found:
        return None
    rect = max(found, key=lambda r: r.area())
    pts = dlib_models.five_points(rgb, rect)
    eyes = np.array([pts[0:2].mean(0), pts[2:4].mean(0)])
    return eyes[np.argsort(eyes[:, 0])]


def measure(crops: list[np.ndarray]) -> AlignmentStability:
    centres, tilts = [], []
    for crop in crops:
        eyes = eye_centres(crop)
        if eyes is None:
            continue
        centres.append(eyes / crop.shape[0])
        d = eyes[1] - eyes[0]
        tilts.append(abs(np.degrees(np.arctan2(d[1], d[0]))))
    if not centres:
        return AlignmentStability(0, float("nan"), float("nan"), float("nan"))
    c = np.asarray(centres)  # N x 2 eyes x 2 coords
    std = float(np.mean(np.linalg.norm(c.std(axis=0), axis=-1)))
    return AlignmentStability(len(centres), std, float(np.mean(tilts)), float(np.max(tilts)))


def measure_folder(folder: str | Path) -> AlignmentStability:
    from intracoder.faces.faceset import list_faces

    return measure([cv2.imread(str(p)) for p in list_faces(folder)])
