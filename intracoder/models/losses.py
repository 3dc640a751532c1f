"""DeepFaceLab's SAEHD reconstruction loss in keras.ops: masked DSSIM + MSE + mask MSE.

DFL (models/Model_SAEHD/Model.py): below 256 px 10*DSSIM(kernel res/11.6) + 10*MSE; at
256 px and above the DSSIM weight is split over two window sizes (res/11.6 and res/23.2) so
both coarse structure and fine texture are rewarded; plus 10*MSE on the mask. Images are
multiplied by a blurred, dilated target mask first, so the background costs nothing and the
decoder spends its capacity on the face. Eyes/mouth priority adds a heavy L1 term inside
those regions (DFL uses 300), because that is where viewers notice a swap.
"""

from __future__ import annotations

import numpy as np
from keras import ops

from intracoder.models.config import LossConfig

SSIM_SIGMA = 1.5  # DFL's and tf.image.ssim's Gaussian window sigma, for every window size


def _odd(k: float) -> int:
    k = max(3, int(k))
    return k if k % 2 else k + 1


def dssim_windows(resolution: int, dssim_weight: float = 10.0) -> list[tuple[int, float]]:
    """(window size, weight) pairs for DSSIM at this resolution, DFL's schedule."""
    if resolution < 256:
        return [(_odd(resolution / 11.6), dssim_weight)]
    return [(_odd(resolution / 11.6), dssim_weight / 2),
            (_odd(resolution / 23.2), dssim_weight / 2)]


def _gaussian_1d(size: int, sigma: float) -> np.ndarray:
    x = np.arange(size, dtype=np.float64) - (size - 1) / 2
    g = np.exp(-0.5 * (x / sigma) ** 2)
    return (g / g.sum()).astype(np.float32)


def _band(n: int, size: int, sigma: float, padding: str) -> np.ndarray:
    """The 1-D Gaussian filter over n samples as an (n_out, n) banded matrix; 'same' rows
    are cut at the border, which equals zero padding."""
    g = _gaussian_1d(size, sigma)
    if padding == "valid":
        band = np.zeros((n - size + 1, n), np.float32)
        for i in range(n - size + 1):
            band[i, i:i + size] = g
        return band
    r = size // 2
    band = np.zeros((n, n), np.float32)
    for i in range(n):
        lo, hi = max(0, i - r), min(n, i + r + 1)
        band[i, lo:hi] = g[lo - (i - r):hi - (i - r)]
    return band


def gaussian_filter(x, size: int, sigma: float, padding: str = "valid"):
    """Separable Gaussian filter of an NHWC tensor, per channel, as two products with banded
    matrices. Depthwise convs do the same job, but XLA on CPU runs them and their gradient
    about 20x slower (jax: 0.57 s vs 0.025 s for DSSIM's blur at 64 px, batch 16), and a
    matmul is fast on every backend and device."""
    _, h, w, _ = x.shape
    bh = ops.convert_to_tensor(_band(h, size, sigma, padding))
    bw = ops.convert_to_tensor(_band(w, size, sigma, padding))
    x = ops.einsum("ih,nhwc->niwc", bh, x)
    return ops.einsum("jw,niwc->nijc", bw, x)


def dssim(y_true, y_pred, filter_size: int, filter_sigma: float = SSIM_SIGMA,
          max_val: float = 1.0):
    """Per-sample structural dissimilarity (1 - SSIM) / 2 of NHWC images, shape (N,).

    Same constants and valid-padded Gaussian window as tf.image.ssim / DFL's nn.dssim.
    """
    c1 = (0.01 * max_val) ** 2
    c2 = (0.03 * max_val) ** 2
    # One filter pass over all five moments instead of five separate passes.
    stacked = ops.concatenate(
        [y_true, y_pred, y_true * y_true, y_pred * y_pred, y_true * y_pred], axis=-1)
    blurred = gaussian_filter(stacked, filter_size, filter_sigma)
    mu_t, mu_p, e_tt, e_pp, e_tp = ops.split(blurred, 5, axis=-1)
    mu_tp = mu_t * mu_p
    mu_tt = mu_t * mu_t
    mu_pp = mu_p * mu_p
    luminance = (2.0 * mu_tp + c1) / (mu_tt + mu_pp + c1)
    contrast_structure = (2.0 * (e_tp - mu_tp) + c2) / ((e_tt - mu_tt) + (e_pp - mu_pp) + c2)
    ssim = ops.mean(luminance * contrast_structure, axis=(1, 2, 3))
    return (1.0 - ssim) / 2.0


