"""Debug frames: what the detector and the landmark model saw, for checking by eye."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from intracoder.atomic import atomic_path
from intracoder.faces.align import DegenerateLandmarks, alignment_matrix, crop_outline


def draw_faces(image: np.ndarray, faces, face_type: str, size: int) -> np.ndarray:
    out = image.copy()
    scale = max(1, round(max(image.shape[:2]) / 512))
    for i, face in enumerate(faces):
        x, y, w, h = face.detection.box.astype(int)
        cv2.rectangle(out, (x, y), (x + w, y + h), (255, 160, 0), scale)
        for p in face.landmarks[:, :2]:
            cv2.circle(out, (int(p[0]), int(p[1])), 0, (0, 255, 0), scale)
        for p in face.detection.points5:
            cv2.circle(out, (int(p[0]), int(p[1])), 2 * scale, (0, 0, 255), -1)
        try:
            outline = crop_outline(alignment_matrix(face.landmarks, face_type, size), size)
        except DegenerateLandmarks:
            continue  # nothing to outline; the points above show what the mesh returned
        cv2.polylines(out, [np.round(outline).astype(np.int32)], True, (0, 255, 255), scale)
        # Mark the crop's top edge, so an upside-down alignment is obvious.
        cv2.line(out, tuple(np.round(outline[0]).astype(int)), tuple(np.round(outline[1]).astype(int)),
                 (0, 0, 255), 2 * scale)
        cv2.putText(out, f"{i} {face.detection.confidence:.2f}", (x, max(12, y - 4)),
                    cv2.FONT_HERSHEY_SIMPLEX, 0.4 * scale, (255, 160, 0), scale)
    return out


def write_debug_frame(folder: Path, frame, faces, face_type: str, size: int) -> None:
    name = f"{Path(frame.source).stem}_{frame.index:06d}.jpg"
    with atomic_path(folder / name) as tmp:
        cv2.imwrite(str(tmp), draw_faces(frame.image, faces, face_type, size))
