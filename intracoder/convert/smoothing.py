"""Faces followed through a video: found cheaply from frame to frame, and smoothed.

``FaceLocator`` runs the detector on key frames only and follows each face with the face
mesh in between; ``FaceTracks`` links each face to its own track by nearest centre and
runs a One-Euro filter over its landmarks.

Detector and face-mesh noise makes the landmarks of a still head wander by a pixel or two
from frame to frame; the alignment follows them, and the pasted face shimmers (the
"jitter/flicker" complaint of DFL #90 and #435). The One-Euro filter (Casiez, Roussel and
Vogel, CHI 2012) is a low-pass filter whose cutoff rises with speed: strong smoothing while
the head is still, little lag when it moves. It is causal, so it runs in the same single
pass as the rest of the conversion.

One cutoff is shared by all landmarks of a face, driven by the face's overall speed in face
sizes per second. Per-coordinate cutoffs would smooth the slow points more than the fast
ones in the same frame and so bend the face shape during a head turn; a shared cutoff keeps
the landmark set moving as a whole, and measuring speed relative to the face size makes the
settings work for a face of any size in the frame.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from intracoder.faces.landmarks import FaceMesh

if TYPE_CHECKING:
    from intracoder.faces.extract import FaceFinder

# Tuned on rendered portrait clips at 25 fps (tests/test_smoothing.py): on a still head with
# sensor noise the frame-to-frame jitter of the crop drops about 4x; on the rendered camera
# sway (+-20 degrees in 2 s, faster than a talking head) the smoothed landmarks trail the
# raw ones by under 0.5% of the face size. A higher BETA lags less and smooths less.
MIN_CUTOFF_HZ = 1.0
BETA = 20.0
DERIVATIVE_CUTOFF_HZ = 1.0
# A face whose centre moved more than this many face sizes since the last frame is a
# different face (or a cut), not the same one moving: it starts a new track.
MAX_JUMP = 0.5
# A followed face whose face-mesh presence score falls below this is lost (measured: 1.0 on
# faces, under 1e-4 on a blank frame or blurred noise).
MIN_MESH_SCORE = 0.5


def _alpha(cutoff_hz: float, dt: float) -> float:
    """Smoothing factor of a first-order low-pass with this cutoff at time step ``dt``."""
    tau = 1.0 / (2.0 * math.pi * cutoff_hz)
    return 1.0 / (1.0 + tau / dt)


def face_size(landmarks: np.ndarray) -> float:
    """Longest side of the landmarks' bounding box, in pixels: the scale of a face."""
    xy = np.asarray(landmarks)[:, :2]
    return float(max(np.ptp(xy[:, 0]), np.ptp(xy[:, 1]), 1.0))


def face_centre(landmarks: np.ndarray) -> np.ndarray:
    return np.asarray(landmarks, np.float64)[:, :2].mean(axis=0)


class LandmarkFilter:
    """One-Euro filter over one face's landmarks (N x 2 or N x 3, pixels)."""

    def __init__(self, min_cutoff: float = MIN_CUTOFF_HZ, beta: float = BETA,
                 d_cutoff: float = DERIVATIVE_CUTOFF_HZ) -> None:
        self.min_cutoff, self.beta, self.d_cutoff = min_cutoff, beta, d_cutoff
        self._x: np.ndarray | None = None
        self._dx: np.ndarray | None = None
        self._t = 0.0

    def __call__(self, landmarks: np.ndarray, t: float) -> np.ndarray:
        """The smoothed landmarks at time ``t`` (seconds, increasing)."""
        x = np.asarray(landmarks, np.float64)
        if self._x is None or t <= self._t:
            self._x, self._dx, self._t = x.copy(), np.zeros_like(x), t
            return x.copy()
        dt = t - self._t
        a_d = _alpha(self.d_cutoff, dt)
        self._dx = a_d * (x - self._x) / dt + (1.0 - a_d) * self._dx
        speed = math.sqrt(float(np.mean(np.sum(self._dx[:, :2] ** 2, axis=1)))) / face_size(x)
        a = _alpha(self.min_cutoff + self.beta * speed, dt)
        self._x = a * x + (1.0 - a) * self._x
        self._t = t
        return self._x.copy()