def blurred_mask(mask, resolution: int):
    """DFL's loss mask: Gaussian blur with sigma res/32, then clip to [0, 0.5] and double,
    which grows the mask by about one sigma and softens its edge so the face border
    (hairline, jaw) is still learnt."""
    sigma = max(1, resolution // 32)
    blurred = gaussian_filter(mask, _odd(4 * sigma), float(sigma), padding="same")
    return ops.clip(blurred, 0.0, 0.5) * 2.0


def reconstruction_loss(target, pred, target_mask, pred_mask, resolution: int,
                        config: LossConfig, priority_mask=None):
    """Per-sample loss of one side (one decoder), shape (N,).

    target/pred NHWC in [0, 1]; target_mask/pred_mask NHW1 in [0, 1]; priority_mask NHW1
    (1 on eyes and mouth) is used only when config.eyes_mouth_priority is on.
    """
    target = ops.cast(target, "float32")
    pred = ops.cast(pred, "float32")
    target_mask = ops.cast(target_mask, "float32")
    pred_mask = ops.cast(pred_mask, "float32")
    if config.masked:
        m = blurred_mask(target_mask, resolution)
        t, p = target * m, pred * m
    else:
        t, p = target, pred
    loss = config.mse_weight * ops.mean(ops.square(t - p), axis=(1, 2, 3))
    for size, weight in dssim_windows(resolution, config.dssim_weight):
        loss = loss + weight * dssim(t, p, size)
    loss = loss + config.mask_weight * ops.mean(ops.square(target_mask - pred_mask),
                                                axis=(1, 2, 3))
    if config.eyes_mouth_priority and priority_mask is not None:
        em = ops.cast(priority_mask, "float32")
        loss = loss + config.priority_weight * ops.mean(ops.abs(target * em - pred * em),
                                                        axis=(1, 2, 3))
    return loss


# DFL's weight of the total-variation term that goes with the GAN (on summed squares).
TV_WEIGHT = 1e-6


def total_variation(images):
    """Per-sample sum of squared differences between neighbouring pixels, shape (N,)."""
    images = ops.cast(images, "float32")
    dy = images[:, 1:, :, :] - images[:, :-1, :, :]
    dx = images[:, :, 1:, :] - images[:, :, :-1, :]
    return ops.sum(ops.square(dy), axis=(1, 2, 3)) + ops.sum(ops.square(dx), axis=(1, 2, 3))


def _logit_loss(label: float, logits):
    """Mean sigmoid cross-entropy of ``logits`` against a constant label."""
    logits = ops.cast(logits, "float32")
    return ops.mean(ops.binary_crossentropy(ops.full_like(logits, label), logits,
                                            from_logits=True))


def gan_terms(discriminator, real, fake):
    """(adversarial, generator term, discriminator loss) of one step, with DFL's weighting
    of the two heads (centre and per-pixel logits, half each in the discriminator loss).

    One loss trains both nets, so the terms are built for their gradients: the discriminator
    loss sees ``fake`` through a stop-gradient (it cannot reach the generator), and the
    generator term is ``adversarial`` minus the same value computed on the stopped fakes.
    That difference is zero, its gradient reaches the generator whole, and its gradient
    in the discriminator's weights cancels (the same net at the same inputs), so the
    discriminator is trained by its own loss only. ``adversarial`` is for logging."""
    n = ops.shape(real)[0]
    centre, pixels = discriminator(ops.concatenate([real, ops.stop_gradient(fake)], axis=0))
    real_c, fake_c, real_p, fake_p = centre[:n], centre[n:], pixels[:n], pixels[n:]
    d_loss = 0.5 * (_logit_loss(1.0, real_c) + _logit_loss(0.0, fake_c)) \
        + 0.5 * (_logit_loss(1.0, real_p) + _logit_loss(0.0, fake_p))
    gen_c, gen_p = discriminator(fake)
    adversarial = _logit_loss(1.0, gen_c) + _logit_loss(1.0, gen_p)
    seen = _logit_loss(1.0, fake_c) + _logit_loss(1.0, fake_p)
    return adversarial, adversarial - seen, d_loss
