"""The shared-encoder face-swap autoencoder (DFL's DF and LIAE layouts) and its loss.

DF: one encoder + inter block shared by both identities, one decoder per identity that
predicts the face and its mask; the swap a->b is person a's faces through decoder b.
LIAE: one encoder, a shared inter (AB) and a private inter that only sees A, and ONE
decoder fed two codes side by side; the swap a->b decodes A's shared code twice.
Training reconstructs each person's own (randomly warped) faces. The loss lives in
``compute_loss`` so Keras' compiled train step runs it on every backend.
"""

from __future__ import annotations

import weakref
from typing import Any

import keras
import numpy as np
from keras import layers, ops

from intracoder.errors import UserError
from intracoder.models.blocks import (PACKAGE, DoublingOutput, Downscale, PixelNorm,
                                      ResidualBlock, Upscale)
from intracoder.models.config import (ARCHS, PARTS, PRESETS, LossConfig, ModelConfig,
                                      flops_per_sample, forward_flops, preset)
from intracoder.models.discriminator import build_discriminator
from intracoder.models.losses import TV_WEIGHT, gan_terms, reconstruction_loss, total_variation

__all__ = ["ModelConfig", "LossConfig", "PRESETS", "ARCHS", "PARTS", "preset",
           "flops_per_sample", "forward_flops", "SwapModel", "build_model", "DECODERS"]

DECODERS = ("a", "b")

# Inference graphs (encoder -> inter -> one decoder) per model, kept outside the model so
# Keras does not track them as sublayers (they would appear twice in saved weights).
_INFERENCE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def build_encoder(config: ModelConfig) -> keras.Model:
    inp = keras.Input((config.resolution, config.resolution, 3), name="face")
    x = inp
    for i, filters in enumerate(config.encoder_filters):
        x = Downscale(filters, name=f"down{i}")(x)
    x = layers.Flatten(name="flatten")(x)
    if config.pixel_norm:
        x = PixelNorm(name="pixel_norm")(x)
    return keras.Model(inp, x, name="encoder")


def build_inter(config: ModelConfig, name: str = "inter") -> keras.Model:
    """Dense bottleneck then back to a grid: the part that forces a compact, shared code."""
    low, dense, out = config.lowest_res, config.dense_res, config.inter_out
    inp = keras.Input((low * low * config.encoder_filters[-1],), name="code")
    x = layers.Dense(config.ae_dims, name="dense1")(inp)
    x = layers.Dense(dense * dense * out, name="dense2")(x)
    x = layers.Reshape((dense, dense, out), name="to_grid")(x)
    return keras.Model(inp, Upscale(out, name="up")(x), name=name)


def build_decoder(config: ModelConfig, name: str) -> keras.Model:
    """RGB branch (Upscale + ResidualBlock per step) and a lighter mask branch. The output
    heads compute in float32 under a mixed policy: a sigmoid in bf16 has 8 bits of mantissa,
    which costs the last bits of colour."""
    dense = config.dense_res
    inp = keras.Input((2 * dense, 2 * dense, config.decoder_in), name="latent")
    x = inp
    for i, filters in enumerate(config.decoder_filters):
        x = Upscale(filters, name=f"up{i}")(x)
        x = ResidualBlock(filters, name=f"res{i}")(x)
    if config.halved:
        rgb = DoublingOutput(3, name="rgb", dtype="float32")(x)
    else:
        rgb = layers.Conv2D(3, 1, activation="sigmoid", name="rgb", dtype="float32")(x)
    m = inp
    mask_filters = config.mask_filters + ((config.d_mask_dims,) if config.halved else ())
    for i, filters in enumerate(mask_filters):
        m = Upscale(filters, name=f"mask_up{i}")(m)
    mask = layers.Conv2D(1, 1, activation="sigmoid", name="mask", dtype="float32")(m)
    return keras.Model(inp, [rgb, mask], name=name)


