"""Self-supervised samples for the refiner: a clean face, and the face as a decoder returns it.

A decoder's output differs from the real face in three ways the refiner must undo: it is
soft (the autoencoder's bottleneck and pixel losses blur detail), its geometry is slightly
off, and its colours follow the training faces rather than the frame it is pasted into. The
degradation imitates each with albumentations: Gaussian blur, a small grid distortion, and
strong independent colour, brightness, contrast, hue and per-channel shifts. The reference
is the undegraded face, so the only way to get the colours right is to read them from it.

Synthetic blur is not the blur a decoder makes, and an upscaler trained on one learns to undo
that one only: measured on converted video, it added no sharpness over bicubic + rct. So the
input can be the decoder's own output instead (``generated``: the main model's reconstruction
of each face, made once before training), aligned with its target, with only the colour part
of the degradation added: the refiner then learns what this model's decoder loses.

Before degrading, every sample also gets a mild shared affine, flip and colour jitter (input,
reference and target alike): it multiplies a few hundred faces into many poses and skin tones,
so the network cannot get away with painting the faceset's average colour.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import albumentations as A
import cv2
import numpy as np

from intracoder.data.epochs import EpochOrders

_local = threading.local()  # albumentations transforms carry their own RNG: one per thread


@dataclass(frozen=True)
class Sample:
    """uint8 arrays: face, reference (RGB, R x R x 3), mask (R x R), target (sR x sR x 3 for
    the refiner's scale s), target_mask (sR x sR)."""

    face: np.ndarray
    reference: np.ndarray
    mask: np.ndarray
    target: np.ndarray
    target_mask: np.ndarray


def _degrader() -> A.Compose:
    if not hasattr(_local, "degrader"):
        _local.degrader = A.Compose([
            A.GaussianBlur(blur_limit=0, sigma_limit=(0.4, 1.3), p=0.9),
            A.GridDistortion(num_steps=4, distort_limit=(-0.06, 0.06),
                             border_mode=cv2.BORDER_REPLICATE, p=0.7),
            A.ColorJitter(brightness=(0.7, 1.3), contrast=(0.7, 1.3), saturation=(0.7, 1.3),
                          hue=(-0.05, 0.05), p=1.0),
            A.RGBShift(r_shift_limit=20, g_shift_limit=20, b_shift_limit=20, p=0.8),
        ])
    return _local.degrader


def _colour_degrader() -> A.Compose:
    """The colour part of ``_degrader``: what a decoder's output still needs after the blur."""
    if not hasattr(_local, "colour_degrader"):
        _local.colour_degrader = A.Compose(_degrader().transforms[2:])
    return _local.colour_degrader


def _shared_jitter() -> A.ColorJitter:
    if not hasattr(_local, "jitter"):
        _local.jitter = A.ColorJitter(brightness=(0.8, 1.2), contrast=(0.8, 1.2),
                                      saturation=(0.8, 1.2), hue=(-0.03, 0.03), p=1.0)
    return _local.jitter


def degrade(face: np.ndarray, seed: int, blur: bool = True) -> np.ndarray:
    """The face (uint8 RGB) as a decoder might return it (``blur`` off: its colours only);
    the same seed gives the same bytes."""
    degrader = _degrader() if blur else _colour_degrader()
    degrader.set_random_seed(seed)
    return degrader(image=face)["image"]


def _to_small(m: np.ndarray, scale: int) -> np.ndarray:
    """The 2x3 affine ``m`` of sR-pixel coordinates in R-pixel coordinates (pixel centres:
    x_R = (x_sR + 1/2) / s - 1/2)."""
    k, off = 1.0 / scale, 0.5 / scale - 0.5
    s = np.array([[k, 0.0, off], [0.0, k, off], [0.0, 0.0, 1.0]])
    return (s @ np.vstack([m, [0, 0, 1]]) @ np.linalg.inv(s))[:2]


def make_sample(image: np.ndarray, mask: np.ndarray, rng: np.random.Generator,
                augment: bool = True, generated: np.ndarray | None = None,
                scale: int = 2) -> Sample:
    """One training (or, with ``augment`` off, evaluation) sample from a clean crop of
    ``scale`` x R; ``generated`` (R, uint8 RGB): the decoder's output for this face, used as
    the input in place of a synthetic degradation and moved with the same affine and jitter."""
    size = image.shape[0]
    small = size // scale
    if augment:
        centre = (size - 1) / 2.0
        m = cv2.getRotationMatrix2D((centre, centre), float(rng.uniform(-5, 5)),
                                    float(rng.uniform(0.95, 1.05)))
        m[:, 2] += rng.uniform(-0.03, 0.03, 2) * size
        if rng.random() < 0.5:
            m = np.array([[-1.0, 0.0, size - 1.0], [0.0, 1.0, 0.0]]) @ np.vstack([m, [0, 0, 1]])
        image = cv2.warpAffine(image, m, (size, size), flags=cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_REPLICATE)
        mask = cv2.warpAffine(mask, m, (size, size), flags=cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        jitter = _shared_jitter()
        seed = int(rng.integers(2**31))
        jitter.set_random_seed(seed)
        image = jitter(image=image)["image"]
        if generated is not None:
            generated = cv2.warpAffine(generated, _to_small(m, scale), (small, small),
                                       flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
            jitter.set_random_seed(seed)
            generated = jitter(image=generated)["image"]
    # INTER_AREA: how the training faces are shrunk from their crops (data/dataset.py).
    reference = cv2.resize(image, (small, small), interpolation=cv2.INTER_AREA)
    small_mask = cv2.resize(mask, (small, small), interpolation=cv2.INTER_AREA)
    seed = int(rng.integers(2**31))
    face = degrade(reference, seed) if generated is None else degrade(generated, seed, False)
    return Sample(face, reference, small_mask, image, mask)


def _to_float(arrays: list[np.ndarray], channel: bool = False) -> np.ndarray:
    out = np.multiply(np.stack(arrays), np.float32(1 / 255), dtype=np.float32)
    return out[..., None] if channel else out


class RefinerDataset:
    """Batch i is x = (face, reference, mask) at R, y = (target, target_mask) at scale x R
    (the size of ``images``), float32
    in [0, 1], RGB. Like PairDataset, a batch is a pure function of (seed, i), so a resumed
    run sees the batches an uninterrupted one would, and Prefetcher can build them."""

    def __init__(self, images: np.ndarray, masks: np.ndarray, batch_size: int, seed: int = 0,
                 generated: np.ndarray | None = None, scale: int = 2):
        """``generated``: the decoder's output for each face (make_sample), or None."""
        if len(images) == 0:
            raise ValueError("the refiner needs at least one training face")
        if generated is not None and len(generated) != len(images):
            raise ValueError(f"{len(images)} faces but {len(generated)} decoder outputs")
        self.images, self.masks, self.generated = images, masks, generated
        self.batch_size, self.seed, self.scale = batch_size, seed, scale
        self._orders = EpochOrders((seed,))

    def _order(self, epoch: int) -> np.ndarray:
        return self._orders.order((epoch,), len(self.images))

    def __getitem__(self, iteration: int):
        n, first = len(self.images), iteration * self.batch_size
        rng = np.random.default_rng([self.seed, iteration, 7])
        samples = [make_sample(self.images[i], self.masks[i], rng, scale=self.scale,
                               generated=None if self.generated is None else self.generated[i])
                   for i in (int(self._order(k // n)[k % n])
                             for k in range(first, first + self.batch_size))]
        return batch_arrays(samples)


def batch_arrays(samples: list[Sample]):
    """Samples as the (x, y) float batch Refiner.train_on_batch takes."""
    x = (_to_float([s.face for s in samples]), _to_float([s.reference for s in samples]),
         _to_float([s.mask for s in samples], channel=True))
    y = (_to_float([s.target for s in samples]),
         _to_float([s.target_mask for s in samples], channel=True))
    return x, y
