"""Augmentation and the batch source: what is shared by input and target, what is not,
ranges, determinism, and the faceset checks. No Keras here; all fast."""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np
import pytest

from intracoder.data import augmentation as aug
from intracoder.data.dataset import PairDataset, Prefetcher, load_faceset
from intracoder.errors import UserError
from intracoder.faces.faceset import FaceMeta, write_face
from intracoder.samples import render_clip
from intracoder.training.config import TrainConfig

SIZE = 64
PLAIN = TrainConfig(rotation=0, scale=0, shift=0, random_warp=False, flip=0, brightness=0,
                    contrast=0, saturation=0, hue=0)


def _dots(points: np.ndarray, size: int = SIZE) -> np.ndarray:
    img = np.zeros((size, size, 3), np.uint8)
    for x, y in points:
        cv2.circle(img, (int(x), int(y)), 2, (255, 255, 255), -1)
    return img


def _centroids(img: np.ndarray, near: np.ndarray) -> np.ndarray:
    """Intensity-weighted centre of the bright blob closest to each expected point."""
    grey = img[..., 0].astype(np.float64) if img.ndim == 3 else img.astype(np.float64)
    ys, xs = np.mgrid[0:grey.shape[0], 0:grey.shape[1]]
    out = []
    for px, py in near:
        w = grey * ((xs - px) ** 2 + (ys - py) ** 2 < 8 ** 2)
        out.append([(w * xs).sum() / w.sum(), (w * ys).sum() / w.sum()])
    return np.asarray(out)


def _texture(size: int = SIZE) -> np.ndarray:
    return cv2.resize(render_clip("astronaut", n_frames=1, size=256).frames[0], (size, size),
                      interpolation=cv2.INTER_AREA)


def test_affine_is_shared_by_input_target_and_masks():
    s = dataclasses.replace(PLAIN, rotation=10, scale=0.05, shift=0.05, flip=0.5)
    points = np.array([[20.0, 22.0], [44.0, 22.0], [32.0, 46.0]])
    image = _dots(points)
    for seed in range(6):
        d = aug.draw(np.random.default_rng(seed), SIZE, s)
        warped, target, mask, _ = aug.apply(image, image[..., 0], d, s)
        moved = points @ d.matrix[:, :2].T + d.matrix[:, 2]
        assert np.abs(_centroids(target, moved) - moved).max() < 0.6
        assert np.abs(_centroids(mask, moved) - moved).max() < 0.6
        assert np.array_equal(warped, target)  # no warp: the input is the target


def test_warp_changes_the_input_only():
    s = dataclasses.replace(PLAIN, random_warp=True)
    image = _texture()
    mask = np.full((SIZE, SIZE), 255, np.uint8)
    changed = []
    for seed in range(4):
        warped, target, out_mask, _ = aug.augment(image, mask, np.random.default_rng(seed), s)
        assert np.array_equal(target, image) and np.array_equal(out_mask, mask)
        changed.append(np.abs(warped.astype(int) - image).mean())
    assert min(changed) > 1.0
    no_spread = dataclasses.replace(s, warp_std=0.0)
    warped, target, _, _ = aug.augment(image, mask, np.random.default_rng(0), no_spread)
    assert np.array_equal(warped, image)  # a zero-spread warp map is the exact identity


def test_colour_jitter_is_shared_and_replayable():
    s = dataclasses.replace(PLAIN, brightness=0.3, contrast=0.3, saturation=0.3, hue=0.05)
    image, mask = _texture(), np.full((SIZE, SIZE), 255, np.uint8)
    warped, target, _, _ = aug.augment(image, mask, np.random.default_rng(3), s)
    assert np.array_equal(warped, target)
    assert np.abs(target.astype(int) - image).mean() > 1.0
    again = aug.augment(image, mask, np.random.default_rng(3), s)
    assert np.array_equal(again[1], target)


def test_same_seed_same_sample_other_seed_other_sample():
    s = TrainConfig(flip=0.5)
    image, mask = _texture(), np.full((SIZE, SIZE), 255, np.uint8)
    first = aug.augment(image, mask, np.random.default_rng(7), s)
    second = aug.augment(image, mask, np.random.default_rng(7), s)
    other = aug.augment(image, mask, np.random.default_rng(8), s)
    assert all(np.array_equal(a, b) for a, b in zip(first[:3], second[:3]))
    assert not np.array_equal(first[0], other[0])


def test_ranges_respected():
    s = TrainConfig(rotation=10, scale=0.05, shift=0.05, flip=0.3, warp_std=0.24)
    rng = np.random.default_rng(0)
    draws = [aug.draw(rng, SIZE, s) for _ in range(300)]
    angles = np.array([d.angle for d in draws])
    assert np.abs(angles).max() <= 10 and np.abs(angles).max() > 8
    assert all(0.95 <= d.scale <= 1.05 for d in draws)
    assert all(abs(v) <= 0.05 * SIZE for d in draws for v in d.shift)
    assert 0.2 < np.mean([d.flipped for d in draws]) < 0.4
    for d in draws[:20]:  # the matrix really is that rotation and scale (mirror aside)
        det = np.linalg.det(d.matrix[:, :2])
        assert abs(np.sqrt(abs(det)) - d.scale) < 1e-9 and (det < 0) == d.flipped
    ys, xs = np.mgrid[0:SIZE, 0:SIZE]
    spread = [np.abs(d.warp[..., 0] - xs).max() for d in draws]
    assert 0 < np.median(spread) < 0.24 * SIZE / 2 * 4  # within 4 sigma of the largest cell
    for bad in ({"rotation": 200}, {"flip": 1.5}, {"scale": -0.1}, {"hue": 0.7}):
        with pytest.raises(UserError):
            TrainConfig(**bad)


