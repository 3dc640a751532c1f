"""Progress bars for long work: rate and ETA on stderr, silent when not a terminal in CI."""

from __future__ import annotations

import os
import sys

from tqdm import tqdm


def progress(total: int | None, unit: str, desc: str, **kwargs) -> tqdm:
    disable = os.environ.get("INTRACODER_NO_PROGRESS") == "1"
    return tqdm(total=total, unit=unit, desc=desc, dynamic_ncols=True, file=sys.stderr,
                disable=disable, mininterval=0.5, **kwargs)
