"""bench/occlusion.py's occluders: where they go on a face (Anchors, from the face mesh or a
box), and the painters that paste a cup, a microphone or a hand over it, following it.

The shapes are drawn here, not by intracoder.data.occluders: the cup is cut from
scikit-image's coffee photo, the hand has the skin of another person (scikit-image's
astronaut), both held out of the mask's training.
"""

import functools
import math
from dataclasses import dataclass

import cv2
import numpy as np

KINDS = ("cup", "microphone", "hand")
AA, SHIFT, ONE = cv2.LINE_AA, 4, 16  # sub-pixel drawing: coordinates * 16


# --------------------------------------------------------------------------- face geometry

@dataclass(frozen=True)
class Anchors:
    """Where the occluders go, in frame pixels (x, y)."""
    eye_l: np.ndarray  # image left
    eye_r: np.ndarray
    nose: np.ndarray
    mouth: np.ndarray
    chin: np.ndarray
    cheek_l: np.ndarray  # centre of the image-left cheek
    cheek_r: np.ndarray
    width: float  # face width in pixels
    hull: np.ndarray  # K x 2 polygon of the face

    @property
    def roll(self) -> float:
        d = self.eye_r - self.eye_l
        return float(math.atan2(d[1], d[0]))

    @property
    def down(self) -> np.ndarray:
        """Unit vector from the eyes towards the chin."""
        a = self.roll
        return np.array([-math.sin(a), math.cos(a)])

    @property
    def right(self) -> np.ndarray:
        a = self.roll
        return np.array([math.cos(a), math.sin(a)])

    @classmethod
    def from_face(cls, face) -> "Anchors":
        """From intracoder.faces.extract.FoundFace: MTCNN's 5 points, the 468-point mesh."""
        lm = np.asarray(face.landmarks, np.float64)[:, :2]
        p5 = np.asarray(face.detection.points5, np.float64)
        nose = lm[1]
        mouth = (lm[13] + lm[14]) / 2
        side_l, side_r = lm[234], lm[454]
        hull = cv2.convexHull(lm.astype(np.float32)).reshape(-1, 2).astype(np.float64)
        return cls(p5[0], p5[1], nose, mouth, lm[152], side_l * 0.55 + nose * 0.45,
                   side_r * 0.55 + nose * 0.45, float(np.linalg.norm(side_r - side_l)), hull)

    @classmethod
    def from_box(cls, box) -> "Anchors":
        """A frontal face filling ``box`` (x, y, w, h): for tests and for a missing mesh."""
        x, y, w, h = (float(v) for v in box)

        def at(u, v):
            return np.array([x + u * w, y + v * h])

        t = np.linspace(0, 2 * np.pi, 48, endpoint=False)
        hull = np.stack([x + w / 2 + np.cos(t) * w / 2, y + h / 2 + np.sin(t) * h / 2], 1)
        return cls(at(0.3, 0.38), at(0.7, 0.38), at(0.5, 0.55), at(0.5, 0.72), at(0.5, 0.97),
                   at(0.22, 0.6), at(0.78, 0.6), w, hull)


