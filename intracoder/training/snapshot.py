"""Weights and optimiser state copied in memory: what the NaN guard rolls back to."""

from __future__ import annotations

from dataclasses import dataclass

import keras
import numpy as np

from intracoder.models.autoencoder import SwapModel
from intracoder.training import optimizers


@dataclass
class Snapshot:
    """Weights and optimiser state held in memory: the NaN guard's rollback target. The
    optimiser state is kept per part (generator, discriminator) as ``assign_state`` takes
    it, so the generator and the discriminator always roll back together."""

    iteration: int
    weights: dict[str, np.ndarray]
    optimizer: list[tuple[list[np.ndarray], list[str]]]


def take_snapshot(model: SwapModel, iteration: int) -> Snapshot | None:
    """A copy of the current state, or None when any weight is already non-finite (a
    finite loss can still come with a step that broke the weights)."""
    weights = {id(v): keras.ops.convert_to_numpy(v) for v in model.weights}
    if not all(np.isfinite(w).all() for w in weights.values()
               if np.issubdtype(w.dtype, np.floating)):
        return None
    optimizer = [optimizers.state_of(part) for part in optimizers.parts(model.optimizer)]
    return Snapshot(iteration=iteration, weights=weights, optimizer=optimizer)


def restore_snapshot(model: SwapModel, snapshot: Snapshot) -> None:
    """Back to ``snapshot``; the model must still be the one it was taken of, compiled the
    same way (the loop takes a new snapshot after every phase switch)."""
    for var in model.weights:
        var.assign(snapshot.weights[id(var)])
    for part, (arrays, paths) in zip(optimizers.parts(model.optimizer), snapshot.optimizer):
        if part is not None and not optimizers.assign_state(part, arrays, paths):
            raise ValueError("the optimiser changed since the snapshot was taken")
