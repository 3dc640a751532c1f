"""The synthetic occluders the learned mask trains on, pasted on real faces: every kind
covers part of the face and touches the image only where it is (or in its shadow), hands
are skin-coloured, glasses sit on the eyes, seeds repeat, the benchmark's held-out images
stay out of the pool, and it is fast enough for the data workers."""

from __future__ import annotations

import time

import cv2
import numpy as np
import pytest

from intracoder.data import occluders as occ
from intracoder.data.occluders import KINDS, OccluderPool, occlude


@pytest.fixture(scope="module")
def crops(finder):
    """(image, hull mask, 468x2 crop landmarks) for 4 grace_hopper crops and 2 astronaut
    crops, aligned exactly as extraction cuts them (128 px, full face)."""
    from intracoder.faces.align import transform_points
    from intracoder.faces.extract import crop_face
    from intracoder.samples import render_clip

    out = []
    for name, n in (("grace_hopper", 4), ("astronaut", 2)):
        frames = render_clip(name, n_frames=n, size=256, seed=3).frames
        for frame, faces in zip(frames, finder.find(frames)):
            assert faces, f"no face found in a {name} frame"
            crop, mask, matrix = crop_face(frame, faces[0].landmarks, "full", 128)
            out.append((crop, mask, transform_points(faces[0].landmarks, matrix)))
    return out


@pytest.fixture(scope="module")
def faces(crops):
    """The grace_hopper crops: the faces that get occluded."""
    return crops[:4]


@pytest.fixture(scope="module")
def pool(crops):
    """Cut from all six crops, as the trainer cuts it from its two facesets."""
    return OccluderPool.build([c[0] for c in crops], [c[1] for c in crops],
                              np.random.default_rng(0))


def _lab(bgr: np.ndarray) -> np.ndarray:
    """Nx3 BGR pixels -> Nx3 Lab (OpenCV's 8-bit scale)."""
    lab = cv2.cvtColor(bgr.reshape(-1, 1, 3).astype(np.uint8), cv2.COLOR_BGR2LAB)
    return lab.reshape(-1, 3).astype(float)


@pytest.mark.parametrize("kind", KINDS)
def test_each_kind_covers_part_of_the_face_and_touches_only_its_place(faces, pool, kind):
    band = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (33, 33))  # shadows fall within 16 px
    for seed in range(6):
        image, mask, landmarks = faces[seed % len(faces)]
        rng = np.random.default_rng(seed)
        out, alpha = occlude(image, rng, pool, landmarks if seed % 2 else None, max_count=1,
                             kinds=(kind,))
        assert out.shape == image.shape and out.dtype == np.uint8
        assert alpha.shape == mask.shape and alpha.dtype == np.float32
        assert 0.0 <= alpha.min() and alpha.max() <= 1.0
        coverage = alpha[mask > 127].mean()
        assert 0.01 < coverage < 0.9, (kind, seed, coverage)
        changed = (out != image).any(axis=2)
        assert changed[alpha > 0.5].mean() > 0.5, "the occluder is not visible where it is"
        near = cv2.dilate((alpha > 0).astype(np.uint8), band) > 0
        assert not (changed & ~near).any(), "pixels changed far from the occluder"
        # Outside the occluder only a shadow may fall: darker, never brighter.
        outside = changed & (alpha == 0)
        assert (out[outside] <= image[outside]).all()


def test_hands_are_skin_coloured(faces, pool):
    k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (25, 25))
    spread = []
    for seed in range(8):
        image, mask, landmarks = faces[seed % len(faces)]
        skin = _lab(image[cv2.erode(mask, k) > 127]).mean(0)
        background = _lab(image[cv2.dilate(mask, k) < 128]).mean(0)
        out, alpha = occlude(image, np.random.default_rng(100 + seed), pool, landmarks,
                             max_count=1, kinds=("hand",))
        hand = _lab(out[alpha > 0.95])
        to_skin = np.linalg.norm(hand.mean(0) - skin)
        to_background = np.linalg.norm(hand.mean(0) - background)
        assert to_skin < to_background, (seed, to_skin, to_background)
        spread.append(hand[:, 1:].std(0).mean())
    # Skin is even in hue: a texture pulled to skin tone would still vary (bricks, print).
    assert np.mean(spread) < 6.0, spread


