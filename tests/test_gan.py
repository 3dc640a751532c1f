"""The patch-GAN of the sharpening phase on real faces: the discriminator has the shape DFL's
has, trains on its own loss only and with its own optimiser, switches on at resume or in
the sharpening phase (recorded), round-trips through the checkpoint, and a NaN in its loss
rolls both networks back."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from intracoder.data.dataset import PairDataset, load_faceset
from intracoder.models.autoencoder import build_model
from intracoder.models.discriminator import build_discriminator, patch_strides, receptive_field
from intracoder.training import checkpoint, inference, optimizers
from intracoder.training.config import TrainConfig
from intracoder.training.guard import LR_DROP, NanGuard
from intracoder.training.loop import train
from tests.test_training import TINY


def _cfg(facesets, model_dir, **kw) -> TrainConfig:
    return TrainConfig(a=str(facesets[0]), b=str(facesets[1]), model=str(model_dir),
                       **{**TINY, "workers": 1, "prefetch": 1, **kw})


def _numpy(variables) -> list[np.ndarray]:
    return [keras.ops.convert_to_numpy(v) for v in variables]


def _gan_model(cfg: TrainConfig, power: float = 0.1, sgd: bool = False):
    """With ``sgd`` each step moves every weight by its gradient (times 0.1), where Adam
    would hide the gradient's size."""
    model = build_model(cfg.model_config(), cfg.loss_config(), gan_dims=8)
    model.set_gan_power(power)
    model.compile(optimizer=optimizers.GanOptimizer(
        keras.optimizers.SGD(0.1), keras.optimizers.SGD(0.1), model.discriminator.weights)
        if sgd else optimizers.model_optimizer(model, "adam", 1e-3))
    model.optimizer.build(model.trainable_variables)
    return model


@pytest.fixture(scope="module")
def batch(facesets):
    cfg = TrainConfig(**TINY).resolved()
    faces = [load_faceset(str(f), 64, 1, 0) for f in facesets]
    return PairDataset(faces[0], faces[1], 4, cfg, 0)[0]


