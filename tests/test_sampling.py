"""What the batch source draws and how it colours it: yaw-balanced sampling (DFL's
uniform_yaw), training-time colour matching of B to A (DFL's ct_mode) and the input-only
HSV shift (DFL's random_hsv_power). Real faces from the bundled portraits; no Keras."""

from __future__ import annotations

import dataclasses
import types
from pathlib import Path

import cv2
import numpy as np
import pytest

from intracoder.data import augmentation as aug
from intracoder.data.dataset import (YAW_BINS, YAW_RANGE_DEG, FaceSet, PairDataset,
                                     load_faceset, yaw_bins)
from intracoder.errors import UserError
from intracoder.faces.faceset import FaceMeta, write_face
from intracoder.samples import render_clip
from intracoder.training.config import TrainConfig

SIZE = 64
PLAIN = TrainConfig(rotation=0, scale=0, shift=0, random_warp=False, flip=0, brightness=0,
                    contrast=0, saturation=0, hue=0)


def _settings(base: TrainConfig, **extra) -> types.SimpleNamespace:
    """``base``'s fields plus ``extra`` (e.g. random_hsv_power, whether or not TrainConfig
    has that field yet)."""
    fields = {f.name: getattr(base, f.name) for f in dataclasses.fields(base)}
    fields.update(extra)
    return types.SimpleNamespace(**fields)


