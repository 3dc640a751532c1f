"""Progress bars for long work: rate and ETA on stderr, silent when not a terminal in CI."""

from __future__ import annotations

import math
import os
import sys

from tqdm import tqdm


def progress(total: int | None, unit: str, desc: str, quiet: bool = False, **kwargs) -> tqdm:
    """A progress bar on stderr; ``quiet`` (or INTRACODER_NO_PROGRESS=1) hides it."""
    disable = quiet or os.environ.get("INTRACODER_NO_PROGRESS") == "1"
    return tqdm(total=total, unit=unit, desc=desc, dynamic_ncols=True, file=sys.stderr,
                disable=disable, mininterval=0.5, **kwargs)


def clock(seconds: float) -> str:
    """H:MM:SS for a duration; "-" when it is not known."""
    if not math.isfinite(seconds):
        return "-"
    seconds = int(max(seconds, 0))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
