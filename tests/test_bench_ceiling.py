"""bench/quality_ceiling.py: its stand-in model sends the source face through the real convert
path, so a higher stand-in resolution gives back a sharper face, and the full-resolution
stand-in gives back the source itself."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from conftest import load_bench

from intracoder.media.video import read_frames_at
from intracoder.metrics import image_quality


@pytest.fixture(scope="module")
def ceiling():
    return load_bench("quality_ceiling")


def test_stand_in_returns_its_input(ceiling):
    faces = np.random.default_rng(0).integers(0, 256, (2, 8, 8, 3), dtype=np.uint8)
    rgb, mask = ceiling.SourceFace(None).decode(faces, "b")
    np.testing.assert_allclose(rgb, faces / 255.0, atol=1e-7)
    assert rgb.dtype == np.float32 and mask.shape == (2, 8, 8, 1) and np.all(mask == 1)


def test_sharper_at_higher_resolution_and_the_source_at_full(ceiling, quick_model, clips,
                                                             finder, tmp_path):
    state = json.loads((quick_model / "checkpoint" / "state.json").read_text())
    source = clips["grace_hopper"]
    plain = ["--sharpen", "0", "--color", "none"]
    frames = {}
    for res in (32, 256):
        out = tmp_path / f"r{res}.mp4"
        ceiling.convert_at(quick_model, state, source, res, plain, out, finder)
        frames[res] = read_frames_at(out, [3, 7])
    src = read_frames_at(source, [3, 7])
    for i in (3, 7):
        face = finder.find([src[i]])[0][0]
        x0, y0 = face.landmarks[:, :2].min(0)
        x1, y1 = face.landmarks[:, :2].max(0)
        box = (x0, y0, x1 - x0, y1 - y0)
        low, full = (image_quality.sharpness(frames[r][i], box) for r in (32, 256))
        assert low < 0.5 * full, (i, low, full)
        inner = (slice(int(y0) + 10, int(y1) - 10), slice(int(x0) + 10, int(x1) - 10))
        psnr = cv2.PSNR(frames[256][i][inner], src[i][inner])
        assert psnr > 30, (i, psnr)
