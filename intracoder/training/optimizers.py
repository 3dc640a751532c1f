"""The optimisers a recipe can name, and DeepFaceLab's learning-rate dropout on any of them.

Learning-rate dropout (DFL's ``lr_dropout``, core/leras/optimizers): each step, every weight
is updated with probability ``keep`` and left as it was otherwise; the optimiser's moments
are still updated from the full gradient. DFL uses keep = 0.3, late in a run: the noisy,
sparse updates let the model settle into sharper detail than a plain low learning rate.
"""

from __future__ import annotations

import functools

import keras
import numpy as np
from keras import ops

# The path of the one variable learning-rate dropout adds (its mask seed, built last).
DROPOUT_STATE = "seed_generator"
OPTIMIZERS = {"adam": keras.optimizers.Adam, "adamw": keras.optimizers.AdamW,
              "lion": keras.optimizers.Lion, "rmsprop": keras.optimizers.RMSprop}
# AdamW's decoupled weight decay is applied to every weight outside update_step, so
# learning-rate dropout masks its gradient step only.


@functools.cache
def _with_lr_dropout(base: type) -> type:
    """``base`` with its update of each weight masked by Bernoulli(keep)."""

    class LrDropout(base):
        def __init__(self, *args, lr_dropout: float = 1.0, dropout_seed: int = 0, **kwargs):
            super().__init__(*args, **kwargs)
            self.lr_dropout = lr_dropout
            self.dropout_seed = dropout_seed

        def build(self, variables):
            super().build(variables)
            # The seed's state is an optimiser variable, so the JAX trainer threads it through
            # its stateless step and a checkpoint resumes the same masks.
            self._dropout_seeds = keras.random.SeedGenerator(self.dropout_seed)
            self._track_variable(self._dropout_seeds.state)

        def update_step(self, gradient, variable, learning_rate):
            before = ops.convert_to_tensor(variable) * 1  # a copy: the update assigns in place
            super().update_step(gradient, variable, learning_rate)
            keep = ops.cast(keras.random.uniform(ops.shape(variable), seed=self._dropout_seeds)
                            < self.lr_dropout, variable.dtype)
            self.assign(variable, before + keep * (ops.convert_to_tensor(variable) - before))

        def get_config(self) -> dict:
            return {**super().get_config(), "lr_dropout": self.lr_dropout,
                    "dropout_seed": self.dropout_seed}

    LrDropout.__name__ = f"{base.__name__}LrDropout"
    return LrDropout


def make_optimizer(name: str, learning_rate: float, clipnorm: float = 0.0,
                   lr_dropout: float = 1.0, seed: int = 0) -> keras.optimizers.Optimizer:
    """The named optimiser; ``lr_dropout`` < 1 keeps only that share of each step's updates."""
    base = OPTIMIZERS[name]
    kwargs = {"learning_rate": learning_rate, "clipnorm": clipnorm or None}
    if lr_dropout >= 1.0:
        return base(**kwargs)
    return _with_lr_dropout(base)(lr_dropout=lr_dropout, dropout_seed=seed, **kwargs)


def inner(optimizer: keras.optimizers.Optimizer) -> keras.optimizers.Optimizer:
    """The optimiser that owns the learning rate and the moments: fp16 training wraps it in
    a loss-scale optimiser, whose own variables are not part of the model's state."""
    return getattr(optimizer, "inner_optimizer", optimizer)


def learning_rate(optimizer: keras.optimizers.Optimizer) -> float:
    return float(ops.convert_to_numpy(inner(optimizer).learning_rate))


def set_learning_rate(optimizer: keras.optimizers.Optimizer, value: float) -> None:
    inner(optimizer).learning_rate.assign(value)


def assign_state(optimizer: keras.optimizers.Optimizer, arrays: list[np.ndarray],
                 paths: list[str]) -> bool:
    """Give ``optimizer`` (built) the state ``arrays`` saved from an optimiser of the same
    kind, in variable order; ``paths`` are the saved variables' paths. Learning-rate dropout
    adds its mask seed as the last variable, so a state saved with it fits an optimiser
    without it (the seed is dropped) and the other way round (the seed starts fresh): the
    phase switch changes the dropout, not the moments. False, and nothing assigned, when the
    rest does not fit."""
    variables = list(inner(optimizer).variables)
    if paths and DROPOUT_STATE in paths[-1]:
        arrays = arrays[:-1]
    if variables and DROPOUT_STATE in variables[-1].path:
        variables = variables[:-1]
    if [tuple(a.shape) for a in arrays] != [tuple(v.shape) for v in variables]:
        return False
    for var, array in zip(variables, arrays):
        var.assign(array)
    return True


def replace_optimizer(model: keras.Model, optimizer: keras.optimizers.Optimizer) -> None:
    """Compile ``model`` with ``optimizer`` in place of its own, carrying the moments, step
    count and learning rate over (a phase switch mid-run)."""
    old = inner(model.optimizer).variables
    arrays = [ops.convert_to_numpy(v) for v in old]
    paths = [v.path for v in old]
    model.compile(optimizer=optimizer)
    model.optimizer.build(model.trainable_variables)
    if not assign_state(model.optimizer, arrays, paths):
        raise ValueError("the new optimiser's state does not match the old one's")
