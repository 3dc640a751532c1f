"""Held and passing objects as occluders: textured blobs, cups, phones, microphones."""

from __future__ import annotations

import cv2
import numpy as np

from intracoder.data.occluder_shapes import (AA, CERAMIC, ONE, SHIFT, FaceGeo, capsule, choice,
                                             cylinder, edge_point, fill, flat, gradient, pick,
                                             plane, pt, region, rot, shade, superellipse)


def _blob(rng, geo: FaceGeo, alpha: np.ndarray, r: float) -> None:
    """A random polygon, ellipse, rounded rectangle or capsule somewhere over the face."""
    c, ang, shape = geo.point(rng), rng.uniform(0, np.pi), rng.integers(4)
    if shape == 0:
        k = rng.integers(3, 9)
        t = np.sort(rng.uniform(0, 2 * np.pi, k))
        fill(alpha, c + rot(t) * (r * rng.uniform(0.5, 1.2, k))[:, None])
    elif shape == 3:
        capsule(alpha, c - r * rot(ang), c + r * rot(ang), r * rng.uniform(0.25, 0.5))
    else:
        fill(alpha, superellipse(c, r, r * rng.uniform(0.4, 1), ang, 2.0 if shape == 1 else 5.0))


def _cup_mouth(colour: np.ndarray, roi, top, w: float, ang: float, rng) -> np.ndarray:
    """A cup's opening: a light rim (glaze is pale whatever the outside) around a darker
    drink or inner wall, so a white rim next to pale skin is learnt as part of the cup."""
    h, wd = colour.shape[:2]
    ring, inner = np.zeros((h, wd), np.uint8), np.zeros((h, wd), np.uint8)
    c = top - np.array([roi[1].start, roi[0].start])
    ry = rng.uniform(0.2, 0.35)
    cv2.ellipse(ring, pt(c), pt((w, w * ry)), np.degrees(ang), 0, 360, 255, -1, AA, SHIFT)
    k = rng.uniform(0.8, 0.9)
    cv2.ellipse(inner, pt(c), pt((w * k, w * ry * k)), np.degrees(ang), 0, 360, 255, -1, AA, SHIFT)
    rim = rng.uniform(200, 250) * np.float32([1, rng.uniform(0.95, 1), rng.uniform(0.92, 1)])
    drink = rng.uniform(10, 90) * np.float32([0.5, 0.8, 1.2]) if rng.uniform() < 0.7 \
        else rim * rng.uniform(0.6, 0.85)
    out = colour.astype(np.float32)
    for mask, value in ((ring, rim), (inner, drink)):
        a = (mask.astype(np.float32) / 255.0)[..., None]
        out = out * (1 - a) + value * a
    return out


