"""Shapes of the synthetic occluders (occluders.py): face geometry, drawing helpers, objects
and hands. A ``draw_*`` function takes (rng, FaceGeo, pool) and returns (colour, alpha, roi):
roi is a (rows, cols) slice pair round the occluder with room for blur and shadow, colour the
roi's HxWx3 float32 BGR (0..255), alpha its HxW uint8 (255 = covered). Working in the roi
keeps an occluder under a millisecond; textured kinds fill all of it, so feathering the alpha
has colour to reveal. Shapes are antialiased cv2 drawings at 1/16 px precision.
"""

from __future__ import annotations

import bisect
import dataclasses
import functools
import itertools
from dataclasses import dataclass

import cv2
import numpy as np

SHIFT, ONE, AA = 4, 16, cv2.LINE_AA
# Mean face-mesh positions (fractions of the crop) of 128-px "full" crops, for no landmarks.
_DEFAULT = {"eye_l": (0.333, 0.329), "eye_r": (0.655, 0.329), "mouth": (0.49, 0.656),
            "nose": (0.49, 0.51), "chin": (0.49, 0.89), "side_l": (0.143, 0.423),
            "side_r": (0.845, 0.423), "top": (0.497, 0.044)}
# Face-mesh indices: eye corners (image-left eye, then right), mouth corners, nose tip, chin,
# the sides of the face (left, right), the top of the forehead.
_INDEX = [33, 133, 263, 362, 61, 291, 1, 152, 234, 454, 10]
CERAMIC = ((235, 235, 235), (40, 40, 180), (150, 90, 30), (30, 30, 30), (60, 160, 220))  # BGR


@dataclass(frozen=True)
class FaceGeo:
    """Where the face parts are in the crop (x, y pixels); eye_l is on the image's left."""

    size: int
    eye_l: np.ndarray
    eye_r: np.ndarray
    mouth: np.ndarray
    nose: np.ndarray
    chin: np.ndarray
    side_l: np.ndarray
    side_r: np.ndarray
    top: np.ndarray
    skin: tuple = (120.0, 150.0, 200.0)  # mean BGR of the cheeks of the crop being occluded

    @classmethod
    def from_landmarks(cls, lm: np.ndarray, size: int) -> "FaceGeo":
        p = np.asarray(lm, np.float64)[_INDEX, :2]
        return cls(size, (p[0] + p[1]) / 2, (p[2] + p[3]) / 2, (p[4] + p[5]) / 2, *p[6:])

    @classmethod
    def default(cls, size: int) -> "FaceGeo":
        return cls(size, **{k: np.array(v) * size for k, v in _DEFAULT.items()})

    def with_skin(self, image: np.ndarray) -> "FaceGeo":
        """A copy that knows the face's skin colour, sampled on both cheeks."""
        r = max(2, int(0.12 * self.unit))
        means = [cv2.mean(b)[:3] for b in (image[max(0, int(y) - r):int(y) + r,
                                                 max(0, int(x) - r):int(x) + r]
                                           for x, y in self.cheeks(0.55)) if b.size]
        return dataclasses.replace(self, skin=tuple(np.mean(means, 0))) if means else self

    @functools.cached_property
    def unit(self) -> float:
        """Distance between the eyes: it sizes every occluder (floored against odd points)."""
        return max(float(np.linalg.norm(self.eye_r - self.eye_l)), 0.15 * self.size)

    def cheeks(self, out: float = 0.6) -> tuple[np.ndarray, np.ndarray]:
        return self.side_l * out + self.nose * (1 - out), self.side_r * out + self.nose * (1 - out)

    def point(self, rng: np.random.Generator) -> np.ndarray:
        """A random point on the face: a blend of two face parts plus a little jitter."""
        parts = (self.eye_l, self.eye_r, self.mouth, self.nose, self.chin,
                 self.top * 0.6 + self.nose * 0.4, *self.cheeks())
        i, j = rng.integers(len(parts), size=2)
        t = rng.uniform()
        return parts[i] * t + parts[j] * (1 - t) + rng.normal(0, 0.15 * self.unit, 2)


