"""The shared-encoder face-swap autoencoder (DFL's DF layout) and its training loss.

One encoder + inter block is shared by both identities, each identity gets its own decoder
that predicts the face and its mask. Training reconstructs each person's own (randomly
warped) faces; the swap a->b is person a's faces through decoder b. The loss lives in
``compute_loss`` so Keras' compiled train step runs it on every backend.
"""

from __future__ import annotations

import weakref
from typing import Any

import keras
import numpy as np
from keras import layers, ops

from intracoder.models.blocks import PACKAGE, Downscale, ResidualBlock, Upscale
from intracoder.models.config import (PRESETS, LossConfig, ModelConfig, flops_per_sample,
                                      forward_flops, preset)
from intracoder.models.losses import reconstruction_loss

__all__ = ["ModelConfig", "LossConfig", "PRESETS", "preset", "flops_per_sample",
           "forward_flops", "SwapModel", "build_model", "DECODERS"]

DECODERS = ("a", "b")

# Inference graphs (encoder -> inter -> one decoder) per model, kept outside the model so
# Keras does not track them as sublayers (they would appear twice in saved weights).
_INFERENCE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def build_encoder(config: ModelConfig) -> keras.Model:
    inp = keras.Input((config.resolution, config.resolution, 3), name="face")
    x = inp
    for i, filters in enumerate(config.encoder_filters):
        x = Downscale(filters, name=f"down{i}")(x)
    return keras.Model(inp, layers.Flatten(name="flatten")(x), name="encoder")


def build_inter(config: ModelConfig) -> keras.Model:
    """Dense bottleneck then back to a grid: the part that forces a compact, shared code."""
    low, ae = config.lowest_res, config.ae_dims
    inp = keras.Input((low * low * config.encoder_filters[-1],), name="code")
    x = layers.Dense(ae, name="dense1")(inp)
    x = layers.Dense(low * low * ae, name="dense2")(x)
    x = layers.Reshape((low, low, ae), name="to_grid")(x)
    return keras.Model(inp, Upscale(ae, name="up")(x), name="inter")


def build_decoder(config: ModelConfig, name: str) -> keras.Model:
    """RGB branch (Upscale + ResidualBlock per step) and a lighter mask branch."""
    low = config.lowest_res
    inp = keras.Input((2 * low, 2 * low, config.ae_dims), name="latent")
    x = inp
    for i, filters in enumerate(config.decoder_filters):
        x = Upscale(filters, name=f"up{i}")(x)
        x = ResidualBlock(filters, name=f"res{i}")(x)
    rgb = layers.Conv2D(3, 1, activation="sigmoid", name="rgb")(x)
    m = inp
    for i, filters in enumerate(config.mask_filters):
        m = Upscale(filters, name=f"mask_up{i}")(m)
    mask = layers.Conv2D(1, 1, activation="sigmoid", name="mask")(m)
    return keras.Model(inp, [rgb, mask], name=name)


