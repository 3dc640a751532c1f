"""Synthetic occluders pasted on training crops: the self-taught target of the learned mask.

``occlude`` pastes 1..max_count occluders on an aligned crop and returns the occluded image
and the occluder alpha (HxW float32, 1 = covered). The mask's target is the face hull minus
the occluders, where alpha below 0.5 counts as visible face: a glasses frame is occluder, its
lenses (a faint tint, alpha <= 0.2) are face. Each kind (odds ``KIND_P``) may be blurred,
feathered, see-through, and cast a shadow beside it (the image darkens; alpha stays 0).
``OccluderPool`` cuts textures from the crops and the sample images of skimage and matplotlib.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import cv2
import numpy as np

# RESERVED is re-exported: the held-out images are part of what this module promises.
from intracoder.data.occluder_library import RESERVED, library_images  # noqa: F401
from intracoder.data.occluder_objects import draw_object
from intracoder.data.occluder_shapes import (AA, SHIFT, FaceGeo, bezier, capsule, choice,
                                             cylinder, draw_hand, fill, fix, flat,
                                             gradient, pick, plane, pt, region, rot, shade,
                                             superellipse, tint)

KINDS = ("object", "hand", "hair", "glasses", "bar")
KIND_P = (0.30, 0.25, 0.15, 0.10, 0.20)
_SHADOW_P = {"object": 0.35, "hand": 0.35, "hair": 0.25, "glasses": 0.2, "bar": 0.3}
# BGR: black, dark brown, brown, auburn, blonde, grey hair; silver, gold, gunmetal frames.
HAIR = np.array([(18, 18, 22), (25, 35, 50), (40, 65, 95), (35, 60, 120), (100, 160, 200),
                 (150, 150, 155)], np.float32)
METAL = ((190, 190, 195), (60, 150, 200), (120, 120, 125))
TORTOISE = np.array([30, 75, 135], np.float32)


def _best_box(img: np.ndarray, ok: np.ndarray, cost: np.ndarray, size: int):
    """The box (a fifth of the crop) of least mean cost of those all but inside ok, resized
    to size x size; None when none fits. Box means come from integral images."""
    n = max(6, img.shape[0] // 5)
    means = [(i[n:, n:] - i[:-n, n:] - i[n:, :-n] + i[:-n, :-n]) / n ** 2
             for i in (cv2.integral(ok.astype(np.uint8)), cv2.integral(cost.astype(np.float64)))]
    score = np.where(means[0] > 0.97, means[1], np.inf)
    y, x = np.unravel_index(np.argmin(score), score.shape)
    return (cv2.resize(img[y:y + n, x:x + n], (size, size), interpolation=cv2.INTER_CUBIC)
            if np.isfinite(score[y, x]) else None)


def _skin(img: np.ndarray, mask: np.ndarray, rng, size: int) -> np.ndarray | None:
    """A smooth patch of typical skin colour inside the eroded hull (a cheek or the forehead)."""
    k = max(3, img.shape[0] // 8) | 1
    inside = cv2.erode(mask, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k))) > 128
    if inside.sum() < 4 * k * k:
        return None
    lab = cv2.cvtColor(img, cv2.COLOR_BGR2LAB).astype(np.float32)
    # Cost: edges (wrinkles, brows, eyes, glasses) plus distance from the median face colour.
    cost = np.abs(cv2.Laplacian(cv2.GaussianBlur(lab[..., 0], (0, 0), 1.0), cv2.CV_32F))
    cost += 0.5 * np.abs(lab - np.median(lab[inside], 0)).sum(2)
    patch = _best_box(img, inside, cost, size)
    grain = rng.normal(0, 1.5, (size, size, 1))  # pores and sensor noise the upscale lost
    return None if patch is None else np.clip(patch + grain, 0, 255).astype(np.uint8)


@dataclass
class OccluderPool:
    """Textures and skin patches occluders are cut from."""

    textures: np.ndarray  # N x size x size x 3 uint8
    skins: np.ndarray  # M x size x size x 3 uint8
    names: list[str]  # each texture's source: "skimage:brick", "crop:3", ...

    @classmethod
    def build(cls, images: Sequence[np.ndarray], masks: Sequence[np.ndarray],
              rng: np.random.Generator, size: int = 128) -> "OccluderPool":
        textures, names = [], []
        for name, img in library_images():  # two random squares of a third to all of each
            for _ in range(2):
                side = int(min(img.shape[:2]) * rng.uniform(0.33, 1.0))
                y, x = (rng.integers(0, n - side + 1) for n in img.shape[:2])
                textures.append(cv2.resize(img[y:y + side, x:x + side], (size, size),
                                           interpolation=cv2.INTER_AREA))
                names.append(name)
        order = rng.permutation(len(images))
        for i in order[:16]:  # backgrounds: a random box clear of the face hull
            outside = cv2.dilate(masks[i], np.ones((5, 5), np.uint8)) < 128
            patch = _best_box(images[i], outside, rng.uniform(size=outside.shape), size)
            if patch is not None:
                textures.append(patch)
                names.append(f"crop:{i}")
        skins = [p for p in (_skin(images[i], masks[i], rng, size) for i in order[:24])
                 if p is not None]
        skins = skins or [np.full((size, size, 3), (120, 150, 200), np.uint8)]  # no usable face
        return cls(np.stack(textures), np.stack(skins), names)

    def texture(self, rng, size: int, roi=(slice(None), slice(None))) -> np.ndarray:
        """A random texture, turned, flipped and tinted at random: float32, cut to roi."""
        t = np.rot90(self.textures[rng.integers(len(self.textures))], rng.integers(4))
        return tint(_flip_cut(t, rng, size, roi), rng.uniform(0.7, 1.3, 3))

    def skin(self, rng, size: int, roi=(slice(None), slice(None))) -> np.ndarray:
        """A random skin patch (some face's cheek or forehead): float32, cut to roi."""
        return _flip_cut(self.skins[rng.integers(len(self.skins))], rng, size, roi)


def _flip_cut(t: np.ndarray, rng, size: int, roi) -> np.ndarray:  # float32, cut to roi
    t = t[:, ::-1] if rng.uniform() < 0.5 else t
    t = t if t.shape[0] == size else cv2.resize(np.ascontiguousarray(t), (size, size))
    return t[roi].astype(np.float32)


def draw_hair(rng, geo: FaceGeo, pool):
    """A bunch of thin strands: a fringe over the forehead or a lock down a cheek."""
    s, u, n = geo.size, geo.unit, int(rng.integers(25, 70))
    spread = np.sort(rng.uniform(-1, 1, n))  # strands side by side across the bunch
    y0 = geo.top[1] + rng.normal(0, 0.05 * u, n)
    if rng.uniform() < 0.55:  # fringe: from the hairline down towards the brows
        x0 = geo.top[0] + rng.uniform(-0.6, 0.6) * u + spread * rng.uniform(0.4, 0.8) * u
        start = np.stack([x0, y0 + rng.uniform(-0.3, 0.1) * u], 1)
        move = (rng.uniform(-0.8, 0.8) * u, (geo.eye_l[1] + geo.eye_r[1]) / 2 - geo.top[1])
    else:  # lock: from the temple down across the cheek
        side, eye = (geo.side_l, geo.eye_l) if rng.uniform() < 0.5 else (geo.side_r, geo.eye_r)
        x0 = side[0] * 0.6 + eye[0] * 0.4 + spread * rng.uniform(0.15, 0.35) * u
        start = np.stack([x0, y0 + rng.uniform(0, 0.5) * u], 1)
        move = (geo.nose[0] - side[0]) * rng.uniform(0.0, 0.4), geo.mouth[1] - geo.top[1]
    move = np.array(move) * (1, rng.uniform(0.7, 1.1))
    # One flow for the bunch; each strand varies a little in length, spread and curl.
    end = (start + move * rng.uniform(0.7, 1.1, (n, 1)) + rng.normal(0, 0.05 * u, (n, 2))
           + np.outer(spread * rng.uniform(0, 0.3) * u, (1, 0)))
    bulge = np.array([rng.uniform(-0.4, 0.4) * u, 0]) + rng.normal(0, 0.04 * u, (n, 2))
    curves = fix(bezier(np.stack([start, start * 0.67 + end * 0.33 + bulge,
                                  start * 0.33 + end * 0.67 + bulge, end], 1), 8))
    base = HAIR[rng.integers(len(HAIR))] * rng.uniform(0.85, 1.15)
    groups = [np.zeros((s, s), np.uint8) for _ in range(3)]  # each its own shade and opacity
    for g, part in zip(groups, np.array_split(np.arange(n), 3)):
        cv2.polylines(g, list(curves[part]), False, int(255 * rng.uniform(0.6, 1.0)),
                      2 if rng.uniform() < 0.2 else 1, AA, SHIFT)
    tints = np.clip(base * rng.uniform(0.75, 1.3, (3, 1)), 0, 255).astype(np.float32)
    roi = region(alpha := np.maximum(np.maximum(groups[0], groups[1]), groups[2]))
    w = [g[roi].astype(np.float32) for g in groups]
    total = np.maximum(w[0] + w[1] + w[2], 1)
    colour = cv2.merge([(w[0] * a + w[1] * b + w[2] * c) / total for a, b, c in tints.T])
    return colour, alpha[roi], roi


def draw_glasses(rng, geo: FaceGeo, pool):
    """A glasses frame: rims round the eyes, a bridge, temples towards the ears. The lenses
    are at most a faint tint (alpha <= 0.2), which counts as visible face."""
    s, u = geo.size, geo.unit
    ang = np.arctan2(*(geo.eye_r - geo.eye_l)[::-1])
    ax, centre, n = rot(ang), (geo.eye_l + geo.eye_r) / 2, (2.0, 3.0, 5.0)[rng.integers(3)]
    a, b, thick = u * rng.uniform(0.36, 0.46), u * rng.uniform(0.22, 0.34), int(rng.integers(1, 5))
    lift = rot(ang + np.pi / 2) * rng.uniform(-0.08, 0.05) * u
    rims = [superellipse(e + lift + ax * sgn * 0.04 * u, a, b, ang, n)
            for e, sgn in ((geo.eye_l, -1), (geo.eye_r, 1))]
    alpha, lens = np.zeros((2, s, s), np.uint8)
    cv2.polylines(alpha, [fix(r) for r in rims], True, 255, thick, AA, SHIFT)
    inner = [r[np.argmin((r - centre) @ ax * sgn)] for r, sgn in zip(rims, (-1, 1))]
    up = -rot(ang + np.pi / 2) * b * rng.uniform(0.1, 0.4)
    mid = (inner[0] + inner[1]) / 2 + up * 1.5
    bridge = fix(bezier(np.array([[inner[0] + up, mid, mid, inner[1] + up]]), 8))
    cv2.polylines(alpha, list(bridge), False, 255, max(1, thick - int(rng.integers(2))), AA, SHIFT)
    for r, side, sgn in zip(rims, (geo.side_l, geo.side_r), (-1, 1)):  # temples, to the ears
        outer = r[np.argmax((r - centre) @ ax * sgn)]
        far = (side[0] + sgn * 0.2 * u, outer[1] + rng.uniform(-0.1, 0.15) * u)
        cv2.line(alpha, pt(outer), pt(far), 255, thick, AA, SHIFT)
    for r in rims if rng.uniform() < 0.35 else ():  # tinted lenses: faint, the eyes stay face
        fill(lens, r, int(rng.uniform(0.05, 0.2) * 255))
    roi = region(frame := np.maximum(alpha, lens))
    style = rng.integers(3)  # black plastic; silver or gold metal with a glint; tortoiseshell
    if style == 0:
        colour = flat(alpha[roi], rng.uniform(10, 40, 3))
    elif style == 1:
        colour = shade(flat(alpha[roi], METAL[rng.integers(3)]), gradient(roi, s, rng, 0.6, 1.3))
    else:
        mottle = pool.texture(rng, s, roi)[..., 1] * np.float32(1 / 255)
        colour = shade(flat(alpha[roi], TORTOISE), mottle) + flat(alpha[roi], TORTOISE / 3)
    glass = flat(alpha[roi], rng.uniform(20, 90, 3))
    return pick(alpha[roi] >= lens[roi], colour, glass), frame[roi], roi


def draw_bar(rng, geo: FaceGeo, pool):
    """Stripes and bars: a pen or straw, a scarf edge over the chin, or a flat shape."""
    s, u, alpha = geo.size, geo.unit, np.zeros((geo.size, geo.size), np.uint8)
    sub = choice(rng, (0.45, 0.3, 0.25))
    if sub == 0:  # pen or straw across the face
        c, ang = geo.point(rng), rng.uniform(0, np.pi)
        half, r = u * rng.uniform(0.6, 2.0), u * rng.uniform(0.06, 0.18)
        p0, p1 = c - rot(ang) * half, c + rot(ang) * half
        capsule(alpha, p0, p1, r)
        roi = region(alpha)
        colour = flat(alpha[roi], rng.uniform(0, 255, 3))
        if rng.uniform() < 0.3:  # a striped straw
            d = rot(ang + 0.8) * rng.uniform(0.5, 1.0)
            colour = pick(np.sin(plane(roi, *d)) > 0, colour, flat(alpha[roi], (230, 230, 230)))
        colour = shade(colour, cylinder(roi, p0, p1, r, rng))
    elif sub == 1:  # scarf or collar edge: a wavy line from the lips to the chin, filled below
        y0 = geo.mouth[1] + (geo.chin[1] - geo.mouth[1]) * rng.uniform(-0.2, 0.8)
        xs = np.linspace(-0.1 * s, 1.1 * s, 24)
        ys = (y0 + np.sin(xs / s * rng.uniform(3, 9) + rng.uniform(0, 6)) * u * 0.12
              + (xs - s / 2) * rng.uniform(-0.25, 0.25))
        below = [[1.1 * s, 1.2 * s], [-0.1 * s, 1.2 * s]]
        fill(alpha, np.concatenate([np.stack([xs, ys], 1), below]))
        roi = region(alpha)
        folds = np.sin(plane(roi, rng.uniform(0.1, 0.4), 0) + np.float32(rng.uniform(0, 6)))
        colour = shade(pool.texture(rng, s, roi), 0.8 + 0.2 * folds)
    else:  # a procedural flat shape: a star or a polygon
        c, r, k = geo.point(rng), u * rng.uniform(0.3, 0.9), rng.integers(5, 12)
        t = np.linspace(0, 2 * np.pi, k, endpoint=False) + rng.uniform(0, 6)
        star = np.where(np.arange(k) % 2, rng.uniform(0.4, 1.0), 1.0)  # inner points (or not)
        fill(alpha, c + rot(t) * (r * star)[:, None])
        roi = region(alpha)
        colour = shade(flat(alpha[roi], rng.uniform(0, 255, 3)), gradient(roi, s, rng, 0.8, 1.1))
    return colour, alpha[roi], roi


DRAW = dict(object=draw_object, hand=draw_hand, hair=draw_hair, glasses=draw_glasses, bar=draw_bar)


def _blur(x: np.ndarray, sigma: float) -> np.ndarray:
    k = 2 * int(np.ceil(2.5 * sigma)) + 1  # +-2.5 sigma: cv2's +-4 costs more, shows nothing
    return cv2.GaussianBlur(x, (k, k), sigma)


def _effects(kind: str, colour: np.ndarray, alpha: np.ndarray, rng):
    """Feather, blur and fade one occluder: -> (premultiplied colour, alpha), float32."""
    if kind in ("object", "hand", "bar") and rng.uniform() < 0.7:  # soft edge, 0-3 px
        alpha = _blur(alpha, rng.uniform(0.3, 1.2))
    a = alpha.astype(np.float32) * np.float32(1 / 255)
    premult, r = colour * cv2.merge([a, a, a]), rng.uniform()
    if r < 0.25:  # out of focus
        sigma = rng.uniform(0.6, 2.0)
        premult, a = _blur(premult, sigma), _blur(a, sigma)
    elif r < 0.35:  # motion blur along a random direction
        k, d = int(rng.integers(3, 8)), rot(rng.uniform(0, np.pi))
        kernel, c = np.zeros((k, k), np.float32), (k - 1) / 2
        cv2.line(kernel, pt(c - d * c), pt(c + d * c), 1.0, 1, AA, SHIFT)
        premult, a = (cv2.filter2D(x, -1, kernel / kernel.sum()) for x in (premult, a))
    if kind in ("object", "bar") and rng.uniform() < 0.12:  # glass, thin plastic: see-through
        f = np.float32(rng.uniform(0.6, 0.9))  # but still mostly covering (alpha >= 0.5)
        premult, a = premult * f, a * f
    return premult, a


def _shadow(alpha: np.ndarray, rng, unit: float) -> np.ndarray:
    """How much the occluder darkens the face beside it: its alpha shifted and blurred."""
    d = rot(rng.uniform(0, 2 * np.pi)) * unit * rng.uniform(0.05, 0.12)
    moved = cv2.warpAffine(alpha, np.float32([[1, 0, d[0]], [0, 1, d[1]]]), alpha.shape[::-1])
    return _blur(moved, unit * rng.uniform(0.03, 0.07)) * np.float32(rng.uniform(0.2, 0.5))


def occlude(image: np.ndarray, rng: np.random.Generator, pool: OccluderPool,
            landmarks: np.ndarray | None = None, max_count: int = 3,
            kinds: Sequence[str] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(occluded image HxWx3 uint8, occluder alpha HxW float32 in [0, 1], 1 = fully covered).

    Pastes 1..max_count occluders (odds as k^-1.5: mostly one). ``landmarks`` (468x2 mesh
    points in crop pixels) put glasses on the eyes and hands, cups and microphones by the
    mouth and cheeks; without them the typical aligned-crop positions are used. ``kinds``
    limits the kinds (e.g. ``("hand",)``); by default all ``KINDS`` with odds ``KIND_P``.
    Alpha below 0.5 counts as visible face (lens tints, blurred fringes)."""
    if unknown := set(kinds or ()) - set(KINDS):
        raise ValueError(f"unknown occluder kinds {sorted(unknown)}; choose from {KINDS}")
    size = image.shape[0]
    geo = FaceGeo.default(size) if landmarks is None else FaceGeo.from_landmarks(landmarks, size)
    geo, allowed = geo.with_skin(image), list(kinds or KINDS)
    out, keep = image.astype(np.float32), np.ones(image.shape[:2], np.float32)
    for _ in range(1 + choice(rng, [k ** -1.5 for k in range(1, max_count + 1)])):
        kind = allowed[choice(rng, [KIND_P[KINDS.index(k)] for k in allowed])]
        if kind == "glasses" and len(allowed) > 1:
            allowed.remove("glasses")  # one pair of glasses per face
        colour, alpha, roi = DRAW[kind](rng, geo, pool)
        premult, a = _effects(kind, colour, alpha, rng)
        if rng.uniform() < _SHADOW_P[kind]:
            out[roi] *= cv2.merge([1 - _shadow(a, rng, geo.unit)] * 3)
        out[roi] = out[roi] * cv2.merge([1 - a] * 3) + premult
        keep[roi] *= 1 - a
    return np.clip(out, 0, 255).astype(np.uint8), np.clip(1 - keep, 0, 1)
