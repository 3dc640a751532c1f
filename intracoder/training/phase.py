"""Phase switches: the parts of a recipe a run may change as it goes, and the late sharpening
phase that changes them by itself.

DeepFaceLab's users end a run by turning the random warp off and learning-rate dropout on
(then a GAN): the warp makes every target ambiguous by a few pixels, which the decoder answers
with blur, and once the model has learned the face it can be trained on unwarped inputs to
settle the detail. ``--sharpen-last F`` does this for the last share F of a budget; the same
switches can be thrown by hand on resume (``--no-random-warp``, ``--lr-dropout 0.3``). Each
change is recorded in ``state["phases"]`` as ``{"iteration", "why", <field>: <new value>}``,
and the preview title and the loss plot show them.

The GAN (``--gan-power P``) is a switch too. With ``--sharpen-last`` it trains in the
sharpening phase only, as DFL's users switch it on last; without, from the run it is given
on. A model keeps its discriminator's weights once it has one, also while the GAN is off.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from intracoder.training.schedule import Schedule

# The recipe fields that are phase switches: may change on resume, each change recorded.
PHASE_FIELDS = ("random_warp", "lr_dropout", "sharpen_last", "gan_power")
# DFL's value for learning-rate dropout; the sharpening phase uses it unless the recipe
# already asks for a lower share.
SHARPEN_LR_DROPOUT = 0.3


def describe_switches(switches: dict, changes: bool = True) -> str:
    """'warp off, lr dropout 0.3, GAN 0.1' from the switches present in ``switches``: a
    state["phases"] entry (only what changed, each named, also when switched off), or with
    ``changes`` False a whole phase (learning-rate dropout and GAN named only when on)."""
    words = []
    if "random_warp" in switches:
        words.append("warp " + ("on" if switches["random_warp"] else "off"))
    rate = switches.get("lr_dropout")
    if rate is not None and (rate < 1 or changes):
        words.append(f"lr dropout {rate:g}" if rate < 1 else "lr dropout off")
    power = switches.get("gan_power")
    if power is not None and (power > 0 or changes):
        words.append(f"GAN {power:g}" if power > 0 else "GAN off")
    return ", ".join(words)


@dataclass(frozen=True)
class Phase:
    """The switches a step trains with."""

    random_warp: bool
    lr_dropout: float
    sharpening: bool = False
    gan_power: float = 0.0

    def describe(self) -> str:
        words = describe_switches(asdict(self), changes=False)
        return ("sharpening: " if self.sharpening else "") + words


def base_phase(config: Any) -> Phase:
    """The phase the recipe's own switches describe (before any sharpening); ``config`` is
    a TrainConfig or a stored one (state.json's ``config``, which may predate a switch)."""
    get = config.get if isinstance(config, dict) else lambda k, d: getattr(config, k, d)
    gan = 0.0 if float(get("sharpen_last", 0.0)) > 0 else float(get("gan_power", 0.0))
    return Phase(random_warp=bool(get("random_warp", True)),
                 lr_dropout=float(get("lr_dropout", 1.0)), gan_power=gan)


def sharpening_phase(config: Any) -> Phase:
    return Phase(random_warp=False, lr_dropout=min(float(config.lr_dropout), SHARPEN_LR_DROPOUT),
                 sharpening=True, gan_power=float(config.gan_power))


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
