"""Face detection with MTCNN (boxes + 5 points), loaded once and run on batches of frames."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from intracoder.errors import UserError
from intracoder.quiet import import_tensorflow


@dataclass
class Detection:
    box: np.ndarray  # x, y, w, h in source pixels
    points5: np.ndarray  # 5x2: eye (image left), eye (image right), nose, mouth left, mouth right
    confidence: float

    @property
    def size(self) -> float:
        return float(max(self.box[2], self.box[3]))


_MTCNN_MIN_FACE = 20
_KEYPOINTS = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")


class FaceDetector:
    """MTCNN from the mtcnn package (weights ship inside its wheel; nothing is downloaded)."""

    def __init__(self, min_size: int = 40, min_confidence: float = 0.9):
        import_tensorflow()
        from mtcnn import MTCNN

        self.min_size = min_size
        self.min_confidence = min_confidence
        self._mtcnn = MTCNN(stages="face_and_landmarks_detection", device="CPU:0")

    @staticmethod
    def _shrink(frame: np.ndarray, scale: float) -> np.ndarray:
        if scale >= 1.0:
            return frame
        import cv2

        h, w = frame.shape[:2]
        return cv2.resize(frame, (max(1, round(w * scale)), max(1, round(h * scale))),
                          interpolation=cv2.INTER_AREA)

    def detect(self, frames_bgr: list[np.ndarray]) -> list[list[Detection]]:
        """Detections for each frame, largest face first. Frames of one batch must share a
        size (MTCNN pads mixed sizes to the largest, which wastes work)."""
        if not frames_bgr:
            return []
        # mtcnn 1.0 misses large faces when min_face_size is raised above its default, so
        # the frame is shrunk instead until a face of min_size pixels is 20 px (MTCNN's
        # default smallest face): same recall, far fewer pyramid pixels.
        for f in frames_bgr:
            # The one input MTCNN cannot take (it copes with tiny and blank frames); anything
            # it raises beyond this is a bug or out of memory and propagates as such.
            if f.ndim != 3 or f.shape[2] != 3 or f.dtype != np.uint8:
                raise UserError(f"face detection needs 8-bit colour frames, got one of shape "
                                f"{f.shape} and type {f.dtype}")
        scale = min(1.0, _MTCNN_MIN_FACE / max(self.min_size, 1))
        rgb = [np.ascontiguousarray(self._shrink(f, scale)[..., ::-1]) for f in frames_bgr]
        results = self._mtcnn.detect_faces(rgb)
        out = []
        for faces in results:
            dets = []
            for f in faces:
                if f["confidence"] < self.min_confidence:
                    continue
                box = np.asarray(f["box"], np.float64) / scale
                if max(box[2], box[3]) < self.min_size:
                    continue
                pts = np.asarray([f["keypoints"][k] for k in _KEYPOINTS], np.float64) / scale
                dets.append(Detection(box=box, points5=pts, confidence=float(f["confidence"])))
            dets.sort(key=lambda d: -d.box[2] * d.box[3])
            out.append(dets)
        return out
