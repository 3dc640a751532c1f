"""Augmentation of one training face, DeepFaceLab style.

The model learns to undo a random warp: the input is warped, the target is not. Everything
else (affine, flip, colour) is shared by input and target, so the network is never asked
to predict where the camera moved or how the light changed, only the face itself. The
colour jitter is applied once to the source crop before any geometry: colour and geometry
commute up to interpolation, and it halves the cost of the most expensive step.

One colour change is the exception and touches the input only: ``random_hsv_power``
(DeepFaceLab's ``random_hsv_shift_amount``) shifts hue, saturation and value of the warped
input a little, so the model learns to look through small colour changes of what it is
shown while still being asked for the exact colours of the target.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Protocol

import albumentations as A
import cv2
import numpy as np

# MediaPipe face-mesh contours (FACEMESH_RIGHT_EYE, FACEMESH_LEFT_EYE, outer FACEMESH_LIPS).
RIGHT_EYE = (33, 7, 163, 144, 145, 153, 154, 155, 133, 173, 157, 158, 159, 160, 161, 246)
LEFT_EYE = (263, 249, 390, 373, 374, 380, 381, 382, 362, 398, 384, 385, 386, 387, 388, 466)
LIPS = (61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291, 409, 270, 269, 267, 0, 37, 39,
        40, 185)
PRIORITY_REGIONS = (RIGHT_EYE, LEFT_EYE, LIPS)


class AugmentSettings(Protocol):
    """The augmentation ranges; TrainConfig provides them."""

    rotation: float  # +- degrees
    scale: float  # +- fraction
    shift: float  # +- fraction of the size
    random_warp: bool
    warp_std: float  # control-point spread in grid cells
    flip: float  # probability
    brightness: float
    contrast: float
    saturation: float
    hue: float
    random_hsv_power: float  # input-only HSV shift, 0 = off; read with getattr (default 0)


@dataclass
class Draw:
    """One sample's random choices; replaying a Draw gives the same sample."""

    matrix: np.ndarray  # 2x3 affine, crop -> augmented, shared by input and target
    warp: np.ndarray | None  # size x size x 2 float32 sampling map of the input
    colour_seed: int
    angle: float
    scale: float
    shift: tuple[float, float]  # pixels
    flipped: bool