def region(alpha: np.ndarray) -> tuple[slice, slice]:
    """The occluder's bounding box grown by an eighth of the crop: room for blur and shadow."""
    x, y, w, h = cv2.boundingRect(alpha)
    s, pad = alpha.shape[0], max(4, alpha.shape[0] // 8)
    return (slice(max(0, y - pad), min(s, y + h + pad)),
            slice(max(0, x - pad), min(s, x + w + pad)))


def fix(p) -> np.ndarray:  # points in cv2's fixed point (shift=SHIFT)
    return np.round(np.asarray(p, np.float64) * ONE).astype(np.int32)


def pt(p) -> tuple[int, int]:  # one point, as plain ints: numpy is slow for two numbers
    return int(round(float(p[0]) * ONE)), int(round(float(p[1]) * ONE))


def rot(angle):
    """Unit vector(s) at angle(s) in radians: (2,) for a scalar, (k, 2) for k angles."""
    return np.array([np.cos(angle), np.sin(angle)]).T


@functools.lru_cache(maxsize=16)
def _unit_superellipse(n: float, k: int) -> np.ndarray:
    t = np.linspace(0, 2 * np.pi, k, endpoint=False)
    c, s = np.cos(t), np.sin(t)
    return np.stack([np.sign(c) * np.abs(c) ** (2 / n), np.sign(s) * np.abs(s) ** (2 / n)], 1)


def superellipse(c, a: float, b: float, angle: float, n: float = 2.0) -> np.ndarray:
    """Outline of an ellipse (n=2) that becomes a rounded rectangle as n grows."""
    ca, sa = np.cos(angle), np.sin(angle)
    return _unit_superellipse(float(n), 40) @ np.array([[a * ca, a * sa], [-b * sa, b * ca]]) + c


def choice(rng, p) -> int:
    """An index drawn with odds p (rng.choice with p= spends 15 us on checks per call)."""
    return min(bisect.bisect(list(itertools.accumulate(p)), rng.uniform() * sum(p)), len(p) - 1)


def plane(roi, dx: float, dy: float, c=(0.0, 0.0)) -> np.ndarray:
    """(x - cx) * dx + (y - cy) * dy over the roi, HxW float32 (an outer sum, no grids)."""
    f = np.float32
    ys = (np.arange(roi[0].start, roi[0].stop, dtype=f) - f(c[1])) * f(dy)
    return np.add.outer(ys, (np.arange(roi[1].start, roi[1].stop, dtype=f) - f(c[0])) * f(dx))


def fill(mask: np.ndarray, poly, value=255) -> None:
    cv2.fillPoly(mask, [fix(poly)], value, AA, SHIFT)


def capsule(mask: np.ndarray, p0, p1, r: float, value=255) -> None:
    """A stick with round ends (cv2's thick lines have round caps)."""
    cv2.line(mask, pt(p0), pt(p1), value, max(1, int(round(2 * r))), AA, SHIFT)


def bezier(p: np.ndarray, k: int) -> np.ndarray:
    """Cubic Bezier curves: p is Nx4x2 control points -> Nxkx2 samples."""
    t = np.linspace(0, 1, k)[None, :, None]
    a, b, c, d = (p[:, i, None, :] for i in range(4))
    return (1 - t) ** 3 * a + 3 * (1 - t) ** 2 * t * b + 3 * (1 - t) * t ** 2 * c + t ** 3 * d


def gradient(roi, s: int, rng, lo: float, hi: float) -> np.ndarray:
    """A linear light falloff in a random direction, lo..hi across the crop, HxW."""
    d = rot(rng.uniform(0, 2 * np.pi)) * ((hi - lo) / 1.4 / s)
    return plane(roi, d[0], d[1], (s / 2, s / 2)) + np.float32((lo + hi) / 2)


def cylinder(roi, p0, p1, r: float, rng) -> np.ndarray:
    """Shading of a lit cylinder along p0->p1 (dark rims, a highlight off-centre), HxW."""
    d = np.asarray(p1, np.float64) - p0
    n = np.array([-d[1], d[0]]) / (np.linalg.norm(d) + 1e-6) / max(r, 1.0)
    t = np.clip(plane(roi, n[0], n[1], p0), -1, 1)
    glint = np.exp(-((t - np.float32(rng.uniform(-0.6, 0.6))) * 4) ** 2)
    return 0.45 + 0.6 * np.sqrt(1 - t * t) + glint * np.float32(rng.uniform(0.0, 0.6))


def edge_point(rng, s: int, sides=("bottom", "left", "right"), p=(1, 1, 1)) -> np.ndarray:
    """A point a little outside the crop on one of the sides (where arms and sticks enter)."""
    side = sides[choice(rng, p)]
    u, out = rng.uniform(0.1, 0.9) * s, s * rng.uniform(1.05, 1.3)
    return np.array({"bottom": (u, out), "top": (u, s - out), "left": (s - out, u),
                     "right": (out, u)}[side])


# Colour helpers: a plain colour the shape of alpha, colour x light (HxW), colour x gain (3,),
# a where mask else b. numpy broadcasts over a last axis of 3 slowly (5-10x), so cv2 does it.
def flat(alpha: np.ndarray, bgr) -> np.ndarray:
    return cv2.merge([np.full(alpha.shape, c, np.float32) for c in bgr])


def shade(colour: np.ndarray, factor: np.ndarray) -> np.ndarray:
    return colour * cv2.merge([factor.astype(np.float32)] * 3)


def tint(colour: np.ndarray, gain) -> np.ndarray:
    return cv2.transform(colour, np.diag(np.asarray(gain, np.float32)))


def pick(mask: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    out = b.copy()
    cv2.copyTo(a, (mask > 0).astype(np.uint8), out)
    return out


def draw_hand(rng, geo: FaceGeo, pool):
    """A skin-coloured hand: an arm from the crop edge, a palm, 3-5 fingers over the face."""
    s, u = geo.size, geo.unit
    alpha, crease = np.zeros((s, s), np.uint8), np.zeros((s, s), np.uint8)
    chin = geo.chin * 0.7 + geo.mouth * 0.3  # the chin point itself is on the hull's edge
    target = (geo.mouth, chin, geo.nose, geo.eye_l, geo.eye_r, *geo.cheeks())[
        choice(rng, (0.25, 0.2, 0.1, 0.1, 0.1, 0.125, 0.125))] + rng.normal(0, 0.2 * u, 2)
    arm = edge_point(rng, s, ("bottom", "left", "right", "top"), p=(0.5, 0.2, 0.2, 0.1))
    d = (target - arm) / (np.linalg.norm(target - arm) + 1e-6)
    ang = np.arctan2(d[1], d[0])
    pw, ph = u * rng.uniform(0.42, 0.55), u * rng.uniform(0.45, 0.6)  # palm half width, length
    finger = ph * rng.uniform(1.4, 1.8)  # the middle finger: about as long as the palm
    palm = target - d * (ph + finger) * rng.uniform(0.35, 0.85)  # fingertips pass the target
    capsule(alpha, palm, arm, pw * rng.uniform(0.55, 0.75))  # wrist and forearm
    fill(alpha, superellipse(palm, ph, pw, ang, 2.6))
    k, fan, side = int(rng.integers(3, 6)), rng.uniform(0.0, 0.25), rng.choice((-1, 1))
    r, across = min(0.63 / (k - 1), 0.28) * pw, rot(ang + np.pi / 2)
    curl = rng.uniform(-0.9, 0.9) * (rng.uniform() < 0.3)  # sometimes they bend together
    t = np.linspace(-1, 1, k)
    length = finger * (1 - 0.15 * np.abs(t) - 0.15 * (t * side > 0.5))  # little finger: shortest
    base = palm + d * ph * 0.75 + np.outer(t * pw * 0.7, across)
    mid = base + rot(ang + t * fan) * length[:, None] * 0.55
    bone = np.stack([base, mid, mid + rot(ang + t * fan + curl) * length[:, None] * 0.45], 1)
    cv2.polylines(alpha, list(fix(bone)), False, 255, max(1, int(round(2 * r))), AA, SHIFT)
    between = bone + rot(ang + t * fan + np.pi / 2)[:, None] * r  # where two fingers meet
    cv2.polylines(crease, list(fix(between[:-1])), False, 255, 1, AA, SHIFT)
    if rng.uniform() < 0.7:  # thumb, opposite the little finger, shorter and thicker
        base = palm - across * side * pw * 0.75 - d * ph * 0.2
        capsule(alpha, base, base + rot(ang - side * rng.uniform(0.4, 1.0)) * finger * 0.7, r * 1.2)
    roi = region(alpha)
    skin = pool.skin(rng, s, roi)
    # Another face's skin moved most of the way to this face's tone: the hard case, since a
    # person's own hand is lit like their face and about as coloured.
    ratio = np.asarray(geo.skin) / np.maximum(cv2.mean(skin)[:3], 1.0)
    skin = tint(skin, ratio ** rng.uniform(0.7, 1.0) * rng.uniform(0.95, 1.05, 3)
                * rng.uniform(0.9, 1.1))
    # Soft darkening along the outline and between the fingers: the edge shows, faintly.
    k = int(max(3, u * 0.15)) | 1  # a box blur: the cheapest soft falloff inside the outline
    inner = cv2.blur(alpha[roi], (k, k)).astype(np.float32) * np.float32(2 / 255)
    rim = 0.85 + 0.15 * np.clip(inner - 1, 0, 1) - crease[roi] * np.float32(0.15 / 255)
    return shade(skin, rim * gradient(roi, s, rng, 0.85, 1.15)), alpha[roi], roi
