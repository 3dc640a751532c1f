"""Put a generated face back into its frame: the blend mask, then alpha or Poisson pasting.

The face and its mask live in the aligned crop; ``matrix`` is the 2x3 affine that maps frame
pixels to crop pixels (as given to cv2.warpAffine when the crop was cut). Pasting warps only
the frame rectangle the mask can reach (``paste_region``) and composites there, so the cost
depends on the face, not the frame, and every pixel outside that rectangle, or where the
warped mask is zero, is returned byte for byte. All functions return new arrays and never
modify their inputs.
"""

from __future__ import annotations

import cv2
import numpy as np

# Erode and blur sizes are specified for a 256-px face, the scale DFL's merger defaults suit.
REFERENCE_FACE_SIZE = 256


def _unit(mask: np.ndarray) -> np.ndarray:
    """A mask as float32 in [0, 1]; uint8 masks are 0..255, float masks already 0..1."""
    mask = mask.reshape(mask.shape[:2])
    if mask.dtype == np.uint8:
        return mask.astype(np.float32) / 255.0
    return np.clip(mask.astype(np.float32), 0.0, 1.0)


def _byte(mask: np.ndarray) -> np.ndarray:
    """A mask as uint8 0..255; float masks are 0..1."""
    mask = mask.reshape(mask.shape[:2])
    if mask.dtype == np.uint8:
        return mask
    return np.clip(np.rint(mask.astype(np.float32) * 255.0), 0, 255).astype(np.uint8)


def _disk(radius: int) -> np.ndarray:
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))