def _fake_landmarks(size: int) -> np.ndarray:
    """468 points with the eye and lip contours on ellipses where a face would have them."""
    pts = np.full((468, 2), size / 2.0)
    for region, (cx, cy, rx, ry) in zip(aug.PRIORITY_REGIONS, ((0.36, 0.42, 0.07, 0.03),
                                                              (0.64, 0.42, 0.07, 0.03),
                                                              (0.5, 0.72, 0.12, 0.05))):
        t = np.linspace(0, 2 * np.pi, len(region), endpoint=False)
        pts[list(region)] = np.c_[cx + rx * np.cos(t), cy + ry * np.sin(t)] * size
    return pts


def test_priority_mask_covers_eyes_and_mouth_and_follows_the_affine():
    hulls = aug.priority_hulls(_fake_landmarks(SIZE))
    prio = aug.priority_mask(hulls, np.array([[1.0, 0, 0], [0, 1.0, 0]]), SIZE)
    at = lambda x, y: prio[int(y * SIZE), int(x * SIZE)]  # noqa: E731
    assert at(0.36, 0.42) == at(0.64, 0.42) == at(0.5, 0.72) == 255
    assert at(0.5, 0.55) == at(0.5, 0.2) == at(0.1, 0.9) == 0
    shifted = aug.priority_mask(hulls, np.array([[1.0, 0, 5], [0, 1.0, 0]]), SIZE)
    assert np.array_equal(shifted[:, 5:], prio[:, :-5])


def _write_crops(folder, n: int, size: int, face_type: str = "full") -> None:
    clip = render_clip("grace_hopper", n_frames=n, size=size, max_angle=5)
    mask = np.zeros((size, size), np.uint8)
    cv2.ellipse(mask, (size // 2, size // 2), (size // 3, size * 2 // 5), 0, 0, 360, 255, -1)
    lms = np.c_[_fake_landmarks(size), np.zeros(468)]
    for i, frame in enumerate(clip.frames):
        meta = FaceMeta(source="clip", frame=i, face_index=0, confidence=1.0,
                        points5=[[0, 0]] * 5, landmarks=lms.tolist(),
                        matrix=[[1, 0, 0], [0, 1, 0]], face_type=face_type, size=size,
                        blur=1.0, yaw=0, pitch=0, roll=0, version="test")
        write_face(folder / f"clip_{i:06d}_0.png", frame, mask, meta)


@pytest.fixture(scope="module")
def crops(tmp_path_factory):
    root = tmp_path_factory.mktemp("crops")
    for side, n in (("a", 5), ("b", 3)):
        (root / side).mkdir()
        _write_crops(root / side, n, 96)
    return root / "a", root / "b"


def test_batches_shapes_order_and_prefetch(crops):
    a, b = (load_faceset(d, SIZE) for d in crops)
    ds = PairDataset(a, b, batch_size=4, settings=TrainConfig(), seed=1, priority=True)
    x, y = ds[0]
    assert [v.shape for v in x] == [(4, SIZE, SIZE, 3)] * 2
    image, mask = (4, SIZE, SIZE, 3), (4, SIZE, SIZE, 1)
    assert [v.shape for v in y] == [image, mask, image, mask, mask, mask]
    assert all(v.dtype == np.float32 and 0 <= v.min() and v.max() <= 1 for v in (*x, *y))
    seen = [i for it in range(3) for i in ds.indices(1, it)]  # B has 3 faces, 12 draws
    assert sorted(seen) == sorted([0, 1, 2] * 4)
    with Prefetcher(ds, start=2, workers=2, depth=3) as batches:
        for i in range(2, 6):
            got = next(batches)
            want = ds[i]
            pairs = zip((*got[0], *got[1]), (*want[0], *want[1]))
            assert all(np.array_equal(g, w) for g, w in pairs)
    assert len(PairDataset(a, b, 4, TrainConfig(), priority=False)[0][1]) == 4


def test_faceset_checks(crops, tmp_path):
    with pytest.raises(UserError, match="96 px but the model is 128 px"):
        load_faceset(crops[0], 128)
    with pytest.raises(UserError, match="no extracted faces"):
        load_faceset(tmp_path, SIZE)
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    _write_crops(mixed, 1, 64, "full")
    (mixed / "clip_000000_0.png").rename(mixed / "x_0.png")
    _write_crops(mixed, 1, 64, "whole")
    with pytest.raises(UserError, match="several face types"):
        load_faceset(mixed, SIZE)
