"""The refiner: learned colour transfer and 2x or 4x upscaling of the decoder's face.

Inputs are the generated face at R, the destination face at R (the colour reference) and the
face mask at R. The reference enters the network only as statistics inside the mask: its
per-channel spread (with ``match_contrast``) and its mean over a coarse grid
(``reference_grid`` cells per side). That choice:

- the reference at convert time is another person's face. Anything spatial taken from it
  carries that person's features into the swap: measured on person_b -> person_a, a 4x4 grid
  of means (32 px cells at R = 128) cost 0.024 of identity distance against a single cell
  (0.497 vs 0.473; rct 0.483), because the light and shadow of B's brows, eye sockets and
  cheekbones are B's face. One cell (the default for new refiners) carries only the global
  colour, as rct's statistics do; a finer grid follows uneven light better and is there for
  footage lit from one side;
- the spread (per-channel standard deviation, the other half of rct's statistics) matches
  the contrast: the face is scaled about its own mean by the ratio of the two spreads (held
  within 0.5..2, so a flat decoder output is not blown up into noise);
- averaging inside the mask keeps hair and background out of the colour estimate, as rct's
  masked statistics do.

The face is pooled onto the same grid with the same mask; the difference of the two
grids, spread smoothly over the face, is the shift that makes every cell's mean colour match
the reference. The output is a bicubic upscale (2x or 4x) of the shifted face plus a learned
correction (global residual): an untrained refiner is already an upscaler with a mean-colour
(and contrast) transfer, and training only has to learn what that misses (saturation, hue,
the blur). The shift is also an input, so the correction can scale it.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
from keras import layers, ops

from intracoder.models.blocks import PACKAGE, ResidualBlock, Upscale
from intracoder.models.discriminator import build_discriminator
from intracoder.models.losses import (TV_WEIGHT, blurred_mask, dssim, dssim_windows, gan_terms,
                                      total_variation)
from intracoder.refiner.config import RefinerConfig

__all__ = ["RefinerConfig", "Refiner", "build_refiner", "build_network", "refiner_loss"]

_EPS = 1e-4
CONTRAST_RANGE = (0.5, 2.0)


def build_network(config: RefinerConfig) -> keras.Model:
    """The functional network: (face, reference, mask) at R -> face at scale x R, all in
    [0, 1]. Each factor of 2 is one pixel-shuffle stage; the trunk stays at R, where the
    compute is cheap, and the stages above it only draw the finer detail."""
    res, cell = config.resolution, config.resolution // config.reference_grid
    face = keras.Input((res, res, 3), name="face")
    reference = keras.Input((res, res, 3), name="reference")
    mask = keras.Input((res, res, 1), name="mask")
    pool = layers.AveragePooling2D(cell, name="pool")
    spread = layers.UpSampling2D(cell, interpolation="bilinear", name="spread")
    coverage = pool(mask)
    own = matched_contrast(face, reference, mask) if config.match_contrast else face
    # Masked means: sum(x * m) / sum(m) per cell; cells with no face get weight ~0 below.
    ref_grid = pool(reference * mask) / (coverage + _EPS)
    face_grid = pool(own * mask) / (coverage + _EPS)
    weight = ops.clip(coverage * 4.0, 0.0, 1.0)
    shift = spread((ref_grid - face_grid) * weight)
    shifted = layers.Add(name="shifted")([own, shift])
    x = layers.Concatenate(name="inputs")([own, shifted, shift, spread(ref_grid * weight),
                                           spread(weight), mask])
    x = layers.Conv2D(config.filters, 3, padding="same", name="head")(x)
    x = layers.LeakyReLU(negative_slope=0.2)(x)
    trunk = x
    for i in range(config.blocks):
        x = ResidualBlock(config.filters, name=f"res{i}")(x)
    x = layers.Add(name="trunk_skip")([x, trunk])
    for stage in range(config.scale.bit_length() - 1):
        x = Upscale(config.up_filters, name="up" if stage == 0 else f"up{stage}")(x)
    delta = layers.Conv2D(3, 3, padding="same", name="rgb")(x)
    base = layers.UpSampling2D(config.scale, interpolation=config.base, name="base")(shifted)
    out = layers.Add(name="out")([base, delta])
    return keras.Model([face, reference, mask], out, name="refiner_net")


def _masked_spread(x, mask):
    """Per-sample, per-channel (mean, standard deviation) of ``x`` inside ``mask``."""
    total = ops.sum(mask, axis=(1, 2), keepdims=True) + _EPS
    mean = ops.sum(x * mask, axis=(1, 2), keepdims=True) / total
    var = ops.sum(ops.square(x - mean) * mask, axis=(1, 2), keepdims=True) / total
    return mean, ops.sqrt(var + _EPS)


def matched_contrast(face, reference, mask):
    """``face`` scaled about its masked mean so that its masked per-channel spread is the
    reference's (the ratio held within CONTRAST_RANGE)."""
    face_mean, face_sd = _masked_spread(face, mask)
    _, ref_sd = _masked_spread(reference, mask)
    gain = ops.clip(ref_sd / face_sd, *CONTRAST_RANGE)
    return (face - face_mean) * gain + face_mean