def test_discriminator_judges_patches_of_about_an_eighth_of_the_face():
    assert receptive_field((2, 2)) == 7 and receptive_field((2, 2, 2)) == 15
    for res in (64, 128, 256):
        assert abs(receptive_field(patch_strides(res // 8)) - res // 8) <= 2
    net = build_discriminator(128)
    centre, pixels = net(np.zeros((2, 128, 128, 3), np.float32))
    downs = sum(s == 2 for s in patch_strides(16))
    assert tuple(centre.shape) == (2, 128 >> downs, 128 >> downs, 1)
    assert tuple(pixels.shape) == (2, 128, 128, 1)
    assert keras.Model.from_config(net.get_config()).count_params() == net.count_params()


def test_discriminator_trains_on_its_own_loss_only(batch):
    """The generator's adversarial term must not leak into the discriminator's gradient: one
    step at GAN power 0.1 and at 10 moves the discriminator the same way and the
    generator differently."""
    x, y = batch
    cfg = TrainConfig(**TINY)
    keras.utils.set_random_seed(1)
    low = _gan_model(cfg, 0.1, sgd=True)
    high = _gan_model(cfg, 10.0, sgd=True)
    high.set_weights(low.get_weights())
    before = _numpy(low.discriminator.weights)
    for model in (low, high):
        logs = model.train_on_batch(x=x, y=y, return_dict=True)
        assert 0 < logs["loss_d"] < 5 and logs["loss_g"] > 0
    after_low, after_high = _numpy(low.discriminator.weights), _numpy(high.discriminator.weights)
    step_low = np.concatenate([(a - b).ravel() for a, b in zip(after_low, before)])
    step_high = np.concatenate([(a - b).ravel() for a, b in zip(after_high, before)])
    assert np.abs(step_low).max() > 1e-5
    # A hundred times the power, the same step up to float rounding (measured 0.2%); with
    # the generator's term in its gradient the step would change by about its own size.
    assert np.linalg.norm(step_high - step_low) < 0.01 * np.linalg.norm(step_low)
    moved = [np.abs(a - b).max() for a, b in zip(_numpy(low.decoder_a.weights),
                                                  _numpy(high.decoder_a.weights))]
    assert max(moved) > 1e-4
    generator, discriminator = optimizers.parts(low.optimizer)
    assert int(keras.ops.convert_to_numpy(discriminator.iterations)) == 1
    assert int(keras.ops.convert_to_numpy(generator.iterations)) == 1


def test_gan_switches_on_at_resume_and_round_trips(facesets, tmp_path):
    model_dir = tmp_path / "m"
    train(_cfg(facesets, model_dir, iterations=4), {})
    assert not checkpoint.has_discriminator(model_dir / "checkpoint")
    given = {"gan_power": 0.1, "iterations": 8}
    train(TrainConfig(model=str(model_dir), **{**TINY, **given}), given)
    state = checkpoint.read_state(model_dir)
    assert state["phases"] == [{"iteration": 4, "why": "resume", "gan_power": 0.1}]
    assert [h[0] for h in state["gan_history"]] == [8]  # one point, written at the stop
    assert all(np.isfinite(h).all() for h in state["gan_history"])
    ckpt = model_dir / "checkpoint"
    assert (ckpt / checkpoint.D_OPTIMIZER).exists() and checkpoint.has_discriminator(ckpt)

    # What was saved is what a resumed run gets: the discriminator and its optimiser.
    cfg = TrainConfig(**TINY)
    model = _gan_model(cfg)
    checkpoint.restore(model_dir, model)
    discriminator = optimizers.parts(model.optimizer)[1]
    assert int(keras.ops.convert_to_numpy(discriminator.iterations)) == 4
    # Adam's two moments for each discriminator weight, its step count and its rate.
    assert len(discriminator.variables) == 2 * len(model.discriminator.weights) + 2
    saved = _numpy(model.discriminator.weights)

    # GAN off again: the discriminator's weights are kept, its optimiser is not trained.
    given = {"gan_power": 0.0, "iterations": 10}
    train(TrainConfig(model=str(model_dir), **{**TINY, **given}), given)
    state = checkpoint.read_state(model_dir)
    assert state["phases"][-1] == {"iteration": 8, "why": "resume", "gan_power": 0.0}
    kept, _ = inference.load_model(model_dir)
    loaded = build_model(cfg.model_config(), cfg.loss_config(), gan_dims=8)
    checkpoint.load_weights(loaded, ckpt)
    for a, b in zip(saved, _numpy(loaded.discriminator.weights)):
        np.testing.assert_array_equal(a, b)
    assert kept.discriminator is None  # convert never builds it


def test_sharpening_phase_brings_the_gan_in(facesets, tmp_path):
    model_dir = tmp_path / "m"
    train(_cfg(facesets, model_dir, iterations=8, sharpen_last=0.25, gan_power=0.1), {})
    state = checkpoint.read_state(model_dir)
    assert state["phases"] == [{"iteration": 6, "why": "--sharpen-last 0.25",
                                "random_warp": False, "lr_dropout": 0.3, "sharpening": True,
                                "gan_power": 0.1}]
    cfg = TrainConfig(**TINY)
    model = build_model(cfg.model_config(), cfg.loss_config(), gan_dims=8)
    model.set_gan_power(0.1)
    model.compile(optimizer=optimizers.model_optimizer(model, "adam", 1e-3, lr_dropout=0.3))
    model.optimizer.build(model.trainable_variables)
    checkpoint.restore(model_dir, model)
    generator, discriminator = optimizers.parts(model.optimizer)
    assert int(keras.ops.convert_to_numpy(generator.iterations)) == 8
    assert int(keras.ops.convert_to_numpy(discriminator.iterations)) == 2


def test_nan_in_the_discriminator_loss_rolls_both_networks_back(batch, tmp_path):
    x, y = batch
    cfg = TrainConfig(**TINY)
    model = _gan_model(cfg)
    model.train_on_batch(x=x, y=y, return_dict=True)
    state = {"rollbacks": []}
    guard = NanGuard(model, state, 1, every=1, model_dir=tmp_path)
    good_weights = _numpy(model.weights)
    good_state = [optimizers.state_of(p) for p in optimizers.parts(model.optimizer)]

    kernel = model.discriminator.get_layer("pixel_logits").kernel
    kernel.assign(keras.ops.convert_to_numpy(kernel) * np.nan)
    logs = model.train_on_batch(x=x, y=y, return_dict=True)
    losses = tuple(float(logs[k]) for k in ("loss_a", "loss_b", "loss_d", "loss_g"))
    assert not np.isfinite(losses[2]) and np.isfinite(losses[0])
    assert not guard.after_step(losses, 2)
    assert state["rollbacks"][0]["restored"] == 1
    for got, want in zip(_numpy(model.weights), good_weights, strict=True):
        np.testing.assert_array_equal(got, want)  # generator and discriminator
    for part, (want, paths) in zip(optimizers.parts(model.optimizer), good_state, strict=True):
        for got, w, path in zip(optimizers.state_of(part)[0], want, paths, strict=True):
            if path.endswith("learning_rate"):  # lowered by the rollback, on purpose
                assert got == pytest.approx(w * LR_DROP)
            else:
                np.testing.assert_array_equal(got, w)
