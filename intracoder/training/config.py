"""The one config of a training run, and how a stored config meets new flags on resume.

Every field is a ``train`` option (intracoder/config.py maps them one to one). Fields marked
``run`` say where the data is, when to stop and how often to save or draw: they may change
from one run to the next. The phase switches (training/phase.py: random warp, learning-rate
dropout, the GAN's power, the sharpening share) are part of the recipe but may change on resume; the change
is recorded. All other fields define the model or the training recipe; they are frozen into
the model folder, and on resume a flag that contradicts them is an error, because silently
ignoring it would train something other than what the user asked for.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from dataclasses import dataclass, field
from typing import Any

from intracoder.errors import UserError
from intracoder.training.backend import BACKENDS
from intracoder.models.config import ARCHS, PRESETS, LossConfig, ModelConfig
from intracoder.models.config import preset as model_preset
from intracoder.training.phase import PHASE_FIELDS

OPTIMIZERS = ("adam", "adamw", "lion", "rmsprop")  # training/optimizers.py builds them
COLOUR_MODES = ("none", "rct", "lct", "idt", "sot", "hist")
# The recipe each preset trains with when the flags leave it open (measured: docs/quality.md).
# quick: Adam beat AdamW, Lion and RMSprop in 5-minute screens, and a peak of 1e-3 beat 5e-4
# at 15 minutes (identity 0.355 -> 0.338, dlib 5-point expression 0.047 -> 0.043). Batch:
# at a budget of minutes, more updates beat larger batches: 16 lost to 8 at 5 minutes, and on
# a CPU without bf16 (1000-2300 iterations in 15 minutes) 4 beat 8 on identity, expression
# and flicker in both directions, and beat 2 (identity 0.430 vs 0.483 vs 0.477 person_b ->
# person_a); DFL's Quick96 trains at 4 too.
# gan_dims: DFL's 16 for the GPU presets. quick's decoder is a quarter as wide, and with a
# discriminator of 16 its GAN phase ran at 24 faces/s against 60 without (2 cores); 8 has a
# quarter of those FLOPs.
PRESET_RECIPES: dict[str, dict[str, Any]] = {
    "quick": {"batch_size": 4, "lr": 1e-3, "optimizer": "adam", "gan_dims": 8},
    "df128": {"batch_size": 8, "lr": 5e-5, "optimizer": "adam", "gan_dims": 16},
    "df256": {"batch_size": 8, "lr": 5e-5, "optimizer": "adam", "gan_dims": 16},
}

AUTO = "auto"  # --batch-size auto: found by trying (training/autobatch.py)
MODEL_FIELDS = tuple(f.name for f in dataclasses.fields(ModelConfig))
LOSS_FIELDS = tuple(f.name for f in dataclasses.fields(LossConfig))
_LOSS = LossConfig()


def _batch_size(value: str) -> int | str:
    if value == AUTO:
        return AUTO
    try:
        return int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r}: a number of faces, or auto") from None


def _run(help_: str, **extra: Any) -> dict:
    return {"help": help_, "run": True, **extra}


def _recipe(help_: str, **extra: Any) -> dict:
    return {"help": help_, **extra}


@dataclass(frozen=True)
class TrainConfig:
    # Where, when to stop, how often to save: may change between runs.
    a: str | None = field(default=None, metadata=_run("folder of extracted faces of person A"))
    b: str | None = field(default=None, metadata=_run("folder of extracted faces of person B"))
    model: str | None = field(default=None, metadata=_run(
        "model folder: created on the first run, resumed on later runs"))
    faces: list[str] | None = field(default=None, metadata=_run(
        "pretrain: folders of extracted faces of many people, all drawn from by both sides"))
    from_model: str | None = field(default=None, metadata=_run(
        "start a new model from this (pre)trained model's weights; its architecture is used",
        flag="--from"))
    iterations: int | None = field(default=None, metadata=_run(
        "stop when the model reaches this many iterations in total"))
    minutes: float | None = field(default=None, metadata=_run("stop after this many minutes"))
    resume: bool = field(default=False, metadata=_run(
        "require an existing model folder instead of creating one"))
    backend: str = field(default="auto", metadata=_run(
        "Keras backend (or set KERAS_BACKEND); auto: JAX when a GPU is visible to it, else "
        "TensorFlow", choices=list(BACKENDS)))
    devices: str = field(default="1", metadata=_run(
        "train data-parallel over this many devices of each process, or all (JAX backend "
        "only: Keras 3.15's torch and TensorFlow backends cannot distribute this model); "
        "--batch-size is per device, the peak rate scales with the square root of the count"))
    pipeline: str = field(default="auto", metadata=_run(
        "how batches are augmented: worker threads (no start-up, share one core's GIL) or "
        "worker processes (scale with cores); auto: processes when a GPU is visible",
        choices=["auto", "threads", "processes"]))
    workers: int | None = field(default=None, metadata=_run(
        "augmenting threads or processes; None: 2 threads, or one process per core but one"))
    prefetch: int = field(default=4, metadata=_run("batches prepared ahead of the model"))
    autosave_minutes: float = field(default=10.0, metadata=_run(
        "save every this many minutes (0: only when training stops)"))
    save_every: int = field(default=0, metadata=_run(
        "also save every this many iterations (0: off)"))
    keep_backups: int = field(default=3, metadata=_run("previous checkpoints to keep"))
    preview_every: int = field(default=250, metadata=_run(
        "iterations between preview.png / loss.png updates (0: off)"))
    log_every: int = field(default=10, metadata=_run(
        "iterations averaged into one loss-history point"))
    rollback_every: int = field(default=100, metadata=_run(
        "iterations between in-memory copies of good weights, the NaN-rollback target"))
    tensorboard: bool = field(default=False, metadata=_run(
        "also write TensorBoard scalars to MODEL/logs (needs TensorFlow installed)"))
    mixed_precision: str = field(default="auto", metadata=_run(
        "compute in bf16 (GPU, or a CPU with AVX512-BF16/AMX) or fp16 (GPU); weights, "
        "loss and output heads stay float32; auto: bf16 on a GPU, float32 on a CPU",
        choices=["auto", "off", "bf16", "fp16"]))

    # The recipe: frozen into the model folder on the first run.
    preset: str = field(default="df128", metadata=_recipe(
        "model size preset", choices=sorted(PRESETS)))
    arch: str | None = field(default=None, metadata=_recipe(
        "model layout; None: the preset's", choices=list(ARCHS)))
    resolution: int | None = field(default=None, metadata=_recipe(
        "face size in and out, a multiple of 16; None: the preset's"))
    e_dims: int | None = field(default=None, metadata=_recipe(
        "encoder base width; None: the preset's"))
    ae_dims: int | None = field(default=None, metadata=_recipe(
        "bottleneck width; None: the preset's"))
    d_dims: int | None = field(default=None, metadata=_recipe(
        "decoder base width; None: the preset's"))
    d_mask_dims: int | None = field(default=None, metadata=_recipe(
        "mask branch base width; None: the preset's"))
    batch_size: int | str | None = field(default=None, metadata=_recipe(
        "faces per side per iteration and device; auto: the largest that fits on the GPU "
        "(the preset's on a CPU); None: the preset's", type=_batch_size))
    optimizer: str | None = field(default=None, metadata=_recipe(
        "optimiser; None: the preset's", choices=sorted(OPTIMIZERS)))
    lr: float | None = field(default=None, metadata=_recipe(
        "peak learning rate; None: the preset's"))
    lr_floor: float = field(default=0.1, metadata=_recipe(
        "with --iterations or --minutes the rate decays (cosine) to this fraction of the "
        "peak exactly when the budget ends"))
    warmup: int = field(default=100, metadata=_recipe(
        "iterations of linear learning-rate warm-up"))
    lr_dropout: float = field(default=1.0, metadata=_recipe(
        "share of weights updated each step (DFL's learning-rate dropout: 0.3; 1: off); "
        "may change on resume"))
    sharpen_last: float = field(default=0.0, metadata=_recipe(
        "with --iterations or --minutes: train the last share of the budget with the random "
        "warp off and learning-rate dropout 0.3, to finish sharp (0: off)"))
    gan_power: float = field(default=0.0, metadata=_recipe(
        "weight of a patch-GAN term on both reconstructions (DFL: 0.1 typical; 0: off); with "
        "--sharpen-last only in the sharpening phase; may change on resume"))
    gan_dims: int | None = field(default=None, metadata=_recipe(
        "base width of the GAN's discriminator (DFL: 16); None: the preset's"))
    clipnorm: float = field(default=0.0, metadata=_recipe(
        "clip each gradient to this norm (0: off)"))
    dssim_weight: float = field(default=_LOSS.dssim_weight, metadata=_recipe("DSSIM weight"))
    mse_weight: float = field(default=_LOSS.mse_weight, metadata=_recipe("pixel MSE weight"))
    mask_weight: float = field(default=_LOSS.mask_weight, metadata=_recipe("mask MSE weight"))
    eyes_mouth_priority: bool = field(default=_LOSS.eyes_mouth_priority, metadata=_recipe(
        "extra L1 weight inside eye and mouth hulls drawn from the landmarks"))
    priority_weight: float = field(default=_LOSS.priority_weight, metadata=_recipe(
        "weight of the eyes/mouth term"))
    masked: bool = field(default=_LOSS.masked, metadata=_recipe(
        "compare faces only inside the face mask"))
    from_reset: str = field(default="inter", metadata=_recipe(
        "with --from: the parts trained afresh instead of copied (inter: DFL's choice, the "
        "code that tells the identities apart; none: copy everything)",
        choices=["inter", "none"]))
    pretrain: bool = field(default=False, metadata=_recipe(
        "a pretrained model (set by `intracoder pretrain`)", cli=False))
    seed: int = field(default=0, metadata=_recipe("seed of batch order and augmentation"))
    held_out_every: int = field(default=20, metadata=_recipe(
        "every Nth face (by name) is kept out of training, for evaluate (0: none)"))
    rotation: float = field(default=10.0, metadata=_recipe("random rotation, +- degrees"))
    scale: float = field(default=0.05, metadata=_recipe("random scale, +- fraction"))
    shift: float = field(default=0.05, metadata=_recipe("random shift, +- fraction of size"))
    random_warp: bool = field(default=True, metadata=_recipe(
        "DFL random grid warp of the input (not the target); may change on resume"))
    warp_std: float = field(default=0.24, metadata=_recipe(
        "warp control-point spread, in grid cells (DFL: 0.24)"))
    flip: float = field(default=0.0, metadata=_recipe("probability of a horizontal flip"))
    brightness: float = field(default=0.2, metadata=_recipe("brightness jitter, +- fraction"))
    contrast: float = field(default=0.2, metadata=_recipe("contrast jitter, +- fraction"))
    saturation: float = field(default=0.2, metadata=_recipe("saturation jitter, +- fraction"))
    hue: float = field(default=0.03, metadata=_recipe("hue jitter, +- fraction of the circle"))
    random_hsv_power: float = field(default=0.0, metadata=_recipe(
        "random hue/saturation/value shift of the input only (DFL: 0.05; 0: off)"))
    uniform_yaw: bool = field(default=False, metadata=_recipe(
        "draw faces evenly over yaw bins, so rare poses train as often as frontal ones"))
    ct_mode: str = field(default="none", metadata=_recipe(
        "colour-transfer each B face to a random A face before augmentation, so B's "
        "decoder learns A's lighting", choices=list(COLOUR_MODES)))

    def __post_init__(self) -> None:
        def check(ok: bool, message: str) -> None:
            if not ok:
                raise UserError(message)

        check(self.batch_size in (None, AUTO) or isinstance(self.batch_size, int)
              and self.batch_size >= 1, "--batch-size must be at least 1, or auto")
        check(self.iterations is None or self.iterations >= 0, "--iterations must be >= 0")
        check(self.minutes is None or self.minutes > 0, "--minutes must be positive")
        check((self.workers is None or self.workers >= 1) and self.prefetch >= 1,
              "--workers and --prefetch must be >= 1")
        check(min(self.autosave_minutes, self.save_every, self.keep_backups) >= 0,
              "--autosave-minutes, --save-every and --keep-backups must be >= 0")
        check(self.preview_every >= 0 and self.log_every >= 1 and self.rollback_every >= 1,
              "--preview-every must be >= 0, --log-every and --rollback-every >= 1")
        check((self.lr is None or self.lr > 0) and self.clipnorm >= 0,
              "--lr must be positive and --clipnorm >= 0")
        check(0 <= self.lr_floor <= 1 and self.warmup >= 0,
              "--lr-floor must be within 0..1 and --warmup >= 0")
        check(0 < self.lr_dropout <= 1, "--lr-dropout is the share of weights updated, 0..1")
        check(0 <= self.sharpen_last < 1, "--sharpen-last is a share of the budget, 0..1")
        check(self.gan_dims is None or self.gan_dims >= 1, "--gan-dims must be at least 1")
        check(0 <= self.gan_power <= 10, "--gan-power must be within 0..10 (DFL: 0.1 typical)")
        check(0 <= self.random_hsv_power <= 0.5, "--random-hsv-power must be within 0..0.5")
        check(0 <= self.rotation <= 180, "--rotation must be within 0..180 degrees")
        check(0 <= self.scale < 1 and 0 <= self.shift < 0.5,
              "--scale must be within 0..1 and --shift within 0..0.5")
        check(0 <= self.flip <= 1, "--flip is a probability, 0..1")
        check(self.warp_std >= 0, "--warp-std must be >= 0")
        check(all(0 <= v < 1 for v in (self.brightness, self.contrast, self.saturation)),
              "--brightness, --contrast and --saturation must be within 0..1")
        check(0 <= self.hue <= 0.5, "--hue must be within 0..0.5")

    def augment_workers(self, pipeline: str) -> int:
        """--workers, or its default for ``pipeline`` ('threads' or 'processes')."""
        if self.workers is not None:
            return self.workers
        return 2 if pipeline == "threads" else max(1, (os.cpu_count() or 2) - 1)

    def model_config(self) -> ModelConfig:
        overrides = {k: getattr(self, k) for k in MODEL_FIELDS if getattr(self, k) is not None}
        return model_preset(self.preset, **overrides)

    def resolved(self) -> TrainConfig:
        """This config with the preset's recipe filled in where a flag left it open."""
        recipe = PRESET_RECIPES.get(self.preset, PRESET_RECIPES["df128"])
        return dataclasses.replace(self, **{k: v for k, v in recipe.items()
                                            if getattr(self, k) is None})

    def loss_config(self) -> LossConfig:
        return LossConfig(**{k: getattr(self, k) for k in LOSS_FIELDS})

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