@keras.saving.register_keras_serializable(package=PACKAGE)
class SwapModel(keras.Model):
    """A DF or LIAE swap model (``config.arch``): faces in, each person's face and mask out.

    call((warped_a, warped_b)) -> {"recon_a", "mask_a", "recon_b", "mask_b"}.
    train_on_batch(x=(warped_a, warped_b), y=(target_a, mask_a, target_b, mask_b
    [, priority_a, priority_b])) logs loss, loss_a and loss_b, and with the GAN on loss_d
    (the discriminator's) and loss_g (the adversarial term before ``gan_power``).

    ``gan_dims`` > 0: the model carries a patch discriminator of that base width (saved as
    one more part).
    It trains only while ``gan_power`` > 0 (``set_gan_power``, then compile again), with
    an optimiser of its own (training/optimizers.GanOptimizer); one discriminator judges
    both decoders' reconstructions, since it judges realism, not identity.
    """

    def __init__(self, config: ModelConfig, loss_config: LossConfig = LossConfig(),
                 gan_dims: int = 0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.config = config
        self.loss_config = loss_config
        self.gan_power = 0.0
        self.encoder = build_encoder(config)
        if config.base == "df":
            self.inter = build_inter(config)
            self.decoder_a = build_decoder(config, "decoder_a")
            self.decoder_b = build_decoder(config, "decoder_b")
        else:
            self.inter_ab = build_inter(config, "inter_ab")
            self.inter_a = build_inter(config, "inter_a")
            self.decoder = build_decoder(config, "decoder")
        self.gan_dims = int(gan_dims)
        self.discriminator = (build_discriminator(config.resolution, base_ch=self.gan_dims)
                              if self.gan_dims else None)
        if self.discriminator is not None:
            self.discriminator.trainable = False
        self.loss_a_tracker = keras.metrics.Mean(name="loss_a")
        self.loss_b_tracker = keras.metrics.Mean(name="loss_b")
        self.loss_d_tracker = keras.metrics.Mean(name="loss_d")
        self.loss_g_tracker = keras.metrics.Mean(name="loss_g")
        # Every sublayer is a functional model whose weights already exist, so the model
        # is complete now; no dummy forward pass (slow op by op on jax) is needed.
        self.built = True

    @property
    def parts(self) -> tuple[str, ...]:
        """Names of the sub-models, each saved as its own weights file."""
        return PARTS[self.config.base] + (("discriminator",) if self.discriminator else ())

    def set_gan_power(self, power: float) -> None:
        """Weight of the adversarial term from the next compile on (0: the discriminator
        is frozen and left out of the step)."""
        if power > 0 and self.discriminator is None:
            raise ValueError("this model has no discriminator: build it with gan_dims > 0")
        self.gan_power = float(power)
        if self.discriminator is not None:
            self.discriminator.trainable = power > 0

    def call(self, inputs, training: bool = False) -> dict:
        warped_a, warped_b = inputs
        n = ops.shape(warped_a)[0]
        # Both sides go through the shared part as one batch: one big conv per layer is
        # faster than two small ones on every backend, and it is what DFL does.
        code = self.encoder(ops.concatenate([warped_a, warped_b], axis=0))
        if self.config.base == "df":
            latent = self.inter(code)
            recon_a, mask_a = self.decoder_a(latent[:n])
            recon_b, mask_b = self.decoder_b(latent[n:])
        else:
            # DFL's LIAE: A (replaced) reads [private(A), shared(A)], B reads [shared(B),
            # shared(B)]; the swap of A is then [shared(A), shared(A)] through the one
            # decoder, which is why the shared code must carry A's pose and light.
            shared = self.inter_ab(code)
            private = self.inter_a(code[:n])
            latent = ops.concatenate([ops.concatenate([private, shared[:n]], axis=-1),
                                      ops.concatenate([shared[n:], shared[n:]], axis=-1)],
                                     axis=0)
            rgb, mask = self.decoder(latent)
            recon_a, recon_b, mask_a, mask_b = rgb[:n], rgb[n:], mask[:n], mask[n:]
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
        if not self.gan_power:
            return loss_a + loss_b
        recon = ops.concatenate([y_pred["recon_a"], y_pred["recon_b"]], axis=0)
        target = ops.concatenate([y[0], y[2]], axis=0)
        if self.loss_config.masked:  # DFL judges the masked faces, as the loss compares them
            mask = ops.concatenate([y[1], y[3]], axis=0)
            recon, target = recon * mask, target * mask
        adversarial, generator, loss_d = gan_terms(self.discriminator, target, recon)
        tv = TV_WEIGHT * ops.mean(total_variation(recon))
        self.loss_d_tracker.update_state(loss_d)
        self.loss_g_tracker.update_state(adversarial)
        return loss_a + loss_b + self.gan_power * generator + tv + loss_d

    def check_direction(self, direction: str) -> None:
        """UserError unless this layout can swap ``direction`` ('a2b' or 'b2a')."""
        if direction not in self.config.directions:
            raise UserError(f"a {self.config.arch} model swaps only "
                            f"{' and '.join(self.config.directions)}, not {direction}: its "
                            "private inter has seen only person A's faces")

    def inference_model(self, decoder: str) -> keras.Model:
        """Faces -> (rgb, mask) rendered as person ``decoder``, as one functional model.

        DF: encoder -> inter -> decoder_<person>. LIAE, as B: encoder -> inter_ab, its code
        twice -> decoder (the swap); as A: [inter_a, inter_ab] -> decoder, A's own
        reconstruction (meaningful on A's faces only)."""
        if decoder not in DECODERS:
            raise ValueError(f"decoder must be one of {DECODERS}, got {decoder!r}")
        models = _INFERENCE.setdefault(self, {})
        if decoder not in models:
            res = self.config.resolution
            inp = keras.Input((res, res, 3), name="face")
            code = self.encoder(inp)
            if self.config.base == "df":
                dec = self.decoder_a if decoder == "a" else self.decoder_b
                rgb, mask = dec(self.inter(code))
            else:
                shared = self.inter_ab(code)
                first = self.inter_a(code) if decoder == "a" else shared
                rgb, mask = self.decoder(layers.Concatenate(name="codes")([first, shared]))
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
                "config": self.config.to_dict(), "loss_config": self.loss_config.to_dict(),
                "gan_dims": self.gan_dims}

    @classmethod
    def from_config(cls, config: dict, custom_objects: dict | None = None) -> SwapModel:
        config = dict(config)
        model_config = ModelConfig(**config.pop("config"))
        loss_config = LossConfig(**config.pop("loss_config", {}))
        return cls(model_config, loss_config, **config)


def build_model(config: ModelConfig, loss_config: LossConfig = LossConfig(),
                gan_dims: int = 0) -> SwapModel:
    """A SwapModel with all weights created, ready to compile and train."""
    return SwapModel(config, loss_config, gan_dims, name="swap_model")