@keras.saving.register_keras_serializable(package=PACKAGE)
class SwapModel(keras.Model):
    """One shared encoder + inter block, two decoders ('a', 'b'), each predicting RGB and mask.

    call((warped_a, warped_b)) -> {"recon_a", "mask_a", "recon_b", "mask_b"}.
    train_on_batch(x=(warped_a, warped_b), y=(target_a, mask_a, target_b, mask_b
    [, priority_a, priority_b])) logs loss = loss_a + loss_b, loss_a and loss_b.
    """

    def __init__(self, config: ModelConfig, loss_config: LossConfig = LossConfig(),
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.config = config
        self.loss_config = loss_config
        self.encoder = build_encoder(config)
        self.inter = build_inter(config)
        self.decoder_a = build_decoder(config, "decoder_a")
        self.decoder_b = build_decoder(config, "decoder_b")
        self.loss_a_tracker = keras.metrics.Mean(name="loss_a")
        self.loss_b_tracker = keras.metrics.Mean(name="loss_b")
        # Every sublayer is a functional model whose weights already exist, so the model
        # is complete now; no dummy forward pass (slow op by op on jax) is needed.
        self.built = True

    def call(self, inputs, training: bool = False) -> dict:
        warped_a, warped_b = inputs
        n = ops.shape(warped_a)[0]
        # Both sides go through the shared part as one batch: one big conv per layer is
        # faster than two small ones on every backend, and it is what DFL does.
        latent = self.inter(self.encoder(ops.concatenate([warped_a, warped_b], axis=0)))
        recon_a, mask_a = self.decoder_a(latent[:n])
        recon_b, mask_b = self.decoder_b(latent[n:])
        return {"recon_a": recon_a, "mask_a": mask_a, "recon_b": recon_b, "mask_b": mask_b}

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        if sample_weight is not None:
            raise ValueError("SwapModel does not support sample weights")
        if len(y) not in (4, 6):
            raise ValueError("y must be (target_a, mask_a, target_b, mask_b) plus optionally "
                             f"(priority_a, priority_b); got {len(y)} entries")
        priority_a, priority_b = (y[4], y[5]) if len(y) == 6 else (None, None)
        res = self.config.resolution
        loss_a = ops.mean(reconstruction_loss(y[0], y_pred["recon_a"], y[1], y_pred["mask_a"],
                                              res, self.loss_config, priority_a))
        loss_b = ops.mean(reconstruction_loss(y[2], y_pred["recon_b"], y[3], y_pred["mask_b"],
                                              res, self.loss_config, priority_b))
        self.loss_a_tracker.update_state(loss_a)
        self.loss_b_tracker.update_state(loss_b)
        return loss_a + loss_b

    def decoder(self, name: str) -> keras.Model:
        if name not in DECODERS:
            raise ValueError(f"decoder must be one of {DECODERS}, got {name!r}")
        return self.decoder_a if name == "a" else self.decoder_b

    def inference_model(self, decoder: str) -> keras.Model:
        """encoder -> inter -> decoder as one functional model (rgb, mask), built once."""
        models = _INFERENCE.setdefault(self, {})
        if decoder not in models:
            dec = self.decoder(decoder)
            res = self.config.resolution
            inp = keras.Input((res, res, 3), name="face")
            rgb, mask = dec(self.inter(self.encoder(inp)))
            models[decoder] = keras.Model(inp, [rgb, mask], name=f"swap_to_{decoder}")
        return models[decoder]

    def decode(self, faces: np.ndarray, decoder: str,
               batch_size: int = 32) -> tuple[np.ndarray, np.ndarray]:
        """Faces (NHWC, float in [0, 1] or uint8) through the shared encoder and the named
        decoder; returns (rgb NHWC, mask NHW1), float32 numpy in [0, 1].

        Uses the compiled predict path (XLA on jax, tf.function on tensorflow). A short
        last batch is padded up to a power of two, so at most log2(batch_size) + 1 batch
        shapes are ever compiled and no more than half of a batch is wasted.
        """
        model = self.inference_model(decoder)
        faces = np.asarray(faces)
        res = self.config.resolution
        if faces.ndim != 4 or faces.shape[1:] != (res, res, 3):
            raise ValueError(f"faces must be N x {res} x {res} x 3, got {faces.shape}")
        scale = 1.0 / 255.0 if faces.dtype == np.uint8 else 1.0
        rgbs, masks = [np.zeros((0, res, res, 3), np.float32)], [np.zeros((0, res, res, 1),
                                                                          np.float32)]
        for start in range(0, len(faces), batch_size):
            batch = faces[start:start + batch_size].astype(np.float32) * scale
            n = len(batch)
            padded = min(batch_size, 1 << (n - 1).bit_length())
            if padded > n:
                batch = np.concatenate([batch, np.zeros((padded - n,) + batch.shape[1:],
                                                        np.float32)])
            rgb, mask = model.predict_on_batch(batch)
            rgbs.append(np.asarray(rgb, np.float32)[:n])
            masks.append(np.asarray(mask, np.float32)[:n])
        return np.concatenate(rgbs), np.concatenate(masks)

    def get_config(self) -> dict:
        return {"name": self.name, "trainable": self.trainable,
                "config": self.config.to_dict(), "loss_config": self.loss_config.to_dict()}

    @classmethod
    def from_config(cls, config: dict, custom_objects: dict | None = None) -> SwapModel:
        config = dict(config)
        model_config = ModelConfig(**config.pop("config"))
        loss_config = LossConfig(**config.pop("loss_config", {}))
        return cls(model_config, loss_config, **config)


def build_model(config: ModelConfig, loss_config: LossConfig = LossConfig()) -> SwapModel:
    """A SwapModel with all weights created, ready to compile and train."""
    return SwapModel(config, loss_config, name="swap_model")
