"""Identity embeddings: dlib's ResNet (128-d) on faces aligned with dlib's 5-point model.

REFERENCE.md section 3: same person 0.22-0.35 apart (L2), different people 0.70-1.02;
dlib's own same-person threshold is 0.6. Cosine similarity is squashed with this model, so
distances are L2.
"""

from __future__ import annotations

import numpy as np

from intracoder.identity import dlib_models

SAME_PERSON = 0.6


def _rect(box):
    import dlib

    x, y, w, h = (int(round(v)) for v in box)
    return dlib.rectangle(x, y, x + w, y + h)


def embed(image_bgr: np.ndarray, box=None) -> np.ndarray | None:
    """128-d embedding of the face in ``box`` (x, y, w, h), or of the largest face dlib's
    own detector finds when no box is given; None when there is no face."""
    rgb = np.ascontiguousarray(image_bgr[..., ::-1])
    if box is None:
        found = dlib_models.rects(rgb, upsample=1)
        if not found:
            return None
        rect = max(found, key=lambda r: r.area())
    else:
        rect = _rect(box)
    shape = dlib_models.shape_predictor_5()(rgb, rect)
    return np.asarray(dlib_models.face_encoder().compute_face_descriptor(rgb, shape), np.float64)


def distance(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(np.asarray(a) - np.asarray(b)))


class IdentityFilter:
    """Keeps the faces that match any of the reference embeddings."""

    def __init__(self, references: list[np.ndarray], threshold: float = SAME_PERSON):
        self.references = np.asarray(references, np.float64)
        self.threshold = threshold

    @classmethod
    def from_images(cls, paths: list[str], threshold: float = SAME_PERSON) -> "IdentityFilter":
        import cv2

        from intracoder.errors import UserError

        refs = []
        for p in paths:
            img = cv2.imread(str(p))
            if img is None:
                raise UserError(f"{p}: reference is not a readable image")
            e = embed(img)
            if e is None:
                raise UserError(f"{p}: no face found in the reference image")
            refs.append(e)
        return cls(refs, threshold)

    def nearest(self, embedding: np.ndarray) -> float:
        return float(np.linalg.norm(self.references - embedding, axis=1).min())

    def keeps(self, image_bgr: np.ndarray, box) -> tuple[bool, float]:
        e = embed(image_bgr, box)
        if e is None:
            return False, float("inf")
        d = self.nearest(e)
        return d < self.threshold, d
