"""The settings of `intracoder mask train`, mapped one to one onto its options."""

from __future__ import annotations

from dataclasses import dataclass, field

from intracoder.errors import UserError
from intracoder.models.segmenter_config import SIZES, SegmenterConfig


@dataclass(frozen=True)
class MaskTrainConfig:
    faces: list[str] = field(default_factory=list, metadata={
        "nargs": "+", "metavar": "DIR",
        "help": "faceset folders to learn from (their crops, hull masks and any labels)"})
    model: str | None = field(default=None, metadata={
        "help": "mask model folder: created on the first run, resumed after"})
    size: str = field(default="small", metadata={
        "choices": sorted(SIZES),
        "help": "small: 128 px, learns in CPU minutes; large: 256 px, XSeg-sized, for a GPU"})
    minutes: float | None = field(default=None, metadata={
        "help": "train this long, then save and stop (default 6 without --iterations)"})
    iterations: int | None = field(default=None, metadata={
        "help": "train this many more iterations, then save and stop"})
    batch: int = field(default=16, metadata={"help": "crops per iteration"})
    learning_rate: float = field(default=1e-3, metadata={"help": "Adam's step size"})
    occlude: float = field(default=0.75, metadata={
        "help": "share of training crops that get synthetic occluders pasted on them"})
    label_weight: float = field(default=3.0, metadata={
        "help": "loss weight of a crop labelled by hand against a synthetic one (propagated "
                "labels count half of it)"})
    refine_outline: bool = field(default=True, metadata={
        "help": "let the net's confident pixels redraw the hull's edge (a chin under a beard "
                "line, a forehead under a fringe) once it has learnt enough"})
    hold_out: int = field(default=10, metadata={
        "help": "every Nth crop is held out of training and scored at the end"})
    seed: int = field(default=0, metadata={"help": "seed of the sampling and the occluders"})
    save_every_minutes: float = field(default=2.0, metadata={"help": "autosave interval"})

    def segmenter(self) -> SegmenterConfig:
        return SIZES[self.size]

    def check(self) -> None:
        if not self.faces:
            raise UserError("mask train needs --faces DIR [DIR ...]")
        if not self.model:
            raise UserError("mask train needs --model MASKDIR")
        if self.size not in SIZES:
            raise UserError(f"--size must be one of {', '.join(sorted(SIZES))}, got {self.size!r}")
        if self.minutes is not None and self.minutes <= 0:
            raise UserError(f"--minutes must be positive, got {self.minutes}")
        if self.iterations is not None and self.iterations < 1:
            raise UserError(f"--iterations must be at least 1, got {self.iterations}")
        if not 1 <= self.batch <= 256:
            raise UserError(f"--batch must be 1..256, got {self.batch}")
        if not 0.0 <= self.occlude <= 1.0:
            raise UserError(f"--occlude is a share, 0..1, got {self.occlude}")
        if self.label_weight <= 0 or self.learning_rate <= 0:
            raise UserError("--label-weight and --learning-rate must be positive")
        if self.hold_out < 2:
            raise UserError(f"--hold-out must be at least 2, got {self.hold_out}")

    def budget(self) -> tuple[float | None, int | None]:
        """(minutes, iterations): 6 minutes when neither is given."""
        if self.minutes is None and self.iterations is None:
            return 6.0, None
        return self.minutes, self.iterations
