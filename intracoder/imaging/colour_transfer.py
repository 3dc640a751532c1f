"""Colour transfer between two aligned face crops: move the colours of ``source`` towards
those of ``reference``.

Every mode is a pure function ``f(source, reference, mask) -> image`` on aligned crops of the
same size, BGR uint8 (only rct depends on the channel order, through its LAB conversion):
``mask`` (uint8, 255 = face) selects the pixels whose statistics count. Background, hair and
the crop's padding are excluded from the statistics because they differ between the two
faces for reasons that have nothing to do with skin colour; the resulting mapping is still
applied to every pixel of ``source``, so the feathered edge that blending later mixes in is
coloured consistently with the face. An empty (or nearly empty) mask leaves ``source`` as is:
statistics of a handful of pixels would do more harm than good.

Two stages use it: convert (a generated face towards the destination face it replaces,
intracoder.convert.colour) and training (DeepFaceLab's ``ct_mode``: side B's faces towards
a random side-A face, intracoder.data.dataset). It lives here, below both, because the
training data package may not import from convert.

Modes follow DeepFaceLab (core/imagelib/color_transfer.py): rct, lct, idt, sot, plus
per-channel histogram matching and none. The random modes (idt, sot) draw from a fixed seed,
so the same pair of images always gives the same bytes (in convert, that keeps video free of
flicker that would otherwise come from the colour step alone).
"""

from __future__ import annotations

from typing import Callable

import cv2
import numpy as np

from intracoder.errors import UserError

ColourFn = Callable[[np.ndarray, np.ndarray, "np.ndarray | None"], np.ndarray]

# Fewer face pixels than this and the statistics are noise; the source is returned as is.
_MIN_PIXELS = 64
# idt/sot estimate their 1-D distributions from at most this many pixels per image, which
# bounds the sorting; the resulting maps are still applied to every colour.
_MAX_SAMPLE = 16384
_SEED = 0


def _selection(source: np.ndarray, reference: np.ndarray,
               mask: np.ndarray | None) -> np.ndarray | None:
    """Flat boolean index of the pixels used for statistics, or None if there are too few."""
    if source.dtype != np.uint8 or reference.dtype != np.uint8:
        raise ValueError("colour transfer expects uint8 images")
    if source.ndim != 3 or source.shape[2] != 3 or source.shape != reference.shape:
        raise ValueError(f"source {source.shape} and reference {reference.shape} "
                         "must both be HxWx3")
    if mask is None:
        return np.ones(source.shape[0] * source.shape[1], bool)
    mask = mask.reshape(mask.shape[:2])
    if mask.shape != source.shape[:2]:
        raise ValueError(f"mask {mask.shape} does not match image {source.shape[:2]}")
    sel = (mask >= 128).reshape(-1)
    return sel if np.count_nonzero(sel) >= _MIN_PIXELS else None


