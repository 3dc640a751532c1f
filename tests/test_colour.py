"""Each colour-transfer mode must do what defines it, on real faces, inside the mask."""

import cv2
import numpy as np
import pytest

from intracoder.convert import colour
from intracoder.errors import UserError
from intracoder.samples import render_clip

SIZE = 256


def _crop(name: str, gain: float) -> np.ndarray:
    clip = render_clip(name, n_frames=1, size=SIZE, max_angle=0, zoom=(1.0, 1.0), shift=0.0,
                       light=(gain, gain), face_fraction=0.5)
    return clip.frames[0]


@pytest.fixture(scope="module")
def faces():
    # Generated face: Grace Hopper; destination: the astronaut, darker. Very different skin,
    # lighting and background, so every mode has a long way to go.
    mask = np.zeros((SIZE, SIZE), np.uint8)
    cv2.ellipse(mask, (SIZE // 2, SIZE // 2 - 8), (58, 76), 0, 0, 360, 255, -1)
    return _crop("grace_hopper", 1.0), _crop("astronaut", 0.8), mask


def _pixels(img, mask):
    return img.reshape(-1, 3)[mask.reshape(-1) >= 128].astype(np.float64)


def _lab(img, mask):
    lab = cv2.cvtColor(img.astype(np.float32) / 255.0, cv2.COLOR_BGR2LAB)
    return _pixels(lab, mask)


def _sliced_distance(a, b, mask, n=48):
    """Sliced Wasserstein-1 distance of the colour distributions inside the mask, with
    directions independent of the ones the methods draw."""
    rng = np.random.default_rng(12345)
    pa, pb = _pixels(a, mask), _pixels(b, mask)
    q = np.linspace(0.005, 0.995, 199)
    total = 0.0
    for _ in range(n):
        d = rng.normal(size=3)
        d /= np.linalg.norm(d)
        total += np.abs(np.quantile(pa @ d, q) - np.quantile(pb @ d, q)).mean()
    return total / n


def _cdf_gap(a, b, mask):
    """Largest per-channel Kolmogorov-Smirnov distance inside the mask."""
    sel = mask.reshape(-1) >= 128
    gaps = []
    for c in range(3):
        ca = np.cumsum(np.bincount(a[..., c].reshape(-1)[sel], minlength=256)) / sel.sum()
        cb = np.cumsum(np.bincount(b[..., c].reshape(-1)[sel], minlength=256)) / sel.sum()
        gaps.append(np.abs(ca - cb).max())
    return max(gaps)


def test_rct_matches_lab_mean_and_std(faces):
    src, ref, mask = faces
    out = colour.rct(src, ref, mask)
    o, r, s = _lab(out, mask), _lab(ref, mask), _lab(src, mask)
    assert np.abs(s.mean(0) - r.mean(0)).max() > 5  # the test has something to prove
    assert np.abs(o.mean(0) - r.mean(0)).max() < 0.5
    assert np.abs(o.std(0) / r.std(0) - 1).max() < 0.06
    assert np.abs(s.std(0) / r.std(0) - 1).max() > 0.3


def test_lct_matches_mean_and_covariance(faces):
    src, ref, mask = faces
    out = colour.lct(src, ref, mask)
    o, r, s = _pixels(out, mask), _pixels(ref, mask), _pixels(src, mask)
    cr = np.cov(r, rowvar=False)

    def rel(x):
        return np.linalg.norm(np.cov(x, rowvar=False) - cr) / np.linalg.norm(cr)

    assert rel(s) > 0.2
    assert rel(o) < 0.04
    assert np.abs(o.mean(0) - r.mean(0)).max() < 1.5


def test_hist_matches_per_channel_cdf(faces):
    src, ref, mask = faces
    out = colour.hist(src, ref, mask)
    assert _cdf_gap(src, ref, mask) > 0.3
    assert _cdf_gap(out, ref, mask) < 0.03


@pytest.mark.parametrize("mode", ["idt", "sot"])
def test_distribution_modes_converge_and_are_deterministic(faces, mode):
    src, ref, mask = faces
    fn = colour.COLOUR_MODES[mode]
    out = fn(src, ref, mask)
    before, after = _sliced_distance(src, ref, mask), _sliced_distance(out, ref, mask)
    assert after < 0.1 * before
    # Matching the whole distribution beats matching its first two moments.
    assert after < 0.5 * _sliced_distance(colour.rct(src, ref, mask), ref, mask)
    assert np.array_equal(out, fn(src, ref, mask))
    assert not np.array_equal(out, fn(src, ref, mask, seed=1))


def test_none_is_identity(faces):
    src, ref, mask = faces
    out = colour.none(src, ref, mask)
    assert np.array_equal(out, src) and out is not src


@pytest.mark.parametrize("mode", ["rct", "lct", "hist", "idt", "sot"])
def test_only_pixels_inside_the_mask_count(faces, mode):
    src, ref, mask = faces
    other = ref.copy()
    other[mask < 128] = (255, 0, 255)  # outside the mask the reference is garbage
    fn = colour.COLOUR_MODES[mode]
    assert np.array_equal(fn(src, ref, mask), fn(src, other, mask))
    assert not np.array_equal(fn(src, ref, mask), fn(src, other, None))


@pytest.mark.parametrize("mode", sorted(colour.COLOUR_MODES))
def test_empty_mask_leaves_source(faces, mode):
    src, ref, _ = faces
    out = colour.transfer(mode, src, ref, np.zeros(src.shape[:2], np.uint8))
    assert np.array_equal(out, src)
    assert out.dtype == np.uint8 and out.shape == src.shape


def test_transfer_dispatches_and_rejects_unknown(faces):
    src, ref, mask = faces
    assert np.array_equal(colour.transfer("rct", src, ref, mask), colour.rct(src, ref, mask))
    with pytest.raises(UserError, match="mkl"):
        colour.transfer("mkl", src, ref, mask)
    with pytest.raises(ValueError):
        colour.rct(src, ref[:128], mask)