def face_mask(pred_mask: np.ndarray | None, hull_mask: np.ndarray | None, erode_px: float,
              blur_px: float, face_size: int) -> np.ndarray:
    """The blend mask (uint8, 255 = face) in crop space.

    The model's predicted mask follows occlusions (hands, hair) but can leak onto the
    background; the landmark hull never leaks but ignores occlusions; their intersection
    keeps the strengths of both. Either may be None to use the other alone. ``erode_px``
    (negative dilates) and ``blur_px`` are for a 256-px face and are scaled by
    ``face_size / 256``, where ``face_size`` is the side of the crop the masks are in. That
    one factor makes the seam look the same at any model resolution and at any size the
    face has in the frame, because the crop is warped to the frame as a whole. Before
    feathering, a band as wide as the blur is cleared along the crop edge so the mask
    reaches zero inside the crop and the crop's square outline can never show.
    """
    if pred_mask is None and hull_mask is None:
        raise ValueError("face_mask needs a predicted mask, a hull mask or both")
    # Morphology on bytes, the blur on floats: each is OpenCV's fast path (3x and 4x faster
    # than the other type on a 256-px mask).
    masks = [_byte(m) for m in (pred_mask, hull_mask) if m is not None]
    if len(masks) == 2 and masks[0].shape != masks[1].shape:
        raise ValueError(f"mask shapes differ: {masks[0].shape} vs {masks[1].shape}")
    mask = masks[0] if len(masks) == 1 else np.minimum(masks[0], masks[1])
    scale = face_size / REFERENCE_FACE_SIZE
    erode = int(round(erode_px * scale))
    if erode > 0:
        mask = cv2.erode(mask, _disk(erode), borderType=cv2.BORDER_CONSTANT, borderValue=0)
    elif erode < 0:
        mask = cv2.dilate(mask, _disk(-erode))
    blur = int(round(blur_px * scale))
    if blur > 0:
        band = min(blur + 1, min(mask.shape) // 2)
        mask = mask.copy()
        mask[:band], mask[-band:], mask[:, :band], mask[:, -band:] = 0, 0, 0, 0
        # Kernel radius == blur and sigma == blur / 2: the feather spans 2 * blur pixels and
        # is exactly zero at the crop edge, which the cleared band keeps out of reach.
        soft = cv2.GaussianBlur(mask.astype(np.float32), (2 * blur + 1, 2 * blur + 1),
                                blur / 2.0, borderType=cv2.BORDER_CONSTANT)
        mask = np.clip(np.rint(soft), 0, 255).astype(np.uint8)
    return mask


def scaled_matrix(matrix: np.ndarray, scale: float, size: int) -> np.ndarray:
    """``matrix`` (frame -> crop of ``size`` px) changed so that what the crop holds lands
    in the frame ``scale`` times as large about the crop's centre: the face and its mask
    grow or shrink together, about the point the alignment centres the face on (as
    DeepFaceLab's output face scale). Scale 1 returns ``matrix`` itself."""
    if scale == 1:
        return matrix
    c = (size - 1) / 2.0  # pixel centres: the crop's middle, at any size
    m = np.asarray(matrix, np.float64).reshape(2, 3)
    # crop point q shows at frame point M^-1 (c + s (q - c)), so frame -> crop is
    # q = c + (M p - c) / s.
    out = m / scale
    out[:, 2] += c * (1.0 - 1.0 / scale)
    return out


def paste_region(frame_shape: tuple[int, ...], mask: np.ndarray, matrix: np.ndarray,
                 pad: int = 2) -> tuple[int, int, int, int] | None:
    """Frame rectangle (x0, y0, x1, y1), end-exclusive, that the nonzero part of the
    crop-space ``mask`` can reach once warped through the inverse of ``matrix``, grown by
    ``pad`` pixels and clipped to the frame; None when the mask is empty or off-frame."""
    binary = (mask.reshape(mask.shape[:2]) > 0).astype(np.uint8)
    # The outer contours have the same convex hull as every nonzero pixel, at a fraction of
    # the points (a hull over all pixels of a large mask cost ~12 ms a face).
    contours, _ = cv2.findContours(binary, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    if not contours:
        return None
    # The hull, not the bounding box: a rotated face's box corners would inflate the region.
    hull = cv2.convexHull(np.vstack(contours)).reshape(-1, 2).astype(np.float64)
    # One extra crop pixel in every direction: bilinear sampling reaches that far.
    offsets = np.array([[-1, -1], [1, -1], [-1, 1], [1, 1]], np.float64)
    corners = (hull[:, None, :] + offsets[None]).reshape(-1, 2)
    inv = cv2.invertAffineTransform(np.asarray(matrix, np.float64).reshape(2, 3))
    pts = corners @ inv[:, :2].T + inv[:, 2]
    fh, fw = frame_shape[:2]
    x0 = max(int(np.floor(pts[:, 0].min())) - pad, 0)
    y0 = max(int(np.floor(pts[:, 1].min())) - pad, 0)
    x1 = min(int(np.ceil(pts[:, 0].max())) + pad + 1, fw)
    y1 = min(int(np.ceil(pts[:, 1].max())) + pad + 1, fh)
    if x0 >= x1 or y0 >= y1:
        return None
    return x0, y0, x1, y1


def _warp_into(region: tuple[int, int, int, int], face: np.ndarray, mask: np.ndarray,
               matrix: np.ndarray, interpolation: int) -> tuple[np.ndarray, np.ndarray]:
    """Warp crop-space face and mask into the frame rectangle ``region`` only."""
    x0, y0, x1, y1 = region
    m = np.asarray(matrix, np.float64).reshape(2, 3).copy()
    # Sub-image pixel (u, v) is frame pixel (u + x0, v + y0).
    m[:, 2] += m[:, :2] @ np.array([x0, y0], np.float64)
    size = (x1 - x0, y1 - y0)
    flags = interpolation | cv2.WARP_INVERSE_MAP
    # Replicate, not black: where the feathered mask is still above zero at the crop edge,
    # bilinear taps outside the crop must not darken the face.
    face_w = cv2.warpAffine(face, m, size, flags=flags, borderMode=cv2.BORDER_REPLICATE)
    mask_w = cv2.warpAffine(_unit(mask), m, size, flags=flags, borderMode=cv2.BORDER_CONSTANT,
                            borderValue=0)
    return face_w, np.clip(mask_w, 0.0, 1.0)


def _composite(frame: np.ndarray, region: tuple[int, int, int, int], face_w: np.ndarray,
               alpha: np.ndarray) -> np.ndarray:
    x0, y0, x1, y1 = region
    out = frame.copy()
    roi = out[y0:y1, x0:x1]
    # blendLinear computes (face * a + roi * (1 - a)) / (a + (1 - a) + 1e-5) with rounding;
    # where a == 0 that rounds back to roi exactly, so untouched pixels stay byte for byte.
    # One OpenCV call instead of numpy float arithmetic: 5x faster on a 350-px face.
    roi[:] = cv2.blendLinear(face_w, roi, alpha, 1.0 - alpha)
    return out


def _check(frame: np.ndarray, face: np.ndarray, mask: np.ndarray) -> None:
    if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
        raise ValueError(f"frame must be HxWx3 uint8, got {frame.shape} {frame.dtype}")
    if face.dtype != np.uint8 or face.shape[:2] != mask.shape[:2] or face.shape[2:] != (3,):
        raise ValueError(f"face {face.shape} must be HxWx3 uint8 with a mask of the same size")


def paste_alpha(frame: np.ndarray, face_bgr: np.ndarray, mask: np.ndarray, matrix_2x3: np.ndarray,
                interpolation: int = cv2.INTER_LINEAR) -> np.ndarray:
    """Warp the crop-space face and mask into the frame and alpha-blend:
    out = frame * (1 - a) + face * a. An empty or off-frame mask returns a copy of frame."""
    _check(frame, face_bgr, mask)
    region = paste_region(frame.shape, mask, matrix_2x3)
    if region is None:
        return frame.copy()
    face_w, alpha = _warp_into(region, face_bgr, mask, matrix_2x3, interpolation)
    return _composite(frame, region, face_w, alpha)


# Reflected margin around the image handed to seamlessClone, so the Poisson boundary lies
# outside the face even when the face is cut by the frame edge.
_CLONE_MARGIN = 2


# Largest side of the region the Poisson equation is solved on (see _correction); 0: full
# size. On the faces of ../shared/facedata every side from 64 to 160 lands within 41-43 dB of
# the full-resolution solve (max error ~10 levels, at the feathered edge); the cost keeps
# falling with the side down to ~64, where seamlessClone's fixed overhead takes over.
POISSON_SIDE = 80


def paste_seamless(frame: np.ndarray, face: np.ndarray, mask: np.ndarray, matrix: np.ndarray,
                   interpolation: int = cv2.INTER_LINEAR, max_side: int = POISSON_SIDE,
                   solve_mask: np.ndarray | None = None) -> np.ndarray:
    """Poisson-blend the face into the frame (cv2.seamlessClone, NORMAL_CLONE): the face keeps
    its gradients and takes its low frequencies from the frame around it, which hides
    residual colour and lighting differences. The solve runs on ``paste_region`` only, never
    the full frame (the classic 13 s/frame bottleneck of full-frame cloning). The cloned
    face is then alpha-composited with the feathered mask, exactly as ``paste_alpha`` does,
    so the seam keeps its feather and pixels the mask does not touch are left as they are.
    ``solve_mask`` (default ``mask``) is where the Poisson equation is solved: a mask with a
    hand or a cup cut out of it is solved over the whole face, or the membrane would be
    pinned to the occluder's colours along its edge and tint the face around it."""
    _check(frame, face, mask)
    region = paste_region(frame.shape, mask if solve_mask is None else
                          np.maximum(_byte(mask), _byte(solve_mask)), matrix)
    if region is None:
        return frame.copy()
    face_w, alpha = _warp_into(region, face, mask, matrix, interpolation)
    solve = alpha if solve_mask is None else _warp_into(region, face, solve_mask, matrix,
                                                        interpolation)[1]
    inside = (solve > 0).astype(np.uint8) * 255
    if not inside.any():
        return frame.copy()
    x0, y0, x1, y1 = region
    correction = _correction(face_w, frame[y0:y1, x0:x1], inside, max_side)
    cloned = cv2.add(face_w, correction, dtype=cv2.CV_8U)  # saturating, rounded
    return _composite(frame, region, cloned, alpha)


def _clone(src: np.ndarray, dst: np.ndarray, inside: np.ndarray) -> np.ndarray:
    """seamlessClone of src into dst where ``inside``, both given a reflected margin first."""
    p = _CLONE_MARGIN
    src = cv2.copyMakeBorder(src, p, p, p, p, cv2.BORDER_REFLECT_101)
    dst = cv2.copyMakeBorder(dst, p, p, p, p, cv2.BORDER_REFLECT_101)
    cm = cv2.copyMakeBorder(inside, p, p, p, p, cv2.BORDER_CONSTANT, value=0)
    bx, by, bw, bh = cv2.boundingRect(cm)
    # OpenCV places the mask's bounding box at centre - (w // 2, h // 2): this centre puts it
    # back where it came from.
    cloned = cv2.seamlessClone(src, dst, cm, (bx + bw // 2, by + bh // 2), cv2.NORMAL_CLONE)
    return cloned[p:-p, p:-p]


def _correction(src: np.ndarray, dst: np.ndarray, inside: np.ndarray,
                max_side: int) -> np.ndarray:
    """What seamlessClone adds to ``src`` (float32), solved at reduced resolution when the
    region is large.

    The Poisson result is src plus a correction that is harmonic inside the mask (a smooth
    membrane fixed to dst - src on the mask's edge), so it survives downscaling: it is
    solved on the region shrunk to ``max_side`` pixels and added back upscaled to the
    full-resolution face, whose own detail is untouched."""
    h, w = src.shape[:2]
    scale = max_side / max(h, w) if max_side else 1.0
    if scale < 1.0:
        size = (max(8, round(w * scale)), max(8, round(h * scale)))
        small = [cv2.resize(a, size, interpolation=cv2.INTER_AREA) for a in (src, dst, inside)]
        src_s, dst_s, inside_s = small[0], small[1], (small[2] > 127).astype(np.uint8) * 255
        if inside_s.any():
            correction = cv2.subtract(_clone(src_s, dst_s, inside_s), src_s, dtype=cv2.CV_32F)
            return cv2.resize(correction, (w, h), interpolation=cv2.INTER_LINEAR)
    return cv2.subtract(_clone(src, dst, inside), src, dtype=cv2.CV_32F)
