"""The NaN guard both training loops (model and refiner) share.

A non-finite loss means the weights may be broken already, so the step is undone: weights
and optimiser state go back to the last good in-memory snapshot and the learning rate is
lowered. Snapshots are taken every ``every`` iterations and before each save, and only of
finite weights, so a checkpoint on disk is never broken either. Rolling back
``MAX_ROLLBACKS`` times without a new good snapshot in between stops training with one
clear error; the last checkpoint stays as it was.
"""

from __future__ import annotations

import math
from pathlib import Path

import keras
from tqdm import tqdm

from intracoder.errors import UserError
from intracoder.training.snapshot import Snapshot, restore_snapshot, take_snapshot
from intracoder.training.optimizers import learning_rate, set_learning_rate

LR_DROP = 0.5  # learning-rate factor applied at each rollback
MAX_ROLLBACKS = 5  # rollbacks without a new good snapshot in between before giving up


class NanGuard:
    def __init__(self, model: keras.Model, state: dict, iteration: int, every: int,
                 model_dir: Path, what: str = "model"):
        """``state`` is the checkpoint's state dict: rollbacks and the lowered learning rate
        are recorded in it. ``what`` names the trained net in messages."""
        self.model, self.state, self.every = model, state, every
        self.model_dir, self.what = model_dir, what
        good = take_snapshot(model, iteration)
        if good is None:
            raise UserError(f"{model_dir}: the saved {what} weights are not finite; "
                            "restore a backup")
        self.good: Snapshot = good
        self.in_a_row = 0

    def after_step(self, losses: tuple[float, ...], iteration: int) -> bool:
        """True when the step stands; False when it was undone (skip logging it)."""
        if all(math.isfinite(loss) for loss in losses):
            if iteration % self.every:
                return True
            if self.snapshot(iteration):
                self.in_a_row = 0
                return True
        else:
            if self.in_a_row >= MAX_ROLLBACKS:
                rate = learning_rate(self.model.optimizer)
                raise UserError(f"the {self.what} loss stays non-finite after {MAX_ROLLBACKS} "
                                f"rollbacks (learning rate {rate:.3g}); "
                                f"the last checkpoint in {self.model_dir} is kept")
            self.rollback(iteration)
        self.in_a_row += 1
        return False

    def snapshot(self, iteration: int) -> bool:
        """Make the current weights the rollback target, or, when they are not finite, roll
        back to the last good ones instead (False)."""
        good = take_snapshot(self.model, iteration)
        if good is None:
            self.rollback(iteration)
            return False
        self.good = good
        return True

    def rollback(self, iteration: int) -> None:
        """Back to the last good weights and optimiser state, with a lower learning rate."""
        # Read first: the snapshot holds an older rate.
        lr = learning_rate(self.model.optimizer) * LR_DROP
        restore_snapshot(self.model, self.good)
        set_learning_rate(self.model.optimizer, lr)
        self.state["learning_rate"] = lr
        # A loop with a schedule sets the rate every step: the scale keeps the drop in it.
        self.state["lr_scale"] = self.state.get("lr_scale", 1.0) * LR_DROP
        self.state["rollbacks"].append({"iteration": iteration, "restored": self.good.iteration,
                                        "learning_rate": lr})
        tqdm.write(f"iteration {iteration}: {self.what} loss is not finite; rolled back to the "
                   f"weights of iteration {self.good.iteration}, learning rate lowered to "
                   f"{lr:.3g}")
