"""Landmark smoothing: less jitter on a still head, little lag on a moving one, and faces
followed by nearest centre so that two faces never get mixed up."""

import numpy as np
import pytest

from intracoder.convert.smoothing import (MAX_JUMP, FaceLocator, FaceTracks, LandmarkFilter,
                                          face_size)
from intracoder.faces.align import alignment_matrix, invert, transform_points
from intracoder.samples import render_clip

FPS = 25.0


def _face(centre=(100.0, 100.0), size=80.0, n=468, seed=0) -> np.ndarray:
    """A fixed cloud of n points, ``size`` px across, around ``centre``."""
    pts = np.random.default_rng(seed).uniform(-0.5, 0.5, (n, 2)) * size
    pts[:2] = [[-size / 2, -size / 2], [size / 2, size / 2]]  # pin the extent
    return pts + np.asarray(centre)


def _jitter(sequence) -> float:
    """Mean frame-to-frame movement of the points, in pixels."""
    return float(np.mean([np.abs(a - b).mean() for a, b in zip(sequence[1:], sequence[:-1])]))


def test_one_euro_damps_noise_on_a_still_face():
    rng = np.random.default_rng(1)
    face = _face()
    noisy = [face + rng.normal(0, 1.0, face.shape) for _ in range(50)]
    filt = LandmarkFilter()
    smoothed = [filt(f, i / FPS) for i, f in enumerate(noisy)]
    assert _jitter(smoothed[10:]) < 0.5 * _jitter(noisy[10:])


def test_one_euro_follows_a_moving_face():
    # 1.5 face sizes per second, a fast head movement: the filter opens up and trails by
    # little, while a fixed low-pass at the still-head cutoff would trail far behind.
    face = _face()
    moving = [face + [120.0 * i / FPS, 0.0] for i in range(50)]
    filt, fixed = LandmarkFilter(), LandmarkFilter(beta=0.0)
    lag = np.mean([np.abs(filt(f, i / FPS) - f).mean() for i, f in enumerate(moving)][10:])
    lag_fixed = np.mean([np.abs(fixed(f, i / FPS) - f).mean() for i, f in enumerate(moving)][10:])
    assert lag < 0.05 * face_size(face)
    assert lag < 0.2 * lag_fixed


def test_tracks_follow_faces_by_nearest_centre():
    tracks = FaceTracks(FPS)
    left, right = _face((100, 100), seed=1), _face((300, 100), seed=2)
    tracks.update([left, right], 0)
    # Same faces, listed the other way round and moved a little: each keeps its own filter,
    # so the smoothed result stays next to its own face.
    out = tracks.update([right + 3.0, left + 3.0], 1)
    assert np.abs(out[0] - right).mean() < 5 and np.abs(out[1] - left).mean() < 5


def test_a_jump_starts_a_new_track():
    tracks = FaceTracks(FPS)
    face = _face((100, 100))
    tracks.update([face], 0)
    far = face + [(MAX_JUMP + 0.2) * face_size(face), 0.0]
    assert np.array_equal(tracks.update([far], 1)[0], far)  # not pulled towards the old face
    assert not np.array_equal(tracks.update([far + 1.0], 2)[0], far + 1.0)  # smoothed again


def test_bad_fps():
    with pytest.raises(ValueError):
        FaceTracks(0)


def _crop_corners(landmarks) -> np.ndarray:
    """Where the corners of the aligned 256-px crop lie in the frame: the paste geometry."""
    corners = np.array([[0, 0], [256, 0], [0, 256], [256, 256]], np.float64)
    return transform_points(corners, invert(alignment_matrix(landmarks, "full", 256)))


def test_smoothing_reduces_jitter_of_a_still_head(finder):
    # A still portrait with fresh sensor noise in every frame: the head does not move, so
    # every movement of the crop is jitter.
    still = render_clip("grace_hopper", n_frames=1, size=256, max_angle=0, zoom=(1, 1),
                        shift=0.0, light=(1, 1)).frames[0]
    rng = np.random.default_rng(0)
    frames = [np.clip(still + rng.normal(0, 4, still.shape), 0, 255).astype(np.uint8)
              for _ in range(16)]
    raw = FaceLocator(finder, detect_every=5)
    smooth = FaceLocator(finder, detect_every=5, tracks=FaceTracks(FPS))
    # Frame 0 alone, then the rest as one chunk: detected on 5, 10, 15, followed between.
    corners_raw, corners_smooth = [], []
    for locator, corners in ((raw, corners_raw), (smooth, corners_smooth)):
        for first, chunk in ((0, frames[:1]), (1, frames[1:])):
            corners += [_crop_corners(faces[0]) for faces in locator.locate(chunk, first)]
    assert _jitter(corners_raw) > 0.05  # there is jitter to remove
    assert _jitter(corners_smooth[4:]) < 0.5 * _jitter(corners_raw[4:])
