"""A small visible label burned into the bottom-right corner (``convert --label TEXT``).

The label is for viewers, the watermark for tools: it is easy to crop off, so it only adds
to the invisible mark. It is sized relative to the frame so that it stays legible on a
phone-sized 360p clip and small on 4K.
"""

from __future__ import annotations

import cv2
import numpy as np

_FONT = cv2.FONT_HERSHEY_SIMPLEX
_TEXT_HEIGHT_FRACTION = 0.035  # of the frame height
_MIN_TEXT_PX = 8
_MAX_WIDTH_FRACTION = 0.9  # of the frame width; longer labels are shrunk to fit
_BOX_ALPHA = 0.6  # darkening of the box behind the text


def clean_label(text: str) -> str:
    """The label as it is drawn; ValueError when nothing drawable is left (convert checks
    --label with it before any work)."""
    # Hershey fonts draw ASCII only; anything else would come out as '?' boxes anyway.
    cleaned = "".join(ch if 32 <= ord(ch) < 127 else "?" for ch in text).strip()
    if not cleaned:
        raise ValueError("label text is empty")
    return cleaned


def _layout(shape: tuple[int, ...], text: str) -> tuple[float, int, int, int, int]:
    """Font scale, thickness, padding and the text's width and height in pixels."""
    height, width = shape[:2]
    target_px = max(_MIN_TEXT_PX, int(round(_TEXT_HEIGHT_FRACTION * height)))
    (_, base_h), _ = cv2.getTextSize("X", _FONT, 1.0, 1)
    scale = target_px / base_h
    (text_w, _), _ = cv2.getTextSize(text, _FONT, scale, 1)
    if text_w > _MAX_WIDTH_FRACTION * width:
        scale *= _MAX_WIDTH_FRACTION * width / text_w
    thickness = max(1, int(round(scale * 1.5)))
    (text_w, text_h), baseline = cv2.getTextSize(text, _FONT, scale, thickness)
    pad = max(2, text_h // 3)
    return scale, thickness, pad, text_w, text_h + baseline


def label_box(shape: tuple[int, ...], text: str) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1) of the pixels the label may change; nothing outside it changes."""
    height, width = shape[:2]
    _, _, pad, text_w, text_h = _layout(shape, clean_label(text))
    margin = pad
    x1, y1 = width - margin, height - margin
    x0 = max(0, x1 - text_w - 2 * pad)
    y0 = max(0, y1 - text_h - 2 * pad)
    return x0, y0, x1, y1


def burn_label(frame_bgr: np.ndarray, text: str) -> np.ndarray:
    """A copy of the frame with ``text`` in white on a darkened box in the bottom-right."""
    text = clean_label(text)
    scale, thickness, pad, _, _ = _layout(frame_bgr.shape, text)
    x0, y0, x1, y1 = label_box(frame_bgr.shape, text)
    out = frame_bgr.copy()
    region = out[y0:y1, x0:x1]
    # Darken rather than paint black, so the box reads as an overlay, not as missing image.
    region[...] = (region.astype(np.float32) * (1.0 - _BOX_ALPHA)).astype(np.uint8)
    _, baseline = cv2.getTextSize(text, _FONT, scale, thickness)
    origin = (x0 + pad, y1 - pad - baseline)
    white = (255,) * (out.shape[2] if out.ndim == 3 else 1)
    # Drawing into the region view keeps anti-aliased edges inside the box.
    cv2.putText(region, text, (origin[0] - x0, origin[1] - y0), _FONT, scale, white,
                thickness, cv2.LINE_AA)
    return out
