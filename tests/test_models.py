"""The swap model and its loss: shapes, serialisation, FLOP count, and that it learns."""

from __future__ import annotations

import json

import cv2
import keras
import numpy as np
import pytest

from intracoder.errors import UserError
from intracoder.models import losses
from intracoder.models.autoencoder import (LossConfig, SwapModel, build_model,
                                           flops_per_sample, forward_flops, preset)
from intracoder.models.blocks import Downscale, ResidualBlock, Upscale
from intracoder.samples import render_clip

RES = 64
QUICK64 = dict(arch="df", resolution=RES)  # the 64-px DF layout: fast, every code path


@pytest.fixture(scope="module")
def model() -> SwapModel:
    return build_model(preset("quick", **QUICK64))


def _faces(name: str, n: int, seed: int) -> np.ndarray:
    """n small affine/lighting variants of a bundled portrait's face, 64 px, float [0, 1]."""
    clip = render_clip(name, n_frames=n, size=RES, seed=seed, max_angle=6.0,
                       zoom=(0.95, 1.05), shift=0.03, light=(0.9, 1.1), face_fraction=0.75)
    return np.stack(clip.frames).astype(np.float32) / 255.0


def _ellipse_masks(n: int) -> np.ndarray:
    mask = np.zeros((RES, RES), np.uint8)
    cv2.ellipse(mask, (RES // 2, RES // 2), (RES // 3, int(RES * 0.42)), 0, 0, 360, 1, -1)
    return np.repeat(mask[None, :, :, None].astype(np.float32), n, axis=0)


def test_presets_and_validation():
    q = preset("quick")
    assert (q.arch, q.resolution) == ("df-ud", 128)
    d = preset("df128")
    assert (d.resolution, d.ae_dims, d.e_dims, d.d_dims, d.d_mask_dims) == (128, 256, 64, 64, 22)
    assert preset("df256").resolution == 256
    assert preset("quick", ae_dims=64).ae_dims == 64
    for bad in ({"resolution": 100}, {"d_dims": 0}, {"e_dims": 1.5}, {"depth": 3}):
        with pytest.raises(UserError):
            preset("quick", **bad)
    with pytest.raises(UserError):
        preset("nope")
    assert len(losses.dssim_windows(128)) == 1 and losses.dssim_windows(64)[0][0] == 5
    assert [k for k, _ in losses.dssim_windows(256)] == [23, 11]


def test_output_shapes_and_decode(model):
    x = np.random.default_rng(0).random((2, RES, RES, 3), np.float32)
    out = model((x, x[::-1]))
    assert tuple(out["recon_a"].shape) == (2, RES, RES, 3)
    assert tuple(out["mask_b"].shape) == (2, RES, RES, 1)
    faces = _faces("grace_hopper", 3, seed=0)
    rgb, mask = model.decode(faces, "b", batch_size=2)
    assert isinstance(rgb, np.ndarray) and rgb.dtype == np.float32
    assert rgb.shape == (3, RES, RES, 3) and mask.shape == (3, RES, RES, 1)
    assert 0.0 <= rgb.min() and rgb.max() <= 1.0 and 0.0 <= mask.min() and mask.max() <= 1.0
    # Same result whatever the batching/padding, and uint8 input is scaled.
    rgb_u8, _ = model.decode((faces * 255).round().astype(np.uint8), "b", batch_size=32)
    np.testing.assert_allclose(rgb_u8, rgb, atol=2e-2)
    np.testing.assert_allclose(model.decode(faces[:1], "b")[0], rgb[:1], atol=1e-5)
    with pytest.raises(ValueError):
        model.decode(faces, "c")


def test_get_config_round_trip(model):
    cfg = model.get_config()
    json.dumps(cfg)
    clone = SwapModel.from_config(cfg)
    assert clone.config == model.config and clone.loss_config == model.loss_config
    assert clone.count_params() == model.count_params()
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(model))
    assert isinstance(restored, SwapModel) and restored.config == model.config


def test_submodel_weights_round_trip(model, tmp_path):
    faces = _faces("astronaut", 2, seed=1)
    fresh = build_model(preset("quick", **QUICK64))
    for part in ("encoder", "inter", "decoder_a", "decoder_b"):
        path = tmp_path / f"{part}.weights.h5"
        getattr(model, part).save_weights(path)
        getattr(fresh, part).load_weights(path)
    for side in "ab":
        for got, want in zip(fresh.decode(faces, side), model.decode(faces, side)):
            np.testing.assert_array_equal(got, want)


def test_whole_model_keras_file_round_trip(model, tmp_path):
    # Optimizer state in the .keras file is covered by test_backends (after training).
    model.save(tmp_path / "model.keras")
    reloaded = keras.saving.load_model(tmp_path / "model.keras")
    assert isinstance(reloaded, SwapModel) and reloaded.config == model.config
    for got, want in zip(reloaded.get_weights(), model.get_weights(), strict=True):
        np.testing.assert_array_equal(got, want)


def _layer_flops(part: keras.Model) -> float:
    total = 0.0
    for layer in part.layers:
        if isinstance(layer, (Downscale, keras.layers.Conv2D)):
            conv = getattr(layer, "conv", layer)
            total += 2.0 * np.prod(conv.kernel.shape) * np.prod(layer.output.shape[1:3])
        elif isinstance(layer, Upscale):
            total += 2.0 * np.prod(layer.conv.kernel.shape) * np.prod(layer.input.shape[1:3])
        elif isinstance(layer, ResidualBlock):
            total += 2.0 * 2 * np.prod(layer.conv1.kernel.shape) * np.prod(layer.input.shape[1:3])
        elif isinstance(layer, keras.layers.Dense):
            total += 2.0 * np.prod(layer.kernel.shape)
    return total


def test_flops_match_built_layers():
    cfg = preset("quick", **QUICK64)
    fresh = build_model(cfg)
    f = forward_flops(cfg)
    assert _layer_flops(fresh.encoder) == f["encoder"]
    assert _layer_flops(fresh.inter) == f["inter"]
    assert _layer_flops(fresh.decoder_a) == f["decoder"]
    assert flops_per_sample(cfg) == 3 * sum(f.values())
    assert flops_per_sample(preset("df128")) > 10 * flops_per_sample(cfg)


def test_dssim_self_and_shift():
    img = _faces("grace_hopper", 1, seed=0)
    same = float(losses.dssim(img, img, 5)[0])
    shifted = float(losses.dssim(img, np.roll(img, 2, axis=2), 5)[0])
    assert abs(same) < 1e-5
    assert shifted > 0.05


@pytest.mark.parametrize("filter_size", [11, 7])
def test_dssim_matches_tf_image_ssim(filter_size):
    """losses.dssim reimplements tf.image.ssim (separable banded-matrix blur instead of a
    depthwise conv): the same constants, window and valid padding must give the same
    figure on real faces, each against a blurred, a noisy and a shifted copy of itself."""
    if keras.backend.backend() != "tensorflow":
        pytest.skip("the reference is tf.image.ssim; this backend is not tensorflow")
    import tensorflow as tf

    faces = [render_clip(name, n_frames=1, size=128, max_angle=0, face_fraction=0.75)
             .frames[0].astype(np.float32) / 255.0 for name in ("grace_hopper", "astronaut")]
    noise = np.random.default_rng(0).normal(0, 0.05, faces[0].shape).astype(np.float32)
    true, pred = [], []
    for face in faces:
        for other in (cv2.GaussianBlur(face, (0, 0), 1.5), np.clip(face + noise, 0, 1),
                      np.roll(face, (3, -2), axis=(0, 1))):
            true.append(face)
            pred.append(other)
    true, pred = np.stack(true), np.stack(pred)
    ours = keras.ops.convert_to_numpy(losses.dssim(true, pred, filter_size))
    # tf.image.ssim's own sigma, written out: losses.SSIM_SIGMA is what is under test.
    ssim = tf.image.ssim(tf.constant(true), tf.constant(pred), max_val=1.0,
                         filter_size=filter_size, filter_sigma=1.5)
    reference = (1.0 - ssim.numpy()) / 2.0
    # The pairs span DSSIM 0.09-0.39 and the two agree to 1e-5 (float32 sums in another
    # order); a wrong constant, sigma or padding moves them by 1e-3 or more.
    assert np.ptp(reference) > 0.05, reference
    np.testing.assert_allclose(ours, reference, atol=1e-4)
    # Same on the 0..255 scale, where max_val sets c1 and c2.
    ours = keras.ops.convert_to_numpy(losses.dssim(true * 255, pred * 255, filter_size,
                                                   max_val=255.0))
    ssim = tf.image.ssim(tf.constant(true * 255), tf.constant(pred * 255), max_val=255.0,
                         filter_size=filter_size, filter_sigma=1.5)
    np.testing.assert_allclose(ours, (1.0 - ssim.numpy()) / 2.0, atol=1e-4)


def test_masked_loss_ignores_outside_mask():
    target = _faces("grace_hopper", 2, seed=0)
    pred = _faces("grace_hopper", 2, seed=5)
    mask = np.zeros((2, RES, RES, 1), np.float32)
    mask[:, 20:44, 20:44] = 1.0
    pred_mask = np.full_like(mask, 0.5)
    cfg = LossConfig()
    base = losses.reconstruction_loss(target, pred, mask, pred_mask, RES, cfg)
    # The blurred mask reaches about 2 sigma (4 px) beyond the box; change far outside it.
    outside = np.ones((RES, RES, 1), bool)
    outside[10:54, 10:54] = False
    noisy_t, noisy_p = target.copy(), pred.copy()
    noisy_t[:, outside[..., 0]] = 0.0
    noisy_p[:, outside[..., 0]] = 1.0
    changed = losses.reconstruction_loss(noisy_t, noisy_p, mask, pred_mask, RES, cfg)
    np.testing.assert_allclose(np.asarray(changed), np.asarray(base), rtol=1e-5, atol=1e-6)
    inside = pred.copy()
    inside[:, 28:36, 28:36] = 1.0 - inside[:, 28:36, 28:36]
    worse = losses.reconstruction_loss(target, inside, mask, pred_mask, RES, cfg)
    assert np.all(np.asarray(worse) > np.asarray(base))


def test_eyes_mouth_priority_adds_weight():
    target = _faces("astronaut", 1, seed=0)
    pred = _faces("astronaut", 1, seed=3)
    mask = np.ones((1, RES, RES, 1), np.float32)
    prio = np.zeros_like(mask)
    prio[:, 20:30, 16:48] = 1.0
    off = losses.reconstruction_loss(target, pred, mask, mask, RES,
                                     LossConfig(eyes_mouth_priority=False), prio)
    on = losses.reconstruction_loss(target, pred, mask, mask, RES,
                                    LossConfig(eyes_mouth_priority=True), prio)
    assert float(on[0]) > float(off[0]) + 1.0


def test_loss_goes_down_on_real_faces():
    n = 4
    a, b = _faces("grace_hopper", n, seed=2), _faces("astronaut", n, seed=3)
    masks = _ellipse_masks(n)
    prio = np.zeros_like(masks)
    prio[:, 24:34, 16:48] = 1.0
    keras.utils.set_random_seed(0)
    m = build_model(preset("quick", **QUICK64), LossConfig(eyes_mouth_priority=True))
    m.compile(optimizer=keras.optimizers.Adam(5e-4, clipnorm=1.0))
    history = [m.train_on_batch(x=(a, b), y=(a, masks, b, masks, prio, prio), return_dict=True)
               for _ in range(30)]
    assert {"loss", "loss_a", "loss_b"} <= set(history[0])
    first, last = history[0], history[-1]
    assert np.isclose(first["loss"], first["loss_a"] + first["loss_b"], rtol=1e-4)
    assert last["loss"] < 0.8 * first["loss"]
    assert last["loss_a"] < first["loss_a"] and last["loss_b"] < first["loss_b"]


def test_bf16_bias_gradients_are_summed_in_float32():
    # TensorFlow's CPU BiasAddGrad sums bf16 in bf16; over the 32768 pixels of the first
    # layer's output, mostly cancelling, that rounding was 10-50% of each bias's gradient,
    # and Adam made it full steps (issue 30).
    if keras.backend.backend() != "tensorflow":
        pytest.skip("the gradient is taken with TensorFlow's GradientTape")
    import tensorflow as tf

    rng = np.random.default_rng(0)
    x = tf.constant(rng.normal(size=(8, 128, 128, 3)).astype(np.float32))
    upstream = tf.constant(rng.normal(0.01, 1.0, (8, 64, 64, 32)).astype(np.float32))
    before, weights, grads = keras.mixed_precision.global_policy(), None, {}
    try:
        for policy in ("float32", "mixed_bfloat16"):
            keras.mixed_precision.set_global_policy(policy)  # as training sets it
            layer = Downscale(32)
            layer.build(x.shape)
            weights = weights or layer.get_weights()
            layer.set_weights(weights)
            with tf.GradientTape() as tape:
                loss = tf.reduce_sum(tf.cast(layer(x), tf.float32) * upstream)
            grads[policy] = tape.gradient(loss, layer.conv.bias).numpy()
    finally:
        keras.mixed_precision.set_global_policy(before)
    exact, bf16 = grads["float32"], grads["mixed_bfloat16"]
    # Summed in float32 only the bf16 activations' rounding is left: 0.023 here (0.093 when
    # Keras' own bias add summed it in bf16).
    assert np.linalg.norm(bf16 - exact) / np.linalg.norm(exact) < 0.05


def test_weights_saved_with_keras_conv2d_still_load(tmp_path, monkeypatch):
    """blocks.Conv2D replaced keras' Conv2D in every block and the discriminator; weight
    files name layers by class, so a model saved before must load whole (Keras only warns)."""
    from keras import layers

    from intracoder.models import blocks, discriminator
    from intracoder.training.checkpoint import load_weights_file

    config = preset("quick", arch="df-ud", resolution=RES, e_dims=8, ae_dims=32, d_dims=8,
                    d_mask_dims=4)
    with monkeypatch.context() as m:  # the layers as they were
        m.setattr(blocks, "Conv2D", layers.Conv2D)
        m.setattr(discriminator, "Conv2D", layers.Conv2D)
        old = build_model(config, gan_dims=4)
    new = build_model(config, gan_dims=4)
    assert type(new.encoder.get_layer("down0").conv) is blocks.Conv2D
    assert type(old.encoder.get_layer("down0").conv) is layers.Conv2D
    for part in old.parts:
        getattr(old, part).save_weights(tmp_path / f"{part}.weights.h5")
        load_weights_file(getattr(new, part), tmp_path / f"{part}.weights.h5")
    for got, want in zip(new.weights, old.weights):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(got),
                                      keras.ops.convert_to_numpy(want))