def random_affine(rng: np.random.Generator, size: int,
                  s: AugmentSettings) -> tuple[np.ndarray, float, float, tuple[float, float], bool]:
    angle = float(rng.uniform(-s.rotation, s.rotation))
    scale = float(1.0 + rng.uniform(-s.scale, s.scale))
    tx, ty = (float(v) for v in rng.uniform(-s.shift, s.shift, 2) * size)
    flipped = bool(rng.random() < s.flip)
    centre = (size - 1) / 2.0
    m = cv2.getRotationMatrix2D((centre, centre), angle, scale)
    m[:, 2] += (tx, ty)
    if flipped:
        mirror = np.array([[-1.0, 0.0, size - 1.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
        m = (mirror @ np.vstack([m, [0.0, 0.0, 1.0]]))[:2]
    return m, angle, scale, (tx, ty), flipped


def random_warp_map(rng: np.random.Generator, size: int, std: float) -> np.ndarray:
    """DFL's random warp (core/imagelib/warp.py): a coarse grid of control points with cell
    size w/2, w/4 or w/8, interior points moved by N(0, std*cell), upsized to a dense
    sampling map. The half-cell margin keeps the border of the map smooth after resizing;
    the -0.5 makes a zero-spread map the exact identity."""
    cell = size // int(2 ** rng.integers(1, 4))
    n = size // cell + 1
    grid = np.linspace(0.0, size, n)
    mapx = np.broadcast_to(grid, (n, n)).copy()
    mapy = mapx.T.copy()
    mapx[1:-1, 1:-1] += rng.normal(0.0, std * cell, (n - 2, n - 2))
    mapy[1:-1, 1:-1] += rng.normal(0.0, std * cell, (n - 2, n - 2))
    half = cell // 2
    big = (size + cell, size + cell)
    mapx = cv2.resize(mapx, big)[half:half + size, half:half + size] - 0.5
    mapy = cv2.resize(mapy, big)[half:half + size, half:half + size] - 0.5
    return np.dstack([mapx, mapy]).astype(np.float32)


def draw(rng: np.random.Generator, size: int, s: AugmentSettings) -> Draw:
    matrix, angle, scale, shift, flipped = random_affine(rng, size, s)
    warp = random_warp_map(rng, size, s.warp_std) if s.random_warp else None
    return Draw(matrix=matrix, warp=warp, colour_seed=int(rng.integers(2**31)),
                angle=angle, scale=scale, shift=shift, flipped=flipped)


_HSV_STREAM = 1  # sub-seed of the input-only HSV shift under a sample's colour seed

_local = threading.local()  # albumentations transforms carry their own RNG: one per thread


def colour_jitter(image: np.ndarray, seed: int, s: AugmentSettings) -> np.ndarray:
    """Albumentations' ColorJitter with the configured ranges, replayable from ``seed``."""
    key = (s.brightness, s.contrast, s.saturation, s.hue)
    if not any(key):
        return image
    if getattr(_local, "key", None) != key:
        _local.jitter = A.ColorJitter(brightness=s.brightness, contrast=s.contrast,
                                      saturation=s.saturation, hue=s.hue, p=1.0)
        _local.key = key
    _local.jitter.set_random_seed(seed)
    return _local.jitter(image=image)["image"]


def hsv_shift(image: np.ndarray, hue: float, saturation: float, value: float) -> np.ndarray:
    """``image`` (uint8 HxWx3 RGB) with its hue turned by ``hue`` (a fraction of the hue
    circle; +1/3 takes red to green) and its HSV ``saturation`` and ``value`` (in [0, 1])
    moved by the given amounts and clipped. Computed in float32 HSV, so a zero shift returns
    the same bytes."""
    hsv = cv2.cvtColor(image.astype(np.float32) * np.float32(1 / 255), cv2.COLOR_RGB2HSV)
    h, s, v = cv2.split(hsv)  # h in degrees [0, 360), s and v in [0, 1]
    h = cv2.add(h, 360.0 * hue)
    h -= 360.0 * np.floor(h / 360.0)
    s = np.clip(s + np.float32(saturation), 0.0, 1.0)
    v = np.clip(v + np.float32(value), 0.0, 1.0)
    rgb = cv2.cvtColor(cv2.merge([h, s, v]), cv2.COLOR_HSV2RGB)
    np.clip(rgb, 0.0, 1.0, out=rgb)
    return cv2.convertScaleAbs(rgb, alpha=255.0)  # round and saturate (no negatives left)


def random_hsv_shift(image: np.ndarray, rng: np.random.Generator, power: float) -> np.ndarray:
    """DeepFaceLab's random HSV shift (samplelib/SampleProcessor.py,
    ``random_hsv_shift_amount``): hue turned by up to +-power/2 of the circle, saturation
    and value each moved by up to +-power/2, all uniform. DFL draws the hue in whole degrees
    (at least +-1); here it is continuous. ``power`` 0 returns ``image`` itself."""
    if power <= 0:
        return image
    hue, sat, val = rng.uniform(-0.5 * power, 0.5 * power, 3)
    return hsv_shift(image, float(hue), float(sat), float(val))


def priority_hulls(landmarks: np.ndarray) -> list[np.ndarray]:
    """Convex hulls (k x 2 float32) of both eyes and the mouth from 468 crop-pixel
    landmarks. Hull order survives any affine, so it is computed once per face."""
    return [cv2.convexHull(landmarks[list(region)].astype(np.float32)).reshape(-1, 2)
            for region in PRIORITY_REGIONS]


def priority_mask(hulls: list[np.ndarray], matrix: np.ndarray, size: int) -> np.ndarray:
    """Eyes and mouth filled (255), moved by ``matrix`` and grown by size/32 pixels: the
    hull of the eye contour hugs the lid, and the lashes around it matter as much."""
    out = np.zeros((size, size), np.uint8)
    grow = max(1, size // 32)
    for hull in hulls:
        pts = hull @ matrix[:, :2].T + matrix[:, 2]
        fixed = np.round(pts * 4).astype(np.int32)  # 2 fractional bits (shift=2)
        cv2.fillConvexPoly(out, fixed, 255, lineType=cv2.LINE_8, shift=2)
        cv2.polylines(out, [fixed], True, 255, thickness=2 * grow, lineType=cv2.LINE_8, shift=2)
    return out


def apply(image: np.ndarray, mask: np.ndarray, d: Draw, s: AugmentSettings,
          hulls: list[np.ndarray] | None = None
          ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
    """(warped input, target, target mask, priority mask or None), all uint8 and the size
    of ``image``. ``hulls`` (from priority_hulls) asks for the priority mask. A positive
    ``random_hsv_power`` in ``s`` shifts the colours of the warped input alone."""
    size = image.shape[0]
    image = colour_jitter(image, d.colour_seed, s)
    target = cv2.warpAffine(image, d.matrix, (size, size), flags=cv2.INTER_LINEAR,
                            borderMode=cv2.BORDER_REPLICATE)
    if d.warp is None:
        warped = target
    else:
        # Warp then affine in one resampling: move the sampling map by the affine, then
        # remap the crop through it, so the input is as sharp as the target.
        maps = cv2.warpAffine(d.warp, d.matrix, (size, size), flags=cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_REPLICATE)
        warped = cv2.remap(image, maps, None, cv2.INTER_LINEAR,
                           borderMode=cv2.BORDER_REPLICATE)
    target_mask = cv2.warpAffine(mask, d.matrix, (size, size), flags=cv2.INTER_LINEAR,
                                 borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    power = float(getattr(s, "random_hsv_power", 0.0) or 0.0)
    if power > 0:
        # Input only, and from a stream of its own (seeded by the sample's colour seed), so
        # switching it on changes no other random choice: the target stays byte for byte.
        warped = random_hsv_shift(warped, np.random.default_rng([d.colour_seed, _HSV_STREAM]),
                                  power)
    prio = priority_mask(hulls, d.matrix, size) if hulls is not None else None
    return warped, target, target_mask, prio


def augment(image: np.ndarray, mask: np.ndarray, rng: np.random.Generator,
            s: AugmentSettings, hulls: list[np.ndarray] | None = None
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
    """One random training sample from one crop; see ``apply``."""
    return apply(image, mask, draw(rng, image.shape[0], s), s, hulls)
