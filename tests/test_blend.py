"""Blend mask and pasting: the frame outside the face is untouched, Poisson blending runs on
the face's neighbourhood only and lands exactly where the alpha paste does."""

import cv2
import numpy as np
import pytest

from intracoder.convert import blend
from intracoder.samples import portrait

S = 256  # crop size


def _ellipse(size=S, axes=(80, 100)):
    m = np.zeros((size, size), np.uint8)
    cv2.ellipse(m, (size // 2, size // 2), axes, 0, 0, 360, 255, -1)
    return m


def _crop_matrix(cx, cy, face_px, angle=12.0):
    """Frame -> crop similarity putting a face_px-wide face centred at (cx, cy) in the crop."""
    m = cv2.getRotationMatrix2D((cx, cy), angle, S / face_px)
    m[:, 2] += np.array([S / 2 - cx, S / 2 - cy])
    return m


@pytest.fixture(scope="module")
def frame():
    return cv2.resize(portrait("astronaut"), (1920, 1080), interpolation=cv2.INTER_AREA)


@pytest.fixture(scope="module")
def mask():
    return blend.face_mask(_ellipse(), _ellipse(axes=(95, 90)), erode_px=4, blur_px=12, face_size=S)


def _footprint(mask, matrix, shape, grow=3):
    """Frame pixels the warped mask can touch, dilated by a few pixels."""
    warped = cv2.warpAffine(mask, matrix, (shape[1], shape[0]),
                            flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP)
    return cv2.dilate((warped > 0).astype(np.uint8), np.ones((2 * grow + 1,) * 2, np.uint8)) > 0


def test_face_mask_is_the_intersection_then_shrinks_and_feathers():
    pred, hull = _ellipse(axes=(80, 100)), _ellipse(axes=(100, 80))
    plain = blend.face_mask(pred, hull, 0, 0, S)
    assert np.array_equal(plain, np.minimum(pred, hull))
    eroded = blend.face_mask(pred, hull, 10, 0, S)
    assert np.count_nonzero(eroded) < 0.85 * np.count_nonzero(plain)
    assert not np.any(eroded > plain)
    dilated = blend.face_mask(pred, hull, -10, 0, S)
    assert np.count_nonzero(dilated) > np.count_nonzero(plain)
    soft = blend.face_mask(pred, hull, 0, 16, S)
    partial = np.count_nonzero((soft > 0) & (soft < 255))
    assert partial > 10 * np.count_nonzero((plain > 0) & (plain < 255)) + 1000


def test_face_mask_sizes_scale_with_face_size():
    """The same settings on a 512-px crop give the 256-px result, upscaled."""
    small = blend.face_mask(_ellipse(), None, 12, 10, 256)
    big = blend.face_mask(_ellipse(512, (160, 200)), None, 12, 10, 512)
    up = cv2.resize(small, (512, 512), interpolation=cv2.INTER_LINEAR).astype(np.float32)
    assert np.abs(up - big).mean() < 1.0
    unscaled = blend.face_mask(_ellipse(512, (160, 200)), None, 12, 10, 256)
    assert np.abs(up - unscaled).mean() > 3 * np.abs(up - big).mean()


def test_face_mask_fades_to_zero_before_the_crop_edge():
    full = np.full((S, S), 255, np.uint8)
    m = blend.face_mask(full, None, 0, 8, S)
    assert m[S // 2, S // 2] == 255
    assert m[0].max() == m[-1].max() == m[:, 0].max() == m[:, -1].max() == 0


@pytest.mark.parametrize("paste", [blend.paste_alpha, blend.paste_seamless])
@pytest.mark.parametrize("centre", [(900, 330), (40, 60), (1900, 1060)])
def test_outside_the_face_is_byte_identical(frame, mask, paste, centre):
    m = _crop_matrix(*centre, face_px=420)
    face = cv2.warpAffine(portrait("grace_hopper"), _crop_matrix(265, 215, 230), (S, S))
    out = paste(frame, face, mask, m)
    inside = _footprint(mask, m, frame.shape)
    assert np.array_equal(out[~inside], frame[~inside])
    assert np.abs(out[inside].astype(int) - frame[inside]).mean() > 10  # the face is there


@pytest.mark.parametrize("paste", [blend.paste_alpha, blend.paste_seamless])
def test_empty_or_offscreen_mask_returns_frame_unchanged(frame, paste):
    face = np.full((S, S, 3), 200, np.uint8)
    empty = np.zeros((S, S), np.uint8)
    assert np.array_equal(paste(frame, face, empty, _crop_matrix(900, 300, 400)), frame)
    far = _crop_matrix(-2000, -2000, 400)
    assert blend.paste_region(frame.shape, _ellipse(), far) is None
    assert np.array_equal(paste(frame, face, _ellipse(), far), frame)


@pytest.mark.parametrize("centre", [(900, 330), (30, 40), (1905, 1070)])
def test_seamless_self_paste_is_near_identity(frame, mask, centre):
    """Pasting the frame's own crop back must reproduce the frame: any misplacement of the
    cloned region (OpenCV's centre convention) or broken border handling shows up here."""
    m = _crop_matrix(*centre, face_px=420)
    crop = cv2.warpAffine(frame, m, (S, S), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    inside = _footprint(mask, m, frame.shape, grow=0)

    def error(out):
        return np.abs(out[inside].astype(int) - frame[inside]).mean()

    # Warping to the crop and back costs some detail; seamless must lose nothing beyond that.
    resampling = error(blend.paste_alpha(frame, crop, mask, m))
    assert resampling < 3
    seamless = error(blend.paste_seamless(frame, crop, mask, m))
    assert seamless < resampling + 0.3
    shifted = np.roll(crop, 3, axis=1)  # the same face 3 px off is clearly worse
    assert error(blend.paste_seamless(frame, shifted, mask, m)) > 3 * seamless


def test_seamless_takes_the_frame_colour_alpha_does_not(frame, mask):
    m = _crop_matrix(900, 330, 420)
    crop = cv2.warpAffine(frame, m, (S, S), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    brighter = np.clip(crop.astype(int) + 35, 0, 255).astype(np.uint8)
    inside = _footprint(blend.face_mask(_ellipse(), None, 30, 0, S), m, frame.shape, grow=0)

    def error(out):
        return np.abs(out[inside].astype(int) - frame[inside]).mean()

    assert error(blend.paste_alpha(frame, brighter, mask, m)) > 25
    assert error(blend.paste_seamless(frame, brighter, mask, m)) < 5


def test_seamless_solves_only_the_face_region(frame, mask, monkeypatch):
    shapes = []
    real = cv2.seamlessClone

    def spy(src, dst, clone_mask, centre, flags):
        shapes.append(dst.shape)
        return real(src, dst, clone_mask, centre, flags)

    monkeypatch.setattr(cv2, "seamlessClone", spy)
    m = _crop_matrix(900, 330, 300)
    face = cv2.warpAffine(portrait("grace_hopper"), _crop_matrix(265, 215, 230), (S, S))
    blend.paste_seamless(frame, face, mask, m)
    x0, y0, x1, y1 = blend.paste_region(frame.shape, mask, m)
    assert len(shapes) == 1
    h, w = shapes[0][:2]
    assert h <= (y1 - y0) + 4 and w <= (x1 - x0) + 4
    assert h * w < 0.06 * frame.shape[0] * frame.shape[1]
    # The region covers the whole warped mask, nothing more than a few pixels beyond it.
    ys, xs = np.nonzero(_footprint(mask, m, frame.shape, grow=0))
    assert x0 <= xs.min() and xs.max() < x1 and y0 <= ys.min() and ys.max() < y1
    assert (x1 - x0) <= xs.max() - xs.min() + 10 and (y1 - y0) <= ys.max() - ys.min() + 10


def test_inputs_are_not_modified(frame, mask):
    m = _crop_matrix(900, 330, 420)
    face = cv2.warpAffine(portrait("grace_hopper"), _crop_matrix(265, 215, 230), (S, S))
    before = (frame.copy(), face.copy(), mask.copy())
    blend.paste_seamless(frame, face, mask, m)
    blend.paste_alpha(frame, face, mask, m)
    assert all(np.array_equal(a, b) for a, b in zip(before, (frame, face, mask)))


def test_reduced_resolution_poisson_matches_the_full_solve(frame, mask):
    """A large face is solved on a region shrunk to POISSON_SIDE; where the generated face
    is the destination's in other colours (what the swap hands to blending), the result must
    stay close to the full-resolution solve, and leave the rest of the frame alone."""
    m = _crop_matrix(900, 330, 420)
    crop = cv2.warpAffine(frame, m, (S, S), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    face = np.clip(crop.astype(int) * [0.8, 1.0, 1.2] + 25, 0, 255).astype(np.uint8)
    x0, y0, x1, y1 = blend.paste_region(frame.shape, mask, m)
    assert max(x1 - x0, y1 - y0) > 4 * blend.POISSON_SIDE  # the reduced path is taken
    full = blend.paste_seamless(frame, face, mask, m, max_side=0)
    fast = blend.paste_seamless(frame, face, mask, m)
    inside = _footprint(mask, m, frame.shape, grow=0)
    mse = np.mean((full[inside].astype(float) - fast[inside]) ** 2)
    assert 10 * np.log10(255 ** 2 / mse) > 37
    # A face 3 px off differs from the full solve by far more than the reduced solve does.
    off = blend.paste_seamless(frame, np.roll(face, 3, axis=1), mask, m)
    assert np.mean((full[inside].astype(float) - off[inside]) ** 2) > 3 * mse
    outside = ~_footprint(mask, m, frame.shape)
    assert np.array_equal(fast[outside], frame[outside])