def test_glasses_sit_on_the_eyes_and_the_lenses_stay_visible(faces, pool):
    lenses = []
    for seed in range(10):
        image, mask, landmarks = faces[seed % len(faces)]
        eyes = np.stack([landmarks[[33, 133]].mean(0), landmarks[[263, 362]].mean(0)])
        unit = np.linalg.norm(eyes[1] - eyes[0])
        for shift in (np.zeros(2), np.array([7.0, 9.0])):  # the glasses follow the landmarks
            _, alpha = occlude(image, np.random.default_rng(seed), pool, landmarks + shift,
                               max_count=1, kinds=("glasses",))
            frame = np.where(alpha >= 0.5, alpha, 0)
            ys, xs = np.nonzero(frame)
            w = frame[ys, xs]
            centre = np.array([(xs * w).sum(), (ys * w).sum()]) / w.sum()
            target = eyes.mean(0) + shift
            assert abs(centre[1] - target[1]) < 0.2 * unit, (seed, shift, centre, target)
            assert abs(centre[0] - target[0]) < 0.3 * unit, (seed, shift, centre, target)
            # Most of the frame lies in the band of the eyes (rims, bridge, temples).
            assert (np.abs(ys - target[1]) < 0.5 * unit).mean() > 0.85
            for eye in eyes + shift:  # the lens over each eye is face, not occluder
                x, y = np.round(eye).astype(int)
                lenses.append(alpha[y, x])
    assert max(lenses) < 0.5, max(lenses)
    assert max(lenses) > 0.02, "no tinted lenses drawn: the check above saw none"


def test_same_seed_same_output_and_different_seeds_differ(faces, pool):
    image, _, landmarks = faces[0]
    for seed in range(8):
        a = occlude(image, np.random.default_rng(seed), pool, landmarks)
        b = occlude(image, np.random.default_rng(seed), pool, landmarks)
        c = occlude(image, np.random.default_rng(seed + 100), pool, landmarks)
        assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
        assert not np.array_equal(a[1], c[1]) and not np.array_equal(a[0], c[0])
    p1 = OccluderPool.build([image], [faces[0][1]], np.random.default_rng(1))
    p2 = OccluderPool.build([image], [faces[0][1]], np.random.default_rng(1))
    assert p1.names == p2.names and np.array_equal(p1.textures, p2.textures)


def test_unknown_kind_is_refused(faces, pool):
    with pytest.raises(ValueError, match="unknown occluder kinds"):
        occlude(faces[0][0], np.random.default_rng(0), pool, kinds=("umbrella",))


def test_pool_never_holds_the_held_out_benchmark_images(pool):
    held_out = ("coffee", "rocket")  # the held-out benchmark's images
    assert set(held_out) <= set(occ.RESERVED)
    sources = {name.split(":", 1)[1].split(".")[0] for name in pool.names
               if not name.startswith("crop:")}
    assert sources, "no library textures were loaded"
    assert not sources & set(held_out), sources & set(held_out)
    assert all(name.split(":")[0] in ("skimage", "matplotlib", "crop") for name in pool.names)
    assert len(pool.names) == len(pool.textures) >= 24  # a few dozen textures
    assert pool.textures.shape[1:] == (128, 128, 3) and len(pool.skins) >= 1


def test_fast_enough_for_the_data_workers(faces, pool):
    image, _, landmarks = faces[0]
    rng = np.random.default_rng(3)
    threads = cv2.getNumThreads()
    cv2.setNumThreads(1)  # as in the data workers (intracoder/data/workers.py)
    try:
        for _ in range(20):
            occlude(image, rng, pool, landmarks)
        start = time.perf_counter()
        for _ in range(200):
            occlude(image, rng, pool, landmarks)
        ms = (time.perf_counter() - start) / 200 * 1e3
    finally:
        cv2.setNumThreads(threads)
    print(f"occlude: {ms:.2f} ms per call at 128 px (mean of 200)")
    assert ms < 10.0, ms
