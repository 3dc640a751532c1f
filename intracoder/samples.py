"""Real faces that ship inside installed packages, and clips rendered from them.

matplotlib's grace_hopper.jpg and scikit-image's astronaut are the material for the demo,
the tests and the benchmarks: real faces, no download. ``render_clip`` moves, zooms,
rotates and relights a portrait like a talking-head camera would, and returns the
per-frame transform so tests know where the face really is.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

PORTRAITS = ("grace_hopper", "astronaut")


def portrait(name: str) -> np.ndarray:
    """The named bundled portrait as a BGR uint8 image."""
    if name == "grace_hopper":
        import matplotlib.cbook as cbook

        path = cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)
        img = cv2.imread(str(path))
    elif name == "astronaut":
        import skimage.data

        img = cv2.cvtColor(skimage.data.astronaut(), cv2.COLOR_RGB2BGR)
    else:
        raise ValueError(f"unknown portrait {name!r}; choose from {PORTRAITS}")
    return img


# Approximate face centre and size (pixels) in each portrait, to frame the clips.
_FACE_CENTRE = {"grace_hopper": (265.0, 215.0, 230.0), "astronaut": (230.0, 120.0, 150.0)}


@dataclass
class RenderedClip:
    frames: list[np.ndarray]  # BGR uint8, size x size
    matrices: list[np.ndarray]  # 2x3 portrait -> frame, one per frame
    angles: list[float]  # in-plane rotation of the face in degrees, one per frame


def render_clip(name: str, n_frames: int = 24, size: int = 256, seed: int = 0,
                max_angle: float = 20.0, zoom: tuple[float, float] = (0.8, 1.25),
                shift: float = 0.08, light: tuple[float, float] = (0.7, 1.2),
                face_fraction: float = 0.42) -> RenderedClip:
    """Render a smooth camera path over a portrait: sway (rotation up to +-max_angle),
    zoom, drift and a slow lighting change. Deterministic for a given seed."""
    img = portrait(name)
    cx, cy, face = _FACE_CENTRE[name]
    rng = np.random.default_rng(seed)
    phase = rng.uniform(0, 2 * np.pi, size=4)
    t = np.linspace(0, 1, n_frames) if n_frames > 1 else np.zeros(1)
    frames, mats, angles = [], [], []
    for ti in t:
        angle = max_angle * np.sin(2 * np.pi * ti + phase[0])
        z = zoom[0] + (zoom[1] - zoom[0]) * 0.5 * (1 + np.sin(2 * np.pi * ti * 0.7 + phase[1]))
        dx = shift * size * np.sin(2 * np.pi * ti * 1.3 + phase[2])
        dy = shift * size * np.cos(2 * np.pi * ti * 0.9 + phase[3])
        gain = light[0] + (light[1] - light[0]) * 0.5 * (1 + np.sin(2 * np.pi * ti + phase[3]))
        scale = z * face_fraction * size / face
        m = cv2.getRotationMatrix2D((cx, cy), angle, scale)
        m[:, 2] += np.array([size / 2 + dx - cx, size / 2 + dy - cy])
        frame = cv2.warpAffine(img, m, (size, size), flags=cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_REPLICATE)
        # Lighting: a global gain plus a soft left-right gradient, like a window light.
        ramp = np.linspace(1.0 - 0.15 * (gain - 1), 1.0 + 0.15 * (gain - 1), size)[None, :, None]
        frame = np.clip(frame.astype(np.float32) * gain * ramp, 0, 255).astype(np.uint8)
        frames.append(frame)
        mats.append(m)
        angles.append(float(angle))
    return RenderedClip(frames=frames, matrices=mats, angles=angles)


def write_clip(frames: list[np.ndarray], path, fps: float = 25.0) -> None:
    """Write BGR frames as an H.264 MP4 (crf 18) with the media layer's writer."""
    from intracoder.media.video import VideoWriter

    h, w = frames[0].shape[:2]
    with VideoWriter(path, w, h, fps) as writer:
        for frame in frames:
            writer.write(np.ascontiguousarray(frame))


def compose_pair(size: int = 512) -> np.ndarray:
    """One frame with both portraits side by side (for multi-face and identity tests)."""
    half = size // 2
    out = []
    for name in PORTRAITS:
        clip = render_clip(name, n_frames=1, size=half, max_angle=0, zoom=(1.0, 1.0),
                           shift=0.0, light=(1.0, 1.0), face_fraction=0.5)
        out.append(clip.frames[0])
    canvas = np.zeros((size, size, 3), np.uint8)
    canvas[size // 4: size // 4 + half, :half] = out[0]
    canvas[size // 4: size // 4 + half, half: 2 * half] = out[1]
    return canvas