def _face_mask(size: int = SIZE) -> np.ndarray:
    mask = np.zeros((size, size), np.uint8)
    cv2.ellipse(mask, (size // 2, size // 2), (size // 3, size * 2 // 5), 0, 0, 360, 255, -1)
    return mask


def _faceset(name: str, yaws, seed: int = 0, light=(0.7, 1.2)) -> FaceSet:
    """Real crops of one portrait (swaying, zooming, relit), one per yaw given."""
    yaws = np.asarray(yaws, np.float64)
    clip = render_clip(name, n_frames=len(yaws), size=SIZE, seed=seed, max_angle=8,
                       light=light, face_fraction=0.55)
    images = np.stack([cv2.cvtColor(f, cv2.COLOR_BGR2RGB) for f in clip.frames])
    masks = np.stack([_face_mask()] * len(yaws))
    return FaceSet(folder=Path(name), images=images, masks=masks, hulls=[[]] * len(yaws),
                   face_type="full", crop_size=SIZE, fingerprint=name, held_out=[], yaws=yaws)


@pytest.fixture(scope="module")
def poses() -> FaceSet:
    """102 faces: 90 frontal (yaw within +-1.5 degrees), 10 turned to about 26 degrees,
    2 to about -40: one frequent and two rare pose bins."""
    rng = np.random.default_rng(5)
    yaws = np.r_[rng.uniform(-1.5, 1.5, 90), rng.uniform(26.0, 27.0, 10), [-40.2, -39.8]]
    return _faceset("grace_hopper", yaws)


def _draws(ds: PairDataset, side: int, batches: int) -> np.ndarray:
    return np.array([i for it in range(batches) for i in ds.indices(side, it)])


def test_yaw_bins_cover_dfl_range_with_a_frontal_bin(poses):
    width = 2 * YAW_RANGE_DEG / YAW_BINS
    assert YAW_BINS % 2 == 1 and 3.0 <= width <= 5.0  # one bin centred on yaw 0
    assert [len(b) for b in yaw_bins(poses.yaws)] == [2, 90, 10]  # in order of yaw
    # Beyond DFL's +-1.2 rad the outermost bins take the faces; bin edges at +-width/2.
    assert len(yaw_bins(np.array([-90.0, -69.0, 90.0, 69.0]))) == 2
    assert len(yaw_bins(np.array([-0.49, 0.49]) * width)) == 1
    assert len(yaw_bins(np.array([-0.51, 0.51]) * width)) == 2  # either side of it
    assert len(yaw_bins(np.array([-0.51, 0.0, 0.51]) * width)) == 3


def test_uniform_yaw_draws_rare_poses_as_often_as_frequent_ones(poses):
    frontal, turned, far = (np.flatnonzero(m) for m in (np.abs(poses.yaws) < 2,
                                                        poses.yaws > 20, poses.yaws < -30))
    plain = PairDataset(poses, poses, 12, PLAIN, seed=3)
    balanced = PairDataset(poses, poses, 12, PLAIN, seed=3, uniform_yaw=True)
    for side in (0, 1):
        drawn = _draws(balanced, side, 250)  # 3000 faces
        share = [np.isin(drawn, g).mean() for g in (frontal, turned, far)]
        assert all(0.29 < s < 0.38 for s in share), share  # a third each, +-4 sigma
        assert np.isin(drawn, turned).sum() >= 0.85 * np.isin(drawn, frontal).sum()
        # Uniform inside a bin: each of the 10 turned faces ~100 times, each frontal ~11.
        counts = np.bincount(drawn, minlength=len(poses))
        assert counts[turned].min() > 60 and counts[far].min() > 400
        assert counts[frontal].max() < 30
    # Without balancing the footage's own proportions: each epoch (102 faces) has the 10
    # turned faces exactly once, so the frequent bin is drawn 9 times as often.
    drawn = _draws(plain, 0, 17 * 6)  # 12 epochs
    assert np.isin(drawn, turned).sum() * 9 == np.isin(drawn, frontal).sum()
    assert np.isin(drawn, far).sum() == 24


def test_uniform_yaw_is_deterministic_and_off_keeps_the_epoch_order(poses):
    def make(**kw):
        return PairDataset(poses, poses, 8, PLAIN, seed=11, **kw)

    first, second = make(uniform_yaw=True), make(uniform_yaw=True)
    # Pure function of (seed, side, iteration): any order, any instance, same faces.
    late = [second.indices(1, it) for it in (40, 7, 3)]
    assert [first.indices(1, it) for it in (40, 7, 3)] == late
    assert all(first.indices(s, it) == second.indices(s, it) for s in (0, 1) for it in range(20))
    batches = [tuple(first.indices(0, it)) for it in range(20)]
    assert len(set(batches)) == 20  # differs from iteration to iteration
    assert first.indices(0, 5) != first.indices(1, 5)  # and from side to side
    assert first.indices(0, 5) != PairDataset(poses, poses, 8, PLAIN, seed=12,
                                              uniform_yaw=True).indices(0, 5)
    x1, y1 = first[9]
    x2, y2 = second[9]
    assert all(np.array_equal(p, q) for p, q in zip((*x1, *y1), (*x2, *y2)))
    # Off: today's order byte for byte, a fresh permutation per epoch and side.
    n = len(poses)
    perms = {(s, e): np.random.default_rng([11, s, e]).permutation(n)
             for s in (0, 1) for e in range(3)}
    for s in (0, 1):
        want = np.concatenate([perms[s, e] for e in range(3)])[:8 * 30]
        assert _draws(make(), s, 30).tolist() == want.tolist()
    # A faceset without yaws (or all in one bin) has nothing to balance: epoch order.
    flat = dataclasses.replace(poses, yaws=None)
    assert np.array_equal(flat.yaws, np.zeros(n))
    ds = PairDataset(flat, flat, 8, PLAIN, seed=11, uniform_yaw=True)
    assert _draws(ds, 0, 30).tolist() == _draws(make(), 0, 30).tolist()


def test_load_faceset_reads_the_yaw_of_each_crop(tmp_path):
    yaws = [-31.5, 0.0, 12.25, 44.0, 3.5, -7.0, 20.0, 1.25]  # degrees, as extract writes
    clip = render_clip("astronaut", n_frames=len(yaws), size=96, max_angle=5)
    lms = np.c_[np.full((468, 2), 48.0), np.zeros(468)]
    for i, (frame, yaw) in enumerate(zip(clip.frames, yaws)):
        meta = FaceMeta(source="clip", frame=i, face_index=0, confidence=1.0,
                        points5=[[0, 0]] * 5, landmarks=lms.tolist(),
                        matrix=[[1, 0, 0], [0, 1, 0]], face_type="full", size=96, blur=1.0,
                        yaw=yaw, pitch=0, roll=0, version="test")
        write_face(tmp_path / f"clip_{i:06d}_0.png", frame, _face_mask(96), meta)
    faces = load_faceset(tmp_path, SIZE)
    assert faces.yaws.dtype == np.float64 and faces.yaws.tolist() == yaws
    # Held-out crops (every 3rd from the first) leave with their yaws.
    train = load_faceset(tmp_path, SIZE, held_out_every=3)
    assert train.yaws.tolist() == [yaws[i] for i in (1, 2, 4, 5, 7)]
    with pytest.raises(ValueError, match="yaws"):
        dataclasses.replace(faces, yaws=np.zeros(3))


# --- colour matching (ct_mode) --------------------------------------------------------


@pytest.fixture(scope="module")
def pair() -> tuple[FaceSet, FaceSet]:
    """A: Grace Hopper, bright and warm-lit; B: the astronaut, much darker. Different skin,
    light and background, so matching has a long way to go."""
    a = _faceset("grace_hopper", np.zeros(12), seed=1, light=(1.0, 1.25))
    b = _faceset("astronaut", np.zeros(10), seed=2, light=(0.5, 0.65))
    return a, b


def _mean_lab(rgb: np.ndarray, mask: np.ndarray) -> np.ndarray:
    lab = cv2.cvtColor(rgb.astype(np.float32) / 255, cv2.COLOR_RGB2LAB)
    return lab[mask >= 128].mean(0)


def _uint8(x: np.ndarray) -> np.ndarray:
    return np.rint(x * 255).astype(np.uint8)


# How much of the distance to A's mean colour may remain (rct and lct match the mean before
# the gamut clipping of a dark face brightened a lot; idt and sot match the distribution).
@pytest.mark.parametrize("mode, gain", [("rct", 0.3), ("lct", 0.3), ("hist", 0.25),
                                        ("idt", 0.1), ("sot", 0.1)])
def test_ct_mode_moves_b_colours_towards_a(pair, mode, gain):
    a, b = pair
    ds_off = PairDataset(a, b, 6, PLAIN, seed=4)
    ds_on = PairDataset(a, b, 6, PLAIN, seed=4, ct_mode=mode)
    for it in (0, 1):
        _, (ta0, ma0, tb0, mb0) = ds_off[it]
        _, (ta1, ma1, tb1, mb1) = ds_on[it]
        # A is untouched, B's masks are B's own; no augmentation: the target is the face.
        assert np.array_equal(ta0, ta1) and np.array_equal(ma0, ma1)
        assert np.array_equal(mb0, mb1)
        refs = ds_on.colour_references(it)
        assert len(set(refs)) > 1  # a random A face per B face
        assert refs == PairDataset(a, b, 6, PLAIN, seed=4, ct_mode=mode).colour_references(it)
        for k, (j, i) in enumerate(zip(refs, ds_on.indices(1, it))):
            inside = _uint8(mb1[k, ..., 0])
            want = _mean_lab(a.images[j], a.masks[j])
            before = np.linalg.norm(_mean_lab(_uint8(tb0[k]), inside) - want)
            after = np.linalg.norm(_mean_lab(_uint8(tb1[k]), inside) - want)
            assert np.array_equal(_uint8(tb0[k]), b.images[i])
            assert before > 15, before  # the test has something to prove
            assert after < gain * before, (mode, before, after)


def _edges(rgb: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Gradient magnitude of the grey image inside the face, after normalising the grey
    levels to zero mean and unit spread there: structure, not brightness or contrast."""
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.float64)
    inside = mask >= 128
    grey = (grey - grey[inside].mean()) / grey[inside].std()
    gx, gy = cv2.Sobel(grey, cv2.CV_64F, 1, 0), cv2.Sobel(grey, cv2.CV_64F, 0, 1)
    return np.hypot(gx, gy)[cv2.erode(mask, np.ones((5, 5), np.uint8)) >= 128]


@pytest.mark.parametrize("mode", ["rct", "lct"])
def test_ct_mode_changes_colours_not_geometry(pair, mode):
    a, b = pair
    s = TrainConfig(flip=0.5)  # the full augmentation: affine, warp, flip, colour jitter
    ds_off = PairDataset(a, b, 6, s, seed=8, priority=False)
    ds_on = PairDataset(a, b, 6, s, seed=8, priority=False, ct_mode=mode)
    (wa0, wb0), (ta0, _, tb0, mb0) = ds_off[3]
    (wa1, wb1), (ta1, _, tb1, mb1) = ds_on[3]
    assert np.array_equal(mb0, mb1) and np.array_equal(ta0, ta1) and np.array_equal(wa0, wa1)
    assert np.abs(tb0 - tb1).mean() > 0.05  # the colours did change
    for k in range(len(tb0)):
        mask = _uint8(mb0[k, ..., 0])
        for off, on in ((tb0[k], tb1[k]), (wb0[k], wb1[k])):
            e0, e1 = _edges(_uint8(off), mask), _edges(_uint8(on), mask)
            assert np.corrcoef(e0, e1)[0, 1] > 0.95
            # The measure can fail: a 2-pixel shift of the same face scores far lower.
            moved = np.roll(_uint8(on), 2, axis=1)
            assert np.corrcoef(e0, _edges(moved, mask))[0, 1] < 0.8


def test_ct_mode_is_checked(pair):
    a, b = pair
    with pytest.raises(UserError, match="unknown colour transfer mode"):
        PairDataset(a, b, 4, PLAIN, ct_mode="bogus")
    assert PairDataset(a, b, 4, PLAIN, ct_mode=None).ct_mode == "none"


# --- input-only HSV shift (random_hsv_power) ------------------------------------------


def _face(name: str = "astronaut") -> np.ndarray:
    clip = render_clip(name, n_frames=1, size=SIZE, max_angle=0, face_fraction=0.55)
    return cv2.cvtColor(clip.frames[0], cv2.COLOR_BGR2RGB)


def test_hsv_shift_recipe():
    img = _face()
    assert np.array_equal(aug.hsv_shift(img, 0.0, 0.0, 0.0), img)
    # A third of the hue circle sends red to green, green to blue, blue to red.
    turned = aug.hsv_shift(img, 1 / 3, 0.0, 0.0).astype(int)
    assert np.abs(turned - img[..., [2, 0, 1]]).max() <= 1
    assert np.abs(turned - img).mean() > 10
    assert aug.random_hsv_shift(img, np.random.default_rng(0), 0.0) is img
    # DFL's ranges: hue +-power/2 of the circle, saturation and value +-power/2.
    patch = np.full((4, 4, 3), (180, 120, 90), np.uint8)  # a skin tone
    hsv0 = cv2.cvtColor(patch.astype(np.float32) / 255, cv2.COLOR_RGB2HSV)[0, 0]
    shifts = []
    for seed in range(300):
        out = aug.random_hsv_shift(patch, np.random.default_rng(seed), 0.1)
        hsv = cv2.cvtColor(out.astype(np.float32) / 255, cv2.COLOR_RGB2HSV)[0, 0]
        shifts.append([(hsv[0] - hsv0[0] + 180) % 360 - 180, *(hsv[1:] - hsv0[1:])])
    shifts = np.abs(np.array(shifts))
    assert shifts[:, 0].max() <= 18 + 1.0 and shifts[:, 0].max() > 15
    assert shifts[:, 1:].max() <= 0.05 + 2 / 255 and shifts[:, 1:].max() > 0.04


def test_hsv_shift_changes_the_input_never_the_target(pair):
    image, mask = _face(), _face_mask()
    base = TrainConfig(flip=0.5)
    off, zero, on = (_settings(base, random_hsv_power=p) for p in (None, 0.0, 0.05))
    del off.random_hsv_power  # a settings object without the field: off
    changed = []
    for seed in range(8):
        w0, t0, m0, _ = aug.augment(image, mask, np.random.default_rng(seed), off)
        wz, tz, mz, _ = aug.augment(image, mask, np.random.default_rng(seed), zero)
        w1, t1, m1, _ = aug.augment(image, mask, np.random.default_rng(seed), on)
        assert np.array_equal(w0, wz) and np.array_equal(t0, tz)  # power 0: identity
        assert np.array_equal(t0, t1) and np.array_equal(m0, m1)  # target untouched
        changed.append(np.abs(w1.astype(int) - w0).mean())
        # Colours only: the shifted input has the unshifted input's structure.
        assert np.corrcoef(_edges(w0, m0), _edges(w1, m0))[0, 1] > 0.95
    assert min(changed) > 0.3 and max(changed) < 25
    # Without a warp the input starts as the very target array: it must still stay apart.
    plain = _settings(PLAIN, random_hsv_power=0.05)
    warped, target, _, _ = aug.augment(image, mask, np.random.default_rng(1), plain)
    assert np.array_equal(target, image) and not np.array_equal(warped, image)
    # Through the batch source too, with the warp making input and target differ.
    a, b = pair
    x0, y0 = PairDataset(a, b, 4, off, seed=2)[5]
    x1, y1 = PairDataset(a, b, 4, on, seed=2)[5]
    assert all(np.array_equal(p, q) for p, q in zip(y0, y1))
    assert all(not np.array_equal(p, q) for p, q in zip(x0, x1))
    x2, _ = PairDataset(a, b, 4, on, seed=2)[5]
    assert all(np.array_equal(p, q) for p, q in zip(x1, x2))  # replayable
