"""The refiner's settings, Keras-free so the command line can list them without loading a
backend: the network's shape and loss weights (RefinerConfig, frozen into MODEL/refiner/),
and the options of ``train-refiner`` (RefinerTrainConfig).

As in training/config.py, fields marked ``run`` may change from one run to the next; the
others are the recipe, fixed on the first run.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from intracoder.errors import UserError

SCALES = (2, 4)  # upscale factors: one or two pixel-shuffle stages


@dataclass(frozen=True)
class RefinerConfig:
    """The network and its loss; models/refiner.py explains the choices."""

    resolution: int = 64  # input size R; the output is scale x R
    scale: int = 2  # 2 for refiners saved before the field existed; new ones: RefinerTrainConfig
    # The upscale the learned correction is added to. Bicubic is what convert's other colour
    # modes resize with, so an untrained refiner starts level with them, not blurrier;
    # bilinear for refiners saved before the field existed.
    base: str = "bilinear"
    filters: int = 32  # width of the residual trunk at R
    blocks: int = 4  # residual blocks at R
    up_filters: int = 24  # width after the pixel-shuffle upscale
    reference_grid: int = 4  # cells per side of the pooled colour reference
    # Match the reference's per-channel spread too; off for refiners saved before it existed.
    match_contrast: bool = False
    l1_weight: float = 10.0
    dssim_weight: float = 10.0
    gradient_weight: float = 5.0  # image-gradient L1, the term that penalises blur
    # Adversarial term: a patch discriminator (models/discriminator.py) of this base width
    # judges the output against the real faces; 0 = off. Pixel losses settle on the average
    # of the detail they cannot predict, which is blur; the discriminator penalises that.
    gan_power: float = 0.0
    gan_dims: int = 8

    def __post_init__(self) -> None:
        if min(self.filters, self.blocks, self.up_filters, self.reference_grid) < 1:
            raise UserError("refiner filters, blocks, up_filters and reference_grid must be >= 1")
        if self.resolution < 16 or self.resolution % self.reference_grid:
            raise UserError(f"refiner resolution {self.resolution} must be >= 16 and a "
                            f"multiple of the reference grid ({self.reference_grid})")
        if self.scale not in SCALES:
            raise UserError(f"refiner scale {self.scale} must be one of {SCALES}")
        if self.base not in ("bilinear", "bicubic"):
            raise UserError(f"refiner base {self.base!r} must be bilinear or bicubic")
        if not 0 <= self.gan_power <= 10 or self.gan_dims < 1:
            raise UserError("the refiner's --gan-power must be within 0..10 and --gan-dims >= 1")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _run(help_: str, **extra: Any) -> dict:
    return {"help": help_, "run": True, **extra}


@dataclass(frozen=True)
class RefinerTrainConfig:
    model: str | None = field(default=None, metadata=_run("model folder; the refiner goes "
                                                          "into MODEL/refiner/"))
    faces: str | None = field(default=None, metadata=_run(
        "faceset to train on (default: the main model's faceset of --side)"))
    minutes: float | None = field(default=None, metadata=_run("stop after this many minutes"))
    iterations: int | None = field(default=None, metadata=_run(
        "stop when the refiner reaches this many iterations in total"))
    eval: bool = field(default=False, metadata=_run(
        "score the refiner against bicubic + rct on the held-out faces and draw MODEL/"
        "refiner/eval.png (after training; alone when neither --minutes nor --iterations "
        "is given)"))
    workers: int = field(default=2, metadata=_run("threads that build batches"))
    prefetch: int = field(default=4, metadata=_run("batches prepared ahead of the model"))
    autosave_minutes: float = field(default=10.0, metadata=_run(
        "save every this many minutes (0: only when training stops)"))
    keep_backups: int = field(default=3, metadata=_run("previous checkpoints to keep"))
    log_every: int = field(default=10, metadata=_run("iterations per loss-history point"))
    rollback_every: int = field(default=100, metadata=_run(
        "iterations between in-memory copies of good weights, the NaN-rollback target"))

    side: str = field(default="b", metadata={"help": "the decoder the refiner follows (b for "
                                             "a2b)", "choices": ["a", "b"]})
    resolution: int | None = field(default=None, metadata={
        "help": "input size R (output scale x R); default: the main model's resolution"})
    scale: int | None = field(default=None, metadata={
        "help": "upscale factor: the refiner's output is this many times the model's faces; "
        "default 4 when the faces are cropped at 4R or more (extract's 256 px for a 64 px "
        "model: the output is then near the size a face is pasted at, so the net draws the "
        "detail rather than the final resize), else 2", "choices": list(SCALES)})
    filters: int = field(default=RefinerConfig.filters, metadata={"help": "trunk width"})
    blocks: int = field(default=RefinerConfig.blocks, metadata={"help": "residual blocks"})
    up_filters: int = field(default=RefinerConfig.up_filters, metadata={
        "help": "width after each 2x upscale"})
    gan_power: float = field(default=RefinerConfig.gan_power, metadata={
        "help": "weight of the adversarial term (a patch discriminator trained beside the "
        "refiner, saved with it); 0: pixel losses only"})
    gan_dims: int = field(default=RefinerConfig.gan_dims, metadata={
        "help": "base width of the refiner's discriminator"})
    # One cell: a finer grid carries the destination person's shading, i.e. their features,
    # into the swap (refiner/model.py).
    reference_grid: int = field(default=1, metadata={
        "help": "cells per side of the pooled colour reference (1: global colour only, as "
        "rct; 2-4 follow uneven light but carry some of the destination's features)"})
    match_contrast: bool = field(default=True, metadata={
        "help": "match the reference's per-channel contrast as well as its mean colour"})
    inputs: str = field(default="auto", metadata={
        "help": "what the refiner learns to sharpen: the main model's own decoder output of "
        "each face (decoder: the blur it will really meet) or synthetic degradations "
        "(synthetic); auto: decoder when the model folder holds a trained model",
        "choices": ["auto", "decoder", "synthetic"]})
    batch_size: int = field(default=8, metadata={"help": "faces per iteration"})
    lr: float = field(default=2e-4, metadata={"help": "Adam learning rate"})
    seed: int = field(default=0, metadata={"help": "seed of batch order and degradation"})

    def __post_init__(self) -> None:
        if self.batch_size < 1 or self.lr <= 0:
            raise UserError("--batch-size must be >= 1 and --lr positive")
        if self.minutes is not None and self.minutes <= 0:
            raise UserError("--minutes must be positive")
        if self.workers < 1 or self.prefetch < 1 or self.log_every < 1 or self.rollback_every < 1:
            raise UserError("--workers, --prefetch, --log-every, --rollback-every must be >= 1")

    def refiner_config(self, resolution: int) -> RefinerConfig:
        """The network of a new refiner (``scale`` already decided: see refiner_loop)."""
        return RefinerConfig(resolution=resolution, scale=self.scale or 2, base="bicubic",
                             filters=self.filters, blocks=self.blocks, up_filters=self.up_filters,
                             reference_grid=self.reference_grid,
                             match_contrast=self.match_contrast, gan_power=self.gan_power,
                             gan_dims=self.gan_dims)


RUN_FIELDS = tuple(f.name for f in dataclasses.fields(RefinerTrainConfig) if f.metadata.get("run"))