def draw_object(rng, geo: FaceGeo, pool):
    """A held or passing object: a textured blob, a cup, a phone or a microphone."""
    s, u = geo.size, geo.unit
    alpha = np.zeros((s, s), np.uint8)
    sub = choice(rng, (0.4, 0.2, 0.2, 0.2))
    if sub == 0:
        _blob(rng, geo, alpha, u * rng.uniform(0.35, 0.9))
        roi = region(alpha)
        return shade(pool.texture(rng, s, roi), gradient(roi, s, rng, 0.6, 1.2)), alpha[roi], roi
    if sub == 1:  # cup: a tapered body rising from the bottom edge to around the mouth
        top = geo.mouth + np.array([rng.uniform(-0.8, 0.8), rng.uniform(-0.6, 0.5)]) * u
        w, ang = u * rng.uniform(0.45, 0.6), rng.uniform(-0.3, 0.3)
        ax, ay = rot(ang), rot(ang + np.pi / 2)
        bottom = top + ay * s
        fill(alpha, [top - ax * w, top + ax * w, bottom + ax * w * 0.8, bottom - ax * w * 0.8])
        cv2.ellipse(alpha, pt(top), pt((w, w * 0.25)), np.degrees(ang), 0, 360, 255, -1, AA, SHIFT)
        handle = top + ax * (1 if rng.uniform() < 0.5 else -1) * w * 1.05 + ay * w * 0.9
        cv2.ellipse(alpha, pt(handle), pt((w * 0.45, w * 0.6)), np.degrees(ang), 0, 360, 255,
                    max(2, int(w * 0.18)), AA, SHIFT)
        roi = region(alpha)
        colour = (pool.texture(rng, s, roi) if rng.uniform() < 0.5  # printed, or plain ceramic
                  else flat(alpha[roi], CERAMIC[rng.integers(len(CERAMIC))]))
        colour = shade(colour, cylinder(roi, top, bottom, w, rng))
        if rng.uniform() < 0.6:  # seen from above: a pale rim around the drink inside
            return _cup_mouth(colour, roi, top, w, ang, rng), alpha[roi], roi
        return colour, alpha[roi], roi
    if sub == 2:  # phone held to the cheek or in front of the face
        c = geo.cheeks(0.7)[rng.integers(2)] * 0.7 + geo.mouth * 0.3
        w, h = u * rng.uniform(0.45, 0.6), u * rng.uniform(0.9, 1.2)
        ang = rng.uniform(-0.6, 0.6) + np.pi / 2
        fill(alpha, superellipse(c, h, w, ang, 7.0))
        roi = region(alpha)
        colour = pool.texture(rng, s, roi)
        if rng.uniform() < 0.6:  # screen side: a dark glass panel inside a thin bezel
            screen = np.zeros_like(alpha)
            fill(screen, superellipse(c, h * 0.9, w * 0.85, ang, 7.0))
            dim = 1 - screen[roi] * np.float32(0.5 / 255)
            colour = shade(flat(alpha[roi], rng.uniform(15, 60, 3)), dim) + 12
        glint = np.zeros_like(alpha)  # a blurred specular spot on the glass or plastic
        cv2.circle(glint, pt(c + rng.normal(0, 0.3 * w, 2)), int(w * 8), 255, -1, AA, SHIFT)
        glint = cv2.GaussianBlur(glint[roi], (0, 0), w * 0.3) * np.float32(rng.uniform(0.3, 0.9))
        colour = shade(colour, gradient(roi, s, rng, 0.7, 1.3)) + cv2.merge([glint] * 3)
        return colour, alpha[roi], roi
    # microphone: a ball head with a grille on a stick, mostly from the bottom edge
    head = geo.mouth + np.array([rng.uniform(-0.7, 0.7), rng.uniform(0.0, 0.8)]) * u
    r = u * rng.uniform(0.35, 0.55)
    end = edge_point(rng, s, p=(0.7, 0.15, 0.15))
    capsule(alpha, head, end, r * rng.uniform(0.3, 0.45))
    ball = np.zeros_like(alpha)
    cv2.circle(ball, pt(head), int(r * ONE), 255, -1, AA, SHIFT)
    alpha = np.maximum(alpha, ball)
    roi = region(alpha)
    stick = shade(flat(alpha[roi], rng.uniform(10, 70, 3)), cylinder(roi, head, end, r * 0.4, rng))
    pitch = np.float32(rng.uniform(2.0, 3.2))
    mesh = ((np.abs(plane(roi, 1, 1) % pitch - pitch / 2) < 0.6)
            | (np.abs(plane(roi, 1, -1) % pitch - pitch / 2) < 0.6))
    dist2 = (plane(roi, 1, 0, head) ** 2 + plane(roi, 0, 1, head) ** 2) / np.float32(r * r)
    sphere = 0.4 + 0.7 * np.sqrt(np.clip(1 - dist2, 0, 1))
    metal = np.float32(rng.uniform(110, 200)) * (1 - 0.45 * mesh) * sphere
    return pick(ball[roi], cv2.merge([metal] * 3), stick), alpha[roi], roi
