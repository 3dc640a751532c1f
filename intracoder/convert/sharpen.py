"""Unsharp masking of the generated face before it is pasted (DeepFaceLab's merger
blur/sharpen, faceswap's sharpen): the decoder's L1/DSSIM training leaves its output soft at
the scale of one of its own pixels, and pasting upscales that 2-4x."""

from __future__ import annotations

import cv2
import numpy as np

# The blur that is taken away, in pixels of the generated face: the decoder's softness lives
# at about one output pixel; a wider radius brightens edges into halos before it adds detail.
SIGMA = 1.0


def sharpen(face_bgr: np.ndarray, amount: float, sigma: float = SIGMA) -> np.ndarray:
    """face + amount * (face - blur(face)), rounded and clipped to uint8; amount 0 returns
    the face unchanged."""
    if amount < 0:
        raise ValueError(f"sharpen amount must be >= 0, got {amount}")
    if amount == 0:
        return face_bgr
    blurred = cv2.GaussianBlur(face_bgr, (0, 0), sigma)
    # addWeighted saturates to uint8 itself: no float copy of the face.
    return cv2.addWeighted(face_bgr, 1.0 + amount, blurred, -amount, 0.0)
