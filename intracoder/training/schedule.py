"""The learning-rate schedule of a run with a budget: linear warm-up, then a cosine decay
that reaches its floor exactly when the budget runs out.

A budget is either iterations (``--iterations``: the schedule runs over iterations) or time
(``--minutes``: the schedule runs over training seconds, so it ends with the run however fast
the machine is). The schedule is stored in state.json; a resumed run continues it from where
it stopped. An open-ended run (no budget) warms up and then holds the peak rate.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Schedule:
    peak: float
    floor: float  # the rate at the end of the budget
    warmup: int  # iterations from the schedule's start to the peak
    start_iteration: int
    unit: str | None = None  # "iterations", "seconds", or None: no decay
    start: float = 0.0  # iteration or training seconds where the decay is measured from
    end: float = 0.0

    def progress(self, iteration: int, seconds: float) -> float:
        """0 at the start of the budget, 1 at its end (and after)."""
        if self.unit is None or self.end <= self.start:
            return 0.0
        now = iteration if self.unit == "iterations" else seconds
        return min(1.0, max(0.0, (now - self.start) / (self.end - self.start)))

    def rate(self, iteration: int, seconds: float) -> float:
        p = self.progress(iteration, seconds)
        rate = self.floor + (self.peak - self.floor) * 0.5 * (1.0 + math.cos(math.pi * p))
        if self.warmup > 0:
            rate *= min(1.0, (iteration - self.start_iteration + 1) / self.warmup)
        return rate

    def finished(self, iteration: int, seconds: float) -> bool:
        return self.unit is not None and self.progress(iteration, seconds) >= 1.0

    def to_dict(self) -> dict:
        return asdict(self)


def plan(stored: dict | None, peak: float, floor: float, warmup: int, iteration: int,
         seconds: float, iterations: int | None, minutes: float | None) -> Schedule:
    """The schedule this run trains with.

    A stored schedule that has not finished is continued (an iteration target given again
    with another value moves its end); a finished or missing one is replaced by a new one
    over this run's budget: ``iterations`` (a total) wins over ``minutes``.
    """
    if stored is not None:
        old = Schedule(**stored)
        if not old.finished(iteration, seconds):
            if old.unit == "iterations" and iterations is not None and iterations != old.end:
                return Schedule(**{**stored, "end": float(iterations)})
            if old.unit is not None or (iterations is None and minutes is None):
                return old
    if iterations is not None and iterations > iteration:
        # A warm-up longer than a tenth of a short run would leave it no time at the peak.
        warmup = min(warmup, (iterations - iteration) // 10)
        return Schedule(peak, floor, warmup, iteration, "iterations", float(iteration),
                        float(iterations))
    if minutes is not None:
        return Schedule(peak, floor, warmup, iteration, "seconds", seconds,
                        seconds + minutes * 60.0)
    return Schedule(peak, peak, warmup, iteration)
