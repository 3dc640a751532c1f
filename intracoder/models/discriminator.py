"""The patch discriminator of the GAN term: a small U-Net that judges each patch of a face.

After DeepFaceLab's UNetPatchDiscriminator (core/leras/models/PatchDiscriminator.py, from
"A U-Net Based Discriminator for GANs", Schonfeld et al. 2020): 3x3 convolutions chosen so
that one bottleneck logit sees about ``patch`` pixels (DFL's default patch is res/8), then
transposed convolutions with skip connections back to the input resolution, so the net also
gives one logit per pixel. The bottleneck logits judge texture patch by patch; the per-pixel
logits judge where the detail sits. Both heads compute in float32.
"""

from __future__ import annotations

import itertools

import keras
from keras import layers

from intracoder.models.blocks import Conv2D

MAX_LAYERS = 6
MAX_CHANNELS = 512


def receptive_field(strides: tuple[int, ...]) -> int:
    """Pixels one output of a stack of 3x3 convolutions with these strides sees."""
    field, jump = 1, 1
    for stride in strides:
        field += 2 * jump
        jump *= stride
    return field


def patch_strides(patch: int) -> tuple[int, ...]:
    """Strides (1 or 2) of the shortest 3x3 stack whose receptive field is closest to
    ``patch``; among equals the one that downsamples most, which is the cheapest."""
    best: tuple | None = None
    for count in range(1, MAX_LAYERS + 1):
        for strides in itertools.product((2, 1), repeat=count):
            rank = (abs(receptive_field(strides) - patch), count, -sum(strides))
            if best is None or rank < best[0]:
                best = (rank, strides)
    return best[1]


def default_patch(resolution: int) -> int:
    return max(3, resolution // 8)


def build_discriminator(resolution: int, patch: int | None = None, base_ch: int = 16,
                        name: str = "discriminator") -> keras.Model:
    """Faces (N, res, res, 3) -> (centre logits (N, r, r, 1), pixel logits (N, res, res, 1)),
    r = res / 2**(number of stride-2 layers)."""
    strides = patch_strides(patch or default_patch(resolution))
    chs = [min(base_ch * 2 ** i, MAX_CHANNELS) for i in range(len(strides) + 1)]
    inp = keras.Input((resolution, resolution, 3), name="face")
    x = Conv2D(chs[0], 1, name="in_conv")(inp)
    skips = []
    for i, stride in enumerate(strides):
        skips.append(x)
        x = Conv2D(chs[i + 1], 3, strides=stride, padding="same", name=f"down{i}")(x)
        x = layers.LeakyReLU(0.2)(x)
    centre = layers.Conv2D(1, 1, name="centre_logits", dtype="float32")(x)
    x = layers.LeakyReLU(0.2)(Conv2D(chs[-1], 1, name="centre_conv")(x))
    for i in reversed(range(len(strides))):
        x = layers.Conv2DTranspose(chs[i], 3, strides=strides[i], padding="same",
                                   name=f"up{i}")(x)
        x = layers.LeakyReLU(0.2)(x)
        x = layers.Concatenate(name=f"skip{i}")([x, skips[i]])
    pixels = layers.Conv2D(1, 1, name="pixel_logits", dtype="float32")(x)
    return keras.Model(inp, [centre, pixels], name=name)
