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


class GanOptimizer(keras.optimizers.Optimizer):
    """Two optimisers behind one: the discriminator's weights are updated by ``discriminator``,
    all others by ``generator``, each with its own moments and step count (DFL's GAN_opt).

    Keras compiles a model with one optimiser; this one is what lets the generator and the
    discriminator train in the same step under every backend's own train step (TensorFlow
    and torch call ``apply``, JAX ``stateless_apply``). ``discriminator_variables``: the
    variables that belong to the discriminator (by identity)."""

    def __init__(self, generator: keras.optimizers.Optimizer,
                 discriminator: keras.optimizers.Optimizer, discriminator_variables,
                 name: str = "gan_optimizer", **kwargs):
        super().__init__(learning_rate=0.0, name=name, **kwargs)
        self.generator, self.discriminator = generator, discriminator
        self._d_ids = {id(v) for v in discriminator_variables}
        self._is_d: list[bool] = []

    def build(self, var_list):
        self._is_d = [id(v) in self._d_ids for v in var_list]
        self.generator.build([v for v, d in zip(var_list, self._is_d) if not d])
        self.discriminator.build([v for v, d in zip(var_list, self._is_d) if d])
        super().build(var_list)

    @property
    def variables(self):
        return self.generator.variables + self.discriminator.variables

    @property
    def learning_rate(self):
        return self.generator.learning_rate

    @property
    def iterations(self):
        return self.generator.iterations

    def _split(self, values) -> tuple[list, list]:
        values = list(values)
        return ([x for x, d in zip(values, self._is_d) if not d],
                [x for x, d in zip(values, self._is_d) if d])

    def apply(self, grads, trainable_variables=None):
        if not self.built:
            self.build(list(trainable_variables))
            self.built = True
        variables = self._trainable_variables if trainable_variables is None \
            else list(trainable_variables)
        for optimizer, g, v in zip((self.generator, self.discriminator), self._split(grads),
                                   self._split(variables)):
            optimizer.apply(g, v)

    def stateless_apply(self, optimizer_variables, grads, trainable_variables):
        n = len(self.generator.variables)
        g_grads, d_grads = self._split(grads)
        g_values, d_values = self._split(trainable_variables)
        g_new, g_state = self.generator.stateless_apply(optimizer_variables[:n], g_grads,
                                                        g_values)
        d_new, d_state = self.discriminator.stateless_apply(optimizer_variables[n:], d_grads,
                                                            d_values)
        g_new, d_new = iter(g_new), iter(d_new)
        merged = [next(d_new) if d else next(g_new) for d in self._is_d]
        return merged, list(g_state) + list(d_state)

    def get_config(self) -> dict:
        return {"name": self.name,
                "generator": keras.optimizers.serialize(self.generator),
                "discriminator": keras.optimizers.serialize(self.discriminator)}


def model_optimizer(model: keras.Model, name: str, learning_rate: float, clipnorm: float = 0.0,
                    lr_dropout: float = 1.0, seed: int = 0) -> keras.optimizers.Optimizer:
    """The optimiser to compile ``model`` with. With its GAN on: a GanOptimizer whose
    discriminator part is the same kind at the same rate (DFL's GAN_opt) but without
    learning-rate dropout, which is there to settle the generator's detail."""
    generator = make_optimizer(name, learning_rate, clipnorm, lr_dropout, seed)
    if not getattr(model, "gan_power", 0):
        return generator
    return GanOptimizer(generator, make_optimizer(name, learning_rate, clipnorm),
                        model.discriminator.weights)


def inner(optimizer: keras.optimizers.Optimizer) -> keras.optimizers.Optimizer:
    """The optimiser that owns the learning rate and the moments: fp16 training wraps it in
    a loss-scale optimiser, whose own variables are not part of the model's state."""
    return getattr(optimizer, "inner_optimizer", optimizer)


def parts(optimizer: keras.optimizers.Optimizer) -> tuple[keras.optimizers.Optimizer,
                                                          keras.optimizers.Optimizer | None]:
    """(the generator's optimiser, the discriminator's or None)."""
    opt = inner(optimizer)
    if isinstance(opt, GanOptimizer):
        return opt.generator, opt.discriminator
    return opt, None


def learning_rate(optimizer: keras.optimizers.Optimizer) -> float:
    return float(ops.convert_to_numpy(parts(optimizer)[0].learning_rate))


def set_learning_rate(optimizer: keras.optimizers.Optimizer, value: float) -> None:
    """The rate of the generator and of the discriminator (DFL trains both at one rate)."""
    for part in parts(optimizer):
        if part is not None:
            part.learning_rate.assign(value)


def variable_names(model: keras.Model) -> dict[int, str]:
    """id(variable) -> PART/PATH for every weight of ``model``'s parts (its top-level layers).
    Keras' own paths are not unique across parts: both decoders have an ``up0/conv/kernel``."""
    return {id(v): f"{layer.name}/{v.path}" for layer in model.layers for v in layer.weights}