def hull_mask(hull: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    mask = np.zeros(shape[:2], np.uint8)
    cv2.fillPoly(mask, [np.round(hull * ONE).astype(np.int32)], 255, AA, SHIFT)
    return mask > 127


def kind_of(i: int, n: int) -> str:
    """The occluder of frame ``i`` of ``n``: the three kinds in turn, one third each."""
    return KINDS[min(len(KINDS) - 1, i * len(KINDS) // max(n, 1))]


# --------------------------------------------------------------------------- occluders

def _fix(p) -> tuple[int, int]:
    return tuple(int(round(float(v) * ONE)) for v in p)


def _poly(mask: np.ndarray, pts, value=255) -> None:
    cv2.fillPoly(mask, [np.round(np.asarray(pts, np.float64) * ONE).astype(np.int32)],
                 value, AA, SHIFT)


def _capsule(mask: np.ndarray, p0, p1, r0: float, r1: float | None = None, value=255) -> None:
    """A stroke from p0 to p1, r0 wide at p0 and r1 at p1, with round ends."""
    r1 = r0 if r1 is None else r1
    p0, p1 = np.asarray(p0, np.float64), np.asarray(p1, np.float64)
    d = p1 - p0
    n = np.array([-d[1], d[0]]) / (np.linalg.norm(d) + 1e-9)
    _poly(mask, [p0 + n * r0, p1 + n * r1, p1 - n * r1, p0 - n * r0], value)
    for p, r in ((p0, r0), (p1, r1)):
        cv2.circle(mask, _fix(p), int(round(r * ONE)), value, -1, AA, SHIFT)


def _grid(shape) -> tuple[np.ndarray, np.ndarray]:
    yy, xx = np.mgrid[0:shape[0], 0:shape[1]].astype(np.float32)
    return xx, yy


def _smooth_noise(shape, rng: np.random.Generator, scale: float, amount: float) -> np.ndarray:
    """Low-frequency multiplicative noise around 1 (+- ``amount``), features ``scale`` px."""
    h, w = shape[:2]
    small = rng.normal(0, 1, (max(2, int(h / scale) + 2), max(2, int(w / scale) + 2)))
    big = cv2.resize(small.astype(np.float32), (w, h), interpolation=cv2.INTER_CUBIC)
    return 1.0 + amount * big / (np.abs(big).max() + 1e-6)


@functools.lru_cache(maxsize=1)
def cup_cutout() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(BGR float32, alpha float32, anchor) of the espresso cup in skimage's coffee photo:
    rim ellipse, tapered body and handle; the anchor is the rim's centre. The photo is held
    out of the mask's training occluders (intracoder.data.occluders.RESERVED)."""
    import skimage.data

    img = np.ascontiguousarray(skimage.data.coffee()[..., ::-1])
    m = np.zeros(img.shape[:2], np.uint8)
    cv2.ellipse(m, (291 * ONE, 113 * ONE), (119 * ONE, 97 * ONE), 0, 0, 360, 255, -1, AA, SHIFT)
    _poly(m, [(176, 140), (407, 140), (398, 195), (378, 240), (352, 270), (320, 286),
              (275, 290), (240, 280), (212, 255), (192, 215)])
    cv2.ellipse(m, (228 * ONE, 266 * ONE), (32 * ONE, 40 * ONE), 15, 0, 360, 255, -1, AA, SHIFT)
    ys, xs = np.nonzero(m)
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    return (img[y0:y1, x0:x1].astype(np.float32), m[y0:y1, x0:x1].astype(np.float32) / 255.0,
            np.array([291.0 - x0, 113.0 - y0]))


@functools.lru_cache(maxsize=1)
def astronaut_skin() -> np.ndarray:
    """BGR float32 skin tone of another person (the astronaut's cheeks): the hand's colour."""
    import skimage.data

    img = skimage.data.astronaut()[..., ::-1].astype(np.float32)
    cheeks = np.concatenate([img[122:136, 185:196].reshape(-1, 3),
                             img[120:136, 247:262].reshape(-1, 3)])
    return np.median(cheeks, axis=0)


def _warp_layer(colour: np.ndarray, alpha: np.ndarray, matrix: np.ndarray, shape
                ) -> tuple[np.ndarray, np.ndarray]:
    h, w = shape[:2]
    c = cv2.warpAffine(colour, matrix, (w, h), flags=cv2.INTER_LINEAR,
                       borderMode=cv2.BORDER_REPLICATE)
    a = cv2.warpAffine(alpha, matrix, (w, h), flags=cv2.INTER_LINEAR,
                       borderMode=cv2.BORDER_CONSTANT, borderValue=0.0)
    return c, np.clip(a, 0.0, 1.0)


def cup_layer(shape, geo: Anchors, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """The cup raised to the mouth: its rim as wide as 3/4 of the face, rim centre a quarter
    of the way from mouth to chin, body and handle over the chin, tilted with the head."""
    img, alpha, anchor = cup_cutout()
    scale = 0.75 * geo.width / 238.0  # 238: the rim's width in the photo
    angle = geo.roll + math.radians(6.0)
    centre = geo.mouth + (geo.chin - geo.mouth) * 0.25 + geo.right * geo.width * 0.04
    c, s = math.cos(angle) * scale, math.sin(angle) * scale
    rot = np.array([[c, -s], [s, c]])
    matrix = np.hstack([rot, (centre - rot @ anchor)[:, None]])
    # shade it: darker towards the sides of the cylinder and the bottom, a little noise
    xx, yy = _grid(img.shape)
    u = (xx - anchor[0]) / (img.shape[1] / 2)
    shade = (1.02 - 0.18 * u ** 2) * (1.0 - 0.12 * yy / img.shape[0])
    shade = shade * _smooth_noise(img.shape, rng, 40, 0.03)
    return _warp_layer(img * (0.92 * shade[..., None]), alpha, matrix, shape)


def microphone_layer(shape, geo: Anchors, rng: np.random.Generator
                     ) -> tuple[np.ndarray, np.ndarray]:
    """A handheld microphone in front of the mouth: a dark ball with a square grille and a
    chrome band, on a tapered black handle that runs off the bottom edge of the frame."""
    h, w = shape[:2]
    r = 0.21 * geo.width
    head = geo.mouth + geo.down * 0.12 * geo.width + geo.right * 0.05 * geo.width
    handle_dir = geo.down + geo.right * 0.25
    handle_dir /= np.linalg.norm(handle_dir)
    length = max(2 * h, 2 * w)
    alpha = np.zeros((h, w), np.uint8)
    handle = np.zeros((h, w), np.uint8)
    _capsule(handle, head + handle_dir * r * 0.6, head + handle_dir * length, r * 0.5, r * 0.32)
    ball = np.zeros((h, w), np.uint8)
    cv2.circle(ball, _fix(head), int(round(r * ONE)), 255, -1, AA, SHIFT)
    alpha = np.maximum(handle, ball)
    xx, yy = _grid(shape)
    # the ball: a square grid of bright wires on a dark mesh, lit like a sphere
    dx, dy = xx - np.float32(head[0]), yy - np.float32(head[1])
    a = geo.roll + 0.3
    u = dx * math.cos(a) + dy * math.sin(a)
    v = -dx * math.sin(a) + dy * math.cos(a)
    pitch = max(3.0, r / 7.0)
    wire = ((np.abs(u % pitch - pitch / 2) < pitch * 0.18)
            | (np.abs(v % pitch - pitch / 2) < pitch * 0.18))
    d2 = (dx * dx + dy * dy) / np.float32(r * r)
    sphere = 0.35 + 0.75 * np.sqrt(np.clip(1 - d2, 0, 1))
    lit = np.exp(-((dx + 0.35 * r) ** 2 + (dy + 0.4 * r) ** 2) / np.float32((0.35 * r) ** 2))
    mesh = np.float32(38) + np.float32(60) * wire
    ball_c = (mesh * sphere + 110 * lit)[..., None] * np.array([1.0, 1.0, 1.06], np.float32)
    # the handle: matte black cylinder with a soft highlight along one side
    across = (dx * handle_dir[1] - dy * handle_dir[0]) / np.float32(r * 0.45)
    handle_c = (22 + 30 * np.exp(-((across + 0.4) ** 2) / 0.08))[..., None] * np.ones(3, np.float32)
    # chrome band where ball meets handle
    band = np.zeros((h, w), np.uint8)
    _capsule(band, head + handle_dir * r * 0.8, head + handle_dir * r * 1.0, r * 0.52)
    colour = np.where(ball[..., None] > 0, ball_c, handle_c)
    colour = np.where((band[..., None] > 0) & (handle[..., None] > 0),
                      (150 + 60 * np.exp(-((across + 0.3) ** 2) / 0.1))[..., None]
                      * np.ones(3, np.float32), colour)
    return colour.astype(np.float32), alpha.astype(np.float32) / 255.0


def hand_layer(shape, geo: Anchors, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A hand laid on the image-left cheek, fingers up towards the temple, forearm running
    off the bottom edge; the skin of another person, darker along the outline and between
    the fingers, lit from above."""
    h, w = shape[:2]
    fw = geo.width
    up = -geo.down
    side = geo.right
    # fingers point up and a little outwards; the palm sits on the cheek
    axis = up * math.cos(0.45) - side * math.sin(0.45)
    across = np.array([axis[1], -axis[0]])  # towards the face's centre
    if np.dot(across, side) < 0:
        across = -across
    palm = geo.cheek_l + geo.down * 0.2 * fw - side * 0.05 * fw
    pw, ph = 0.2 * fw, 0.19 * fw  # palm half width and half length
    alpha = np.zeros((h, w), np.uint8)
    creases = np.zeros((h, w), np.uint8)
    _poly(alpha, [palm + axis * ph * 1.05 + across * pw * 0.95,
                  palm + axis * ph * 1.1 - across * pw * 0.95,
                  palm - axis * ph - across * pw * 0.9,
                  palm - axis * ph * 1.1 + across * pw * 0.85])
    _capsule(alpha, palm - axis * ph * 0.6, palm - axis * 3 * max(h, w), pw * 0.78, pw * 0.95)
    r = 0.05 * fw
    lengths = (0.3, 0.36, 0.34, 0.26)
    for k, (t, fl) in enumerate(zip(np.linspace(-0.75, 0.75, 4), lengths)):
        base = palm + axis * ph * 0.95 + across * pw * t
        spread = axis * math.cos(0.09 * t * 2) + across * math.sin(0.09 * t * 2)
        mid = base + spread * fl * fw * 0.55
        tip = mid + (spread * 0.92 - across * 0.05 * (k - 1.5)) * fl * fw * 0.45
        for p0, p1 in ((base, mid), (mid, tip)):
            _capsule(alpha, p0, p1, r)
        if k < 3:  # the gap to the next finger: a dark line from the knuckle up
            gap = palm + axis * ph * 0.95 + across * pw * (t + 0.25)
            cv2.line(creases, _fix(gap), _fix(gap + spread * fl * fw * 0.8), 255,
                     max(1, int(round(r * 0.25))), AA, SHIFT)
    thumb0 = palm + across * pw * 0.85 - axis * ph * 0.3
    thumb_dir = axis * math.cos(0.9) + across * math.sin(0.9)
    _capsule(alpha, thumb0, thumb0 + thumb_dir * 0.17 * fw, r * 1.2, r * 1.05)
    _capsule(alpha, thumb0 + thumb_dir * 0.17 * fw,
             thumb0 + thumb_dir * 0.17 * fw + axis * 0.12 * fw, r * 1.05, r)
    skin = astronaut_skin()
    a = alpha.astype(np.float32) / 255.0
    # outline shading: darker over the outer ~3% of the face width inside the edge
    inside = cv2.distanceTransform((alpha > 127).astype(np.uint8), cv2.DIST_L2, 5)
    rim = 0.78 + 0.22 * np.clip(inside / max(2.0, 0.03 * fw), 0, 1)
    xx, yy = _grid(shape)
    light = 1.06 - 0.14 * np.clip((yy - geo.cheek_l[1] + ph) / (3 * ph), 0, 1)
    crease = 1.0 - 0.22 * cv2.GaussianBlur(creases.astype(np.float32) / 255.0, (0, 0), 1.0)
    texture = _smooth_noise(shape, rng, max(6.0, 0.05 * fw), 0.05)
    grain = rng.normal(0, 2.0, (h, w, 1)).astype(np.float32)
    colour = skin[None, None, :] * (rim * light * crease * texture)[..., None] + grain
    return colour.astype(np.float32), a


LAYERS = {"cup": cup_layer, "microphone": microphone_layer, "hand": hand_layer}


def composite(frame: np.ndarray, colour: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    a = alpha[..., None]
    out = frame.astype(np.float32) * (1.0 - a) + colour * a
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def paint(kind: str, frame: np.ndarray, geo: Anchors, seed: int = 0
          ) -> tuple[np.ndarray, np.ndarray]:
    """(the frame with occluder ``kind`` pasted over the face at ``geo``, its alpha HxW
    float32 in [0, 1], 1 = occluder)."""
    colour, alpha = LAYERS[kind](frame.shape, geo, np.random.default_rng(seed))
    return composite(frame, colour, alpha), alpha