def _to_uint8(img: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def _quantile_map(values: np.ndarray, src_sample: np.ndarray, ref_sample: np.ndarray) -> np.ndarray:
    """Apply the monotone map that sends the empirical distribution of ``src_sample`` onto
    that of ``ref_sample`` to ``values``. Each distinct value sits at the middle of its CDF
    step, so ties (uint8 data) map to the reference quantile they really occupy."""
    sv, sc = np.unique(src_sample, return_counts=True)
    rv, rc = np.unique(ref_sample, return_counts=True)
    s_cdf = (np.cumsum(sc) - 0.5 * sc) / src_sample.size
    r_cdf = (np.cumsum(rc) - 0.5 * rc) / ref_sample.size
    # Compose the two lookups on the (small) table first: one pass over ``values``, not two.
    table = np.interp(s_cdf, r_cdf, rv)
    # np.interp is several times faster on sorted input (its bisection starts from the last hit).
    order = np.argsort(values)
    out = np.empty(values.shape, np.float64)
    out[order] = np.interp(values[order], sv, table)
    return out


def _sample(sel: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    idx = np.flatnonzero(sel)
    if idx.size > _MAX_SAMPLE:
        idx = np.sort(rng.choice(idx, _MAX_SAMPLE, replace=False))
    return idx


def _unique_colours(img: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct colours (Ux3 float64) and, per pixel, the index of its colour. idt and sot
    map colours, not pixels, so iterating on the distinct ones (about half the pixels of a
    face crop) gives the same result for less work."""
    flat = img.reshape(-1, 3).astype(np.int32)
    keys = (flat[:, 0] << 16) | (flat[:, 1] << 8) | flat[:, 2]
    uniq, inverse = np.unique(keys, return_inverse=True)
    colours = np.stack([(uniq >> 16) & 255, (uniq >> 8) & 255, uniq & 255], axis=1)
    return colours.astype(np.float64), inverse.reshape(-1)


def none(source: np.ndarray, reference: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """No colour transfer: a copy of ``source``."""
    _selection(source, reference, mask)
    return source.copy()


_LAB_LOW = (0.0, -127.0, -127.0, 0.0)  # L in [0, 100], a and b in [-127, 127]
_LAB_HIGH = (100.0, 127.0, 127.0, 0.0)


def rct(source: np.ndarray, reference: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """Reinhard et al. 2001: match the per-channel mean and standard deviation in CIE LAB,
    where the channels are decorrelated enough for independent matching to look natural.

    Training runs it on every side-B face of every batch (ct_mode), so it is kept to about
    0.2 ms at 96 px: masked statistics with cv2.meanStdDev (no boolean-indexed copies), the
    per-channel affine and the clipping in single OpenCV passes in float32."""
    sel = _selection(source, reference, mask)
    if sel is None:
        return source.copy()
    inside = None if mask is None else sel.view(np.uint8).reshape(source.shape[:2])
    scale = np.float32(1.0 / 255.0)
    src = cv2.cvtColor(source.astype(np.float32) * scale, cv2.COLOR_BGR2LAB)
    ref = cv2.cvtColor(reference.astype(np.float32) * scale, cv2.COLOR_BGR2LAB)
    s_mean, s_std = cv2.meanStdDev(src, mask=inside)
    r_mean, r_std = cv2.meanStdDev(ref, mask=inside)
    gain = r_std.ravel() / np.maximum(s_std.ravel(), 1e-3)
    offset = r_mean.ravel() - s_mean.ravel() * gain
    # Per-channel affine and clip with OpenCV: numpy broadcasting a (3,) vector over HxWx3
    # runs a 3-long inner loop per pixel, ten times slower.
    out = cv2.transform(src, np.hstack([np.diag(gain), offset[:, None]]).astype(np.float32))
    out = cv2.min(cv2.max(out, _LAB_LOW), _LAB_HIGH)
    bgr = cv2.cvtColor(out, cv2.COLOR_LAB2BGR)
    np.clip(bgr, 0.0, 1.0, out=bgr)
    # After the clip the absolute value is a no-op: this is round-half-even and saturate.
    return cv2.convertScaleAbs(bgr, alpha=255.0)


def _sqrtm_sym(cov: np.ndarray) -> np.ndarray:
    vals, vecs = np.linalg.eigh(cov)
    return (vecs * np.sqrt(np.maximum(vals, 0.0))) @ vecs.T


def lct(source: np.ndarray, reference: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """Linear colour transfer (DFL's ``linear_color_transfer``, PCA mode): the affine map
    x -> Cr^1/2 Cs^-1/2 (x - ms) + mr, which carries the source's mean and full 3x3 colour
    covariance onto the reference's. Unlike rct it also matches cross-channel correlation,
    and the symmetric square root keeps it the least-rotating such map. The map is applied
    by cv2.transform, which also rounds and saturates to uint8 in the same pass."""
    sel = _selection(source, reference, mask)
    if sel is None:
        return source.copy()
    s = source.reshape(-1, 3)[sel].astype(np.float64)
    r = reference.reshape(-1, 3)[sel].astype(np.float64)
    eps = 1e-2 * np.eye(3)  # keeps a flat (single-colour) source invertible
    ms, mr = s.mean(0), r.mean(0)
    qs = _sqrtm_sym(_covariance(s, ms) + eps)
    qr = _sqrtm_sym(_covariance(r, mr) + eps)
    a = qr @ np.linalg.inv(qs)
    return cv2.transform(source, np.hstack([a, (mr - a @ ms)[:, None]]))


def _covariance(x: np.ndarray, mean: np.ndarray) -> np.ndarray:
    """np.cov(x, rowvar=False) (unbiased) without its overhead: one 3xN @ Nx3 product."""
    d = x - mean
    return (d.T @ d) / max(len(x) - 1, 1)


def _random_rotation(rng: np.random.Generator) -> np.ndarray:
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    return q * np.sign(np.diag(r))


def _distributions(source: np.ndarray, reference: np.ndarray, mask: np.ndarray | None,
                   seed: int):
    """What idt and sot start from: a seeded generator, the distinct source colours (float64,
    N x 3) with each pixel's index into them, and samples of the selected pixels: source
    indices into those colours and reference colours. None when nothing is selected."""
    sel = _selection(source, reference, mask)
    if sel is None:
        return None
    rng = np.random.default_rng(seed)
    x, inverse = _unique_colours(source)
    idx_s = inverse[_sample(sel, rng)]
    ref = reference.reshape(-1, 3).astype(np.float64)[_sample(sel, rng)]
    return rng, x, inverse, idx_s, ref


def idt(source: np.ndarray, reference: np.ndarray, mask: np.ndarray | None = None,
        iterations: int = 12, seed: int = _SEED) -> np.ndarray:
    """Iterative distribution transfer (Pitie et al. 2005): in a random orthonormal basis,
    match each of the three 1-D marginals; repeat with new bases. Every marginal in every
    direction tends to the reference's, i.e. the full 3-D colour distribution does, which
    also moves rare colours (lips, shadows) that mean/covariance methods leave behind."""
    start = _distributions(source, reference, mask, seed)
    if start is None:
        return source.copy()
    rng, x, inverse, idx_s, ref = start
    for _ in range(iterations):
        rot = _random_rotation(rng)
        xr, rr = rot.T @ x.T, rot.T @ ref.T  # one contiguous row per axis
        for j in range(3):
            xr[j] = _quantile_map(xr[j], xr[j, idx_s], rr[j])
        x = (rot @ xr).T
    return _to_uint8(x)[inverse].reshape(source.shape)


def sot(source: np.ndarray, reference: np.ndarray, mask: np.ndarray | None = None,
        steps: int = 10, directions: int = 4, seed: int = _SEED) -> np.ndarray:
    """Sliced optimal transport (Rabin et al. 2011, Bonneel et al. 2015; DFL ``sot``): each
    step projects the colours on several random directions, matches the projections 1-D and
    moves every colour by the average displacement, a gradient step on the sliced
    Wasserstein distance. The displacement is a function of colour alone (not of a per-pixel
    sort order, as in DFL), so neighbouring pixels of the same colour move together and
    DFL's bilateral regularisation of the result is unnecessary."""
    start = _distributions(source, reference, mask, seed)
    if start is None:
        return source.copy()
    rng, x, inverse, idx_s, ref = start
    # sum_d d d^T is about (directions / 3) I, so this step size moves a full 1-D gap per step.
    step = 3.0 / directions
    for _ in range(steps):
        dirs = rng.normal(size=(directions, 3))
        dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
        proj, ref_proj = dirs @ x.T, dirs @ ref.T  # one contiguous row per direction
        advect = np.empty_like(proj)
        for d in range(directions):
            advect[d] = _quantile_map(proj[d], proj[d, idx_s], ref_proj[d]) - proj[d]
        x += step * (advect.T @ dirs)
    return _to_uint8(x)[inverse].reshape(source.shape)


def hist(source: np.ndarray, reference: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """Per-channel histogram matching inside the mask. scikit-image's ``match_histograms``
    is not used because it has no mask argument and does not return the mapping, which is
    needed to recolour the pixels outside the mask consistently; a 256-entry lookup table
    per channel does both. The tables come from 256-bin histograms (the same CDFs as
    _quantile_map on the pixels, without sorting them) and cv2.LUT applies all three."""
    sel = _selection(source, reference, mask)
    if sel is None:
        return source.copy()
    s, r = source.reshape(-1, 3)[sel], reference.reshape(-1, 3)[sel]
    luts = np.empty((256, 1, 3), np.uint8)
    for c in range(3):
        luts[:, 0, c] = _to_uint8(_histogram_map(np.bincount(s[:, c], minlength=256),
                                                 np.bincount(r[:, c], minlength=256)))
    return cv2.LUT(source, luts)


def _histogram_map(src_counts: np.ndarray, ref_counts: np.ndarray) -> np.ndarray:
    """_quantile_map(arange(256), src, ref) from the two 256-bin histograms of src and ref."""
    sv, rv = np.flatnonzero(src_counts), np.flatnonzero(ref_counts)
    sc, rc = src_counts[sv], ref_counts[rv]
    s_cdf = (np.cumsum(sc) - 0.5 * sc) / sc.sum()
    r_cdf = (np.cumsum(rc) - 0.5 * rc) / rc.sum()
    return np.interp(np.arange(256, dtype=np.float64), sv, np.interp(s_cdf, r_cdf, rv))


COLOUR_MODES: dict[str, ColourFn] = {
    "none": none, "rct": rct, "lct": lct, "idt": idt, "sot": sot, "hist": hist,
}


def transfer(mode: str, source: np.ndarray, reference: np.ndarray,
             mask: np.ndarray | None = None) -> np.ndarray:
    """Apply the colour-transfer mode named ``mode`` (a key of COLOUR_MODES)."""
    fn = COLOUR_MODES.get(mode)
    if fn is None:
        raise UserError(f"unknown colour transfer mode {mode!r}; "
                        f"choose from {', '.join(COLOUR_MODES)}")
    return fn(source, reference, mask)