def _slot_lists(optimizer: keras.optimizers.Optimizer) -> dict[str, list]:
    """The optimiser's per-variable state by slot (Adam: momentums, velocities), each list in
    the order of the variables it was built for. Keras keeps them as list attributes of
    that length; this reads them generically rather than naming every optimiser's."""
    refs = list(getattr(optimizer, "_trainable_variables", []))
    return {attr.strip("_"): value for attr, value in vars(optimizer).items()
            if isinstance(value, list) and value is not refs and refs and len(value) == len(refs)
            and all(isinstance(x, keras.Variable) for x in value)}


def keyed_paths(optimizer: keras.optimizers.Optimizer, names: dict[int, str]) -> list[str]:
    """A path per optimiser variable that says what it is: ``PART/PATH:SLOT`` for the state
    of one model variable (``names``: variable_names), the variable's name for the rest
    (iteration, learning rate, the dropout mask's seed)."""
    refs = list(optimizer._trainable_variables)
    keyed = {id(var): f"{names.get(id(ref), ref.path)}:{slot}"
             for slot, values in _slot_lists(optimizer).items()
             for ref, var in zip(refs, values)}
    # The optimiser's own variables by name: their paths carry its name, which Keras makes
    # unique per process (adam, adam_1, ...).
    return [keyed.get(id(v), v.name) for v in optimizer.variables]


def _assign_by_path(variables: list, own: list[str], arrays: list[np.ndarray],
                    paths: list[str]) -> bool | None:
    """Assign by key when both sides are keyed alike; None when they are not (fall back
    to order), False when a keyed variable's shape differs."""
    if len(set(paths)) != len(paths) or len(set(own)) != len(own) or set(own) != set(paths):
        return None
    saved = dict(zip(paths, arrays))
    if any(tuple(saved[p].shape) != tuple(v.shape) for p, v in zip(own, variables)):
        return False
    for path, var in zip(own, variables):
        var.assign(saved[path])
    return True


def assign_state(optimizer: keras.optimizers.Optimizer | None, arrays: list[np.ndarray],
                 paths: list[str], names: dict[int, str] | None = None) -> bool:
    """Give ``optimizer`` (built; one of ``parts``) the state ``arrays`` saved from an
    optimiser of the same kind; ``paths`` are the saved variables' paths. With ``names``
    (variable_names of the model) and keyed paths (keyed_paths), each variable gets the
    array saved under its own key, so an order that changed (Keras' or the file's) cannot
    swap Adam's two moments, which have equal shapes; otherwise (checkpoints saved before
    keys, in-memory snapshots) by variable order.
    Learning-rate dropout adds its mask seed as the last variable, so a state saved with it
    fits an optimiser without it (the seed is dropped) and the other way round (the seed
    starts fresh): the phase switch changes the dropout, not the moments. False, and nothing
    assigned, when the rest does not fit."""
    variables = list(optimizer.variables) if optimizer is not None else []
    if optimizer is not None and names is not None:
        own = keyed_paths(optimizer, names)
        keep = [i for i, p in enumerate(own) if DROPOUT_STATE not in p]
        saved = [i for i, p in enumerate(paths) if DROPOUT_STATE not in p]
        done = _assign_by_path([variables[i] for i in keep], [own[i] for i in keep],
                               [arrays[i] for i in saved], [paths[i] for i in saved])
        if done is not None:
            seed = [i for i, p in enumerate(paths) if DROPOUT_STATE in p]
            mine = [i for i, p in enumerate(own) if DROPOUT_STATE in p]
            if done and seed and mine:
                variables[mine[0]].assign(arrays[seed[0]])
            return done
    saved_seed = bool(paths) and DROPOUT_STATE in paths[-1]
    has_seed = bool(variables) and DROPOUT_STATE in variables[-1].path
    if saved_seed and not has_seed:
        arrays = arrays[:-1]
    if has_seed and not saved_seed:
        variables = variables[:-1]
    if optimizer is None or [tuple(a.shape) for a in arrays] != [tuple(v.shape)
                                                                 for v in variables]:
        return False
    for var, array in zip(variables, arrays):
        var.assign(array)
    return True


def state_of(optimizer: keras.optimizers.Optimizer | None,
             names: dict[int, str] | None = None) -> tuple[list, list[str]]:
    """(arrays, paths) of an optimiser's variables, as ``assign_state`` takes them; with
    ``names`` (variable_names) the paths are keyed_paths."""
    variables = list(optimizer.variables) if optimizer is not None else []
    paths = ([v.path for v in variables] if optimizer is None or names is None
             else keyed_paths(optimizer, names))
    return [ops.convert_to_numpy(v) for v in variables], paths


def replace_optimizer(model: keras.Model, optimizer: keras.optimizers.Optimizer) -> None:
    """Compile ``model`` with ``optimizer`` in place of its own, carrying the moments, step
    count and learning rate over (a phase switch mid-run). The discriminator's optimiser
    keeps its state when both have one; a discriminator switched on starts fresh."""
    old = [state_of(part) for part in parts(model.optimizer)]
    model.compile(optimizer=optimizer)
    model.optimizer.build(model.trainable_variables)
    generator, discriminator = parts(model.optimizer)
    if not assign_state(generator, *old[0]):
        raise ValueError("the new optimiser's state does not match the old one's")
    if discriminator is not None and old[1][0]:
        assign_state(discriminator, *old[1])