class FaceTracks:
    """Follow faces from frame to frame by nearest centre and smooth each one.

    A face that finds no track within MAX_JUMP face sizes starts a new one; a track that
    finds no face in a frame ends, so a face that leaves and comes back starts afresh
    rather than being pulled towards where it was before.
    """

    def __init__(self, fps: float, min_cutoff: float = MIN_CUTOFF_HZ, beta: float = BETA) -> None:
        if fps <= 0:
            raise ValueError(f"fps must be positive, got {fps}")
        self.fps, self.min_cutoff, self.beta = fps, min_cutoff, beta
        self._tracks: list[tuple[np.ndarray, LandmarkFilter]] = []

    def _match(self, faces: list[np.ndarray]) -> list[int | None]:
        """Index of the track each face continues, or None; pairs taken nearest first."""
        pairs = []
        for i, face in enumerate(faces):
            centre, size = face_centre(face), face_size(face)
            for j, (track_centre, _) in enumerate(self._tracks):
                distance = float(np.linalg.norm(centre - track_centre)) / size
                if distance <= MAX_JUMP:
                    pairs.append((distance, i, j))
        owner: list[int | None] = [None] * len(faces)
        taken: set[int] = set()
        for _, i, j in sorted(pairs):
            if owner[i] is None and j not in taken:
                owner[i] = j
                taken.add(j)
        return owner

    def update(self, faces: list[np.ndarray], frame_index: int) -> list[np.ndarray]:
        """Smoothed landmarks of this frame's faces, in the order given."""
        owner = self._match(faces)
        t = frame_index / self.fps
        tracks, out = [], []
        for face, j in zip(faces, owner):
            filt = self._tracks[j][1] if j is not None else LandmarkFilter(self.min_cutoff,
                                                                            self.beta)
            smoothed = filt(face, t)
            tracks.append((face_centre(face), filt))
            out.append(smoothed)
        self._tracks = tracks
        return out


class FaceLocator:
    """Dense landmarks of every face in each frame, largest face first.

    MTCNN costs many face-mesh passes per frame, and most of that is per call, so on video
    it runs on every ``detect_every``-th frame only, all such frames of a chunk in one
    batch; in between each face is followed by the face mesh, started from its previous
    landmarks. While no face is known every frame is a key frame, so a face that appears is
    found on its first frame; a face the mesh loses (it left, or a cut) sends that frame to
    the detector at once. ``tracks`` smooths the result.
    """

    def __init__(self, finder: FaceFinder, detect_every: int = 1,
                 tracks: FaceTracks | None = None):
        self.finder, self.detect_every, self.tracks = finder, max(1, detect_every), tracks
        self._mesh = FaceMesh(refine_passes=1)
        self._previous: list[np.ndarray] = []

    def _follow(self, image: np.ndarray) -> list[np.ndarray] | None:
        found = []
        for previous in self._previous:
            landmarks, score = self._mesh.track(image, previous)
            if score < MIN_MESH_SCORE:
                return None
            found.append(landmarks)
        return found

    def _detect(self, images: list[np.ndarray]) -> list[list[np.ndarray]]:
        return [[face.landmarks for face in faces] for faces in self.finder.find(images)]

    def locate(self, images: list[np.ndarray], first_index: int) -> list[list[np.ndarray]]:
        """Faces of consecutive frames ``first_index``, ``first_index + 1``, ..."""
        keys = [i for i in range(len(images))
                if not self._previous or (first_index + i) % self.detect_every == 0]
        detected = dict(zip(keys, self._detect([images[i] for i in keys]))) if keys else {}
        out = []
        for i, image in enumerate(images):
            faces = detected.get(i)
            if faces is None and self._previous:
                faces = self._follow(image)
            if faces is None:
                faces = self._detect([image])[0]
            faces.sort(key=face_size, reverse=True)
            self._previous = faces
            out.append(self.tracks.update(faces, first_index + i) if self.tracks else faces)
        return out