def refiner_loss(target, pred, mask, config: RefinerConfig):
    """Per-sample loss at scale x R: masked L1 + DSSIM + L1 of the image gradients.

    The mask is DFL's blurred, slightly grown loss mask (losses.blurred_mask), so the
    feathered edge that blending mixes in is trained too. L1 rather than MSE because MSE's
    optimum over uncertain detail is the blurry average; the gradient term pushes further
    against blur, the usual failure of upscalers trained on pixel losses.
    """
    return masked_loss(*masked_faces(target, pred, mask, config), config)


def masked_faces(target, pred, mask, config: RefinerConfig):
    """(target, prediction) inside the loss mask, float32: what the pixel losses and the
    discriminator compare."""
    m = blurred_mask(ops.cast(mask, "float32"), config.resolution * config.scale)
    return ops.cast(target, "float32") * m, ops.cast(pred, "float32") * m


def masked_loss(t, p, config: RefinerConfig):
    """refiner_loss of faces already masked (masked_faces)."""
    res = config.resolution * config.scale
    loss = config.l1_weight * ops.mean(ops.abs(t - p), axis=(1, 2, 3))
    for size, weight in dssim_windows(res, config.dssim_weight):
        loss = loss + weight * dssim(t, p, size)
    if config.gradient_weight:
        grad = ops.mean(ops.abs((t[:, 1:] - t[:, :-1]) - (p[:, 1:] - p[:, :-1])), axis=(1, 2, 3))
        grad = grad + ops.mean(ops.abs((t[:, :, 1:] - t[:, :, :-1])
                                       - (p[:, :, 1:] - p[:, :, :-1])), axis=(1, 2, 3))
        loss = loss + config.gradient_weight * grad
    return loss


@keras.saving.register_keras_serializable(package=PACKAGE)
class Refiner(keras.Model):
    """call((face, reference, mask)) -> face at scale x R.

    train_on_batch(x=(face, reference, mask), y=(target, target_mask) at scale x R) logs the
    loss. Weights live in ``net`` so they save and load as one .weights.h5 file; with
    ``gan_power`` > 0 a ``discriminator`` trains beside it (its own optimiser: compile with
    training/optimizers.GanOptimizer) and is saved in a file of its own.
    """

    def __init__(self, config: RefinerConfig, discriminator: bool = True,
                 **kwargs: Any) -> None:
        """``discriminator`` False: without it even when the recipe has one (convert)."""
        super().__init__(**kwargs)
        self.config = config
        self.net = build_network(config)
        self.discriminator = (build_discriminator(config.resolution * config.scale,
                                                  base_ch=config.gan_dims)
                              if config.gan_power and discriminator else None)
        self.built = True

    def call(self, inputs, training: bool = False):
        return self.net(list(inputs), training=training)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        if sample_weight is not None:
            raise ValueError("Refiner does not support sample weights")
        real, fake = masked_faces(y[0], y_pred, y[1], self.config)
        loss = ops.mean(masked_loss(real, fake, self.config))
        if self.discriminator is None:
            return loss
        # The masked faces are judged, as the pixel losses compare them; the discriminator's
        # own loss is part of the total, and gan_terms keeps each net on its own gradient.
        _, generator, loss_d = gan_terms(self.discriminator, real, fake)
        tv = TV_WEIGHT * ops.mean(total_variation(fake))
        return loss + self.config.gan_power * generator + tv + loss_d

    def refine(self, faces: np.ndarray, references: np.ndarray, masks: np.ndarray,
               batch_size: int = 16) -> np.ndarray:
        """float32 NHWC in [0, 1] (masks NHW1) at R -> float32 NHWC at scale x R, clipped to
        [0, 1].

        Short batches are padded to a power of two, as SwapModel.decode does, so only a few
        batch shapes are ever traced.
        """
        res = self.config.resolution
        if faces.ndim != 4 or faces.shape[1:] != (res, res, 3):
            raise ValueError(f"faces must be N x {res} x {res} x 3, got {faces.shape}")
        out_res = res * self.config.scale
        outs = [np.zeros((0, out_res, out_res, 3), np.float32)]
        for start in range(0, len(faces), batch_size):
            parts = [np.asarray(a[start:start + batch_size], np.float32)
                     for a in (faces, references, masks)]
            n = len(parts[0])
            padded = min(batch_size, 1 << (n - 1).bit_length())
            if padded > n:
                parts = [np.concatenate([p, np.zeros((padded - n,) + p.shape[1:], np.float32)])
                         for p in parts]
            out = self.net.predict_on_batch(parts)
            outs.append(np.asarray(out, np.float32)[:n])
        return np.clip(np.concatenate(outs), 0.0, 1.0)

    def get_config(self) -> dict:
        return {"name": self.name, "trainable": self.trainable, "config": self.config.to_dict()}

    @classmethod
    def from_config(cls, config: dict, custom_objects: dict | None = None) -> Refiner:
        config = dict(config)
        return cls(RefinerConfig(**config.pop("config")), **config)


def build_refiner(config: RefinerConfig, discriminator: bool = True) -> Refiner:
    return Refiner(config, discriminator, name="refiner")