RUN_FIELDS = tuple(f.name for f in dataclasses.fields(TrainConfig) if f.metadata.get("run"))


def _flag(name: str, value: Any) -> str:
    flag = "--" + name.replace("_", "-")
    if isinstance(value, bool):
        return flag if value else "--no-" + name.replace("_", "-")
    return f"{flag} {value}"


def resume_config(stored: dict, model_config: dict, new: TrainConfig,
                  given: dict[str, Any]) -> TrainConfig:
    """The config a resumed run trains with: the stored recipe, this run's run fields.

    ``given`` holds only the options typed on this command line, so a default never
    counts as a contradiction; a model dimension is compared with the resolved value,
    so ``--ae-dims 256`` on a df128 model (whose ae_dims is 256) is fine.
    """
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    old = TrainConfig(**{k: v for k, v in stored.items() if k in known})
    conflicts = []
    for name, value in given.items():
        if name in RUN_FIELDS or name in PHASE_FIELDS or (name, value) == ("batch_size", AUTO):
            continue
        before = model_config.get(name) if name in MODEL_FIELDS else getattr(old, name)
        if value != before:
            conflicts.append((name, before, value))
    if conflicts:
        was = " ".join(_flag(n, b) for n, b, _ in conflicts)
        now = " ".join(_flag(n, v) for n, _, v in conflicts)
        raise UserError(f"{new.model}: this model was trained with {was}, not {now}; "
                        "drop those options to resume it, or use a new model folder")
    run = {k: getattr(new, k) for k in RUN_FIELDS}
    run |= {k: getattr(new, k) for k in PHASE_FIELDS if k in given}
    for name in ("a", "b", "faces"):
        if run[name] is None:
            run[name] = getattr(old, name)
    return dataclasses.replace(old, **run)
