"""convert's unsharp mask on a real face: it gives back detail the decoder's softness took
(closer to the sharp original, higher face-box Laplacian variance), leaves flat areas alone,
and amount 0 is the identity."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from intracoder.convert.sharpen import sharpen
from intracoder.metrics import image_quality as iq
from intracoder.samples import portrait


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255.0 ** 2 / mse))


@pytest.fixture(scope="module")
def face():
    """Grace Hopper's face as a 128-px decoder would see it, and a one-pixel-soft copy of it:
    what an L1/DSSIM-trained decoder gives back."""
    g = portrait("grace_hopper")
    h, w = g.shape[:2]
    crop = g[int(0.1 * h):int(0.1 * h) + w // 2, w // 4:w // 4 + w // 2]
    sharp = cv2.resize(crop, (128, 128), interpolation=cv2.INTER_AREA)
    return sharp, cv2.GaussianBlur(sharp, (0, 0), 1.0)


def test_sharpen_restores_detail(face):
    sharp, soft = face
    box = (0, 0, 128, 128)
    restored = sharpen(soft, 1.0)
    assert restored.dtype == np.uint8 and restored.shape == soft.shape
    assert _psnr(restored, sharp) > _psnr(soft, sharp) + 0.5
    assert iq.sharpness(restored, box) > 1.5 * iq.sharpness(soft, box)
    # More is sharper, up to halos: the amount is a dial, not a switch.
    assert iq.sharpness(sharpen(soft, 2.0), box) > iq.sharpness(restored, box)


def test_sharpen_leaves_flat_areas_and_zero_alone(face):
    _, soft = face
    assert sharpen(soft, 0.0) is soft
    flat = np.full((64, 64, 3), (40, 120, 200), np.uint8)
    assert np.array_equal(sharpen(flat, 2.0), flat)
    with pytest.raises(ValueError):
        sharpen(soft, -0.5)
