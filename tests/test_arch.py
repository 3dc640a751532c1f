"""DeepFaceLab's layouts: DF and LIAE with the -u/-d suffixes build, train, save, load and
swap; LIAE swaps along the documented path and only in the direction it supports."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest

from intracoder.errors import UserError
from intracoder.models.autoencoder import SwapModel, build_model, forward_flops, preset
from intracoder.models.blocks import DoublingOutput, Downscale, ResidualBlock, Upscale
from intracoder.models.config import ARCHS, PARTS, flops_per_sample
from intracoder.samples import render_clip

RES = 64
TINY = dict(resolution=RES, e_dims=8, ae_dims=32, d_dims=8, d_mask_dims=4)


def _faces(name: str, n: int, seed: int) -> np.ndarray:
    clip = render_clip(name, n_frames=n, size=RES, seed=seed, max_angle=6.0,
                       zoom=(0.95, 1.05), shift=0.03, light=(0.9, 1.1), face_fraction=0.75)
    return np.stack(clip.frames).astype(np.float32) / 255.0


@pytest.mark.parametrize("arch", ARCHS)
def test_every_arch_trains_saves_loads_and_swaps(arch, tmp_path):
    cfg = preset("quick", arch=arch, **TINY)
    a, b = _faces("grace_hopper", 4, 0), _faces("astronaut", 4, 1)
    mask = np.ones((4, RES, RES, 1), np.float32)
    keras.utils.set_random_seed(0)
    model = build_model(cfg)
    assert model.parts == PARTS[cfg.base]
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    logs = [model.train_on_batch(x=(a, b), y=(a, mask, b, mask), return_dict=True)
            for _ in range(8)]
    assert logs[-1]["loss"] < logs[0]["loss"], (logs[0], logs[-1])
    out = model((a, b))
    assert all(tuple(out[k].shape) == (4, RES, RES, c)
               for k, c in (("recon_a", 3), ("mask_a", 1), ("recon_b", 3), ("mask_b", 1)))

    fresh = build_model(cfg)
    for part in model.parts:
        getattr(model, part).save_weights(tmp_path / f"{part}.weights.h5")
        getattr(fresh, part).load_weights(tmp_path / f"{part}.weights.h5")
    for decoder in "ab":
        for got, want in zip(fresh.decode(a, decoder), model.decode(a, decoder)):
            np.testing.assert_array_equal(got, want)
    clone = SwapModel.from_config(json.loads(json.dumps(model.get_config())))
    assert clone.config == cfg and clone.count_params() == model.count_params()


def _sub_models(model: keras.Model) -> list[str]:
    return [layer.name for layer in model.layers if isinstance(layer, keras.Model)]


def test_liae_swap_path_is_the_shared_code_twice():
    model = build_model(preset("quick", arch="liae-ud", **TINY))
    assert _sub_models(model.inference_model("b")) == ["encoder", "inter_ab", "decoder"]
    assert _sub_models(model.inference_model("a")) == ["encoder", "inter_a", "inter_ab",
                                                       "decoder"]
    # The swap is decoder([AB(x), AB(x)]): rebuild it by hand from the parts.
    x = _faces("grace_hopper", 2, 3)
    shared = model.inter_ab(model.encoder(x))
    rgb, mask = model.decoder(keras.ops.concatenate([shared, shared], axis=-1))
    got_rgb, got_mask = model.decode(x, "b")
    np.testing.assert_allclose(got_rgb, keras.ops.convert_to_numpy(rgb), atol=1e-5)
    np.testing.assert_allclose(got_mask, keras.ops.convert_to_numpy(mask), atol=1e-5)
    # In training, B's own faces go through the same shared-twice path, A's through
    # [private, shared]; so B's reconstruction equals the swap of B's faces.
    out = model((x, x))
    np.testing.assert_allclose(keras.ops.convert_to_numpy(out["recon_b"]), got_rgb, atol=1e-5)
    recon_a, _ = model.decode(x, "a")
    np.testing.assert_allclose(keras.ops.convert_to_numpy(out["recon_a"]), recon_a, atol=1e-5)


def test_directions_each_layout_supports():
    df = build_model(preset("quick", arch="df", **TINY))
    liae = build_model(preset("quick", arch="liae", **TINY))
    for direction in ("a2b", "b2a"):
        df.check_direction(direction)
    liae.check_direction("a2b")
    with pytest.raises(UserError, match="swaps only a2b, not b2a"):
        liae.check_direction("b2a")


def test_arch_validation():
    with pytest.raises(UserError, match="unknown --arch"):
        preset("quick", arch="liae-x")
    with pytest.raises(UserError, match="multiple of 32"):
        preset("quick", arch="df-ud", resolution=80)
    assert preset("quick", arch="df", resolution=80).dense_res == 5


def _flops(part: keras.Model) -> float:
    total = 0.0
    for layer in part.layers:
        if isinstance(layer, Downscale):
            total += 2.0 * np.prod(layer.conv.kernel.shape) * np.prod(layer.output.shape[1:3])
        elif isinstance(layer, keras.layers.Conv2D):
            total += 2.0 * np.prod(layer.kernel.shape) * np.prod(layer.output.shape[1:3])
        elif isinstance(layer, Upscale):
            total += 2.0 * np.prod(layer.conv.kernel.shape) * np.prod(layer.input.shape[1:3])
        elif isinstance(layer, ResidualBlock):
            total += 4.0 * np.prod(layer.conv1.kernel.shape) * np.prod(layer.input.shape[1:3])
        elif isinstance(layer, DoublingOutput):
            total += sum(2.0 * np.prod(c.kernel.shape) for c in layer.convs) * np.prod(
                layer.input.shape[1:3])
        elif isinstance(layer, keras.layers.Dense):
            total += 2.0 * np.prod(layer.kernel.shape)
    return total


@pytest.mark.parametrize("arch", ["df", "df-ud", "liae", "liae-ud"])
def test_flops_match_built_layers(arch):
    cfg = preset("quick", arch=arch, resolution=128)
    model = build_model(cfg)
    f = forward_flops(cfg)
    inter = model.inter if cfg.base == "df" else model.inter_ab
    decoder = model.decoder_a if cfg.base == "df" else model.decoder
    assert _flops(model.encoder) == f["encoder"]
    assert _flops(inter) == f["inter"]
    assert _flops(decoder) == f["decoder"]
    # -d: twice the output resolution for about the same decoder cost.
    if cfg.halved:
        half = forward_flops(preset("quick", arch=cfg.base, resolution=64))
        assert 0.9 < f["decoder"] / half["decoder"] < 1.3
    inters = 1.5 if cfg.base == "liae" else 1.0
    assert flops_per_sample(cfg) == 3 * (f["encoder"] + inters * f["inter"] + f["decoder"])


def test_convert_refuses_a_direction_the_layout_cannot_swap(tmp_path):
    from intracoder.convert.pipeline import check_model
    from intracoder.training import checkpoint, inference
    from intracoder.training.config import TrainConfig

    cfg = TrainConfig(preset="quick", arch="liae-ud", **TINY).resolved()
    model = build_model(cfg.model_config())
    model.compile(optimizer=keras.optimizers.Adam(1e-4))
    model.optimizer.build(model.trainable_variables)
    facesets = {side: {"path": str(tmp_path), "count": 1, "fingerprint": side} for side in "ab"}
    state = checkpoint.new_state(cfg.to_dict(), cfg.model_config(), cfg.loss_config(),
                                 facesets, "full")
    checkpoint.save(tmp_path, model, state)
    assert sorted(checkpoint.read_state(tmp_path)["files"]) == sorted(
        [*PARTS["liae"], "optimizer"])
    check_model(str(tmp_path), "b", "a2b")
    with pytest.raises(UserError, match="converts only a2b, not b2a"):
        check_model(str(tmp_path), "a", "b2a")
    loaded, _ = inference.load_model(tmp_path)
    for got, want in zip(loaded.decode(_faces("astronaut", 2, 4), "b"),
                         model.decode(_faces("astronaut", 2, 4), "b")):
        np.testing.assert_array_equal(got, want)
