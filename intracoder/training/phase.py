"""Phase switches: the parts of a recipe a run may change as it goes, and the late sharpening
phase that changes them by itself.

DeepFaceLab's users end a run by turning the random warp off and learning-rate dropout on
(then a GAN): the warp makes every target ambiguous by a few pixels, which the decoder answers
with blur, and once the model has learned the face it can be trained on unwarped inputs to
settle the detail. ``--sharpen-last F`` does this for the last share F of a budget; the same
switches can be thrown by hand on resume (``--no-random-warp``, ``--lr-dropout 0.3``). Each
change is recorded in ``state["phases"]`` as ``{"iteration", "why", <field>: <new value>}``,
and the preview title and the loss plot show them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from intracoder.training.schedule import Schedule

# The recipe fields that are phase switches: may change on resume, each change recorded.
PHASE_FIELDS = ("random_warp", "lr_dropout", "sharpen_last")
# DFL's value for learning-rate dropout; the sharpening phase uses it unless the recipe
# already asks for a lower share.
SHARPEN_LR_DROPOUT = 0.3


@dataclass(frozen=True)
class Phase:
    """The switches a step trains with."""

    random_warp: bool
    lr_dropout: float
    sharpening: bool = False

    def describe(self) -> str:
        parts = ["warp " + ("on" if self.random_warp else "off")]
        if self.lr_dropout < 1:
            parts.append(f"lr dropout {self.lr_dropout:g}")
        return ("sharpening: " if self.sharpening else "") + ", ".join(parts)


def base_phase(config: Any) -> Phase:
    """The phase the recipe's own switches describe (before any sharpening)."""
    return Phase(random_warp=bool(config.random_warp), lr_dropout=float(config.lr_dropout))


def recipe_phase(stored: dict) -> Phase:
    """``base_phase`` of a stored config dict (state.json's ``config``)."""
    return Phase(random_warp=bool(stored.get("random_warp", True)),
                 lr_dropout=float(stored.get("lr_dropout", 1.0)))


def sharpening_phase(config: Any) -> Phase:
    return Phase(random_warp=False, lr_dropout=min(float(config.lr_dropout), SHARPEN_LR_DROPOUT),
                 sharpening=True)


def phase_at(config: Any, plan: Schedule, iteration: int, seconds: float) -> Phase:
    """The phase of the step at ``iteration`` / ``seconds`` into the schedule's budget."""
    fraction = float(config.sharpen_last)
    if fraction > 0 and plan.unit is not None and plan.progress(iteration, seconds) >= 1 - fraction:
        return sharpening_phase(config)
    return base_phase(config)


def enter(state: dict, iteration: int, now: Phase, why: str) -> None:
    """Make ``now`` the state's phase; a change from the phase it had is recorded in
    ``state["phases"]`` with the switches that changed (a new model's first phase is not a
    change)."""
    before, after = state.get("phase"), asdict(now)
    if before is not None and before != after:
        switched = {k: v for k, v in after.items() if before.get(k) != v}
        state.setdefault("phases", []).append({"iteration": iteration, "why": why, **switched})
    state["phase"] = after
