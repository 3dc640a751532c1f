"""The mask net's sizes, without Keras: the command line reads them before any backend loads."""

from __future__ import annotations

from dataclasses import dataclass, field

from intracoder.errors import UserError


@dataclass(frozen=True)
class SegmenterConfig:
    resolution: int = field(default=128, metadata={"help": "crop side the net sees (multiple of 2**depth)"})
    base: int = field(default=16, metadata={"help": "channels at full resolution; doubled per level"})
    depth: int = field(default=4, metadata={"help": "how many times the encoder halves the resolution"})
    max_channels: int = field(default=128, metadata={"help": "cap on the channels of the deep levels"})

    def check(self) -> None:
        step = 2 ** self.depth
        if self.resolution % step or self.resolution < 32:
            raise UserError(f"mask resolution must be a multiple of {step} and at least 32, "
                            f"got {self.resolution}")
        if not 1 <= self.depth <= 7 or self.base < 4:
            raise UserError(f"mask net depth must be 1..7 and base >= 4, got {self.depth}, {self.base}")

    def channels(self, level: int) -> int:
        return min(self.base * 2 ** level, self.max_channels)


# small: trains to a useful mask in a few CPU minutes; large: about XSeg's size at 256 px.
SIZES = {
    "small": SegmenterConfig(resolution=96, base=16, depth=4, max_channels=128),
    "large": SegmenterConfig(resolution=256, base=32, depth=6, max_channels=384),
}
