"""The three building blocks of the DFL/faceswap autoencoders, as serialisable Keras layers.

Only keras layers and keras.ops are used so the same model trains and round-trips its
weights under the tensorflow, jax and torch backends.
"""

from __future__ import annotations

from typing import Any

import keras
from keras import layers, ops

PACKAGE = "intracoder"


@keras.saving.register_keras_serializable(package=PACKAGE)
class Conv2D(layers.Conv2D):
    """layers.Conv2D whose bias is added in float32 when it computes in bf16 or fp16.

    The bias gradient is the sum of the output gradient over batch and pixels, thousands of
    terms that mostly cancel. TensorFlow's CPU kernel for it (BiasAddGrad, which Keras' add
    of a bias becomes) sums bf16 in bf16: a quarter of the sum is rounding, and Adam turns
    that noise into full-size steps of every bias. Added in float32, the sum is float32 on
    every backend; the convolution itself still runs in the compute dtype. It keeps Keras'
    class name: weight files address a model's layers by class name, so models saved
    before it load as they were."""

    def call(self, inputs):
        if not self.use_bias or self.compute_dtype == "float32":
            return super().call(inputs)
        outputs = ops.cast(self.convolution_op(inputs, self.kernel), "float32")
        outputs = ops.cast(outputs + ops.cast(self.bias, "float32"), self.compute_dtype)
        return outputs if self.activation is None else self.activation(outputs)


@keras.saving.register_keras_serializable(package=PACKAGE)
class Downscale(layers.Layer):
    """5x5 stride-2 conv + LeakyReLU(0.1): halves the resolution, as in DFL's DownscaleBlock.

    The large kernel with stride 2 (instead of conv + pooling) is what both anchors use; it
    keeps the encoder shallow and cheap at the high resolutions where most pixels are.
    """

    def __init__(self, filters: int, kernel_size: int = 5, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.filters = filters
        self.kernel_size = kernel_size
        self.conv = Conv2D(filters, kernel_size, strides=2, padding="same", name="conv")
        self.act = layers.LeakyReLU(negative_slope=0.1)

    def build(self, input_shape: tuple) -> None:
        self.conv.build(input_shape)
        self.built = True

    def call(self, x):
        return self.act(self.conv(x))

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        return self.conv.compute_output_shape(input_shape)

    def get_config(self) -> dict:
        return {**super().get_config(), "filters": self.filters,
                "kernel_size": self.kernel_size}


@keras.saving.register_keras_serializable(package=PACKAGE)
class Upscale(layers.Layer):
    """3x3 conv to 4*filters channels, pixel shuffle to 2x resolution, LeakyReLU(0.1).

    Pixel shuffle (sub-pixel conv) instead of a transposed conv avoids the checkerboard
    artefacts that show up in decoded faces; it is DFL's and faceswap's choice.
    """

    def __init__(self, filters: int, kernel_size: int = 3, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.filters = filters
        self.kernel_size = kernel_size
        self.conv = Conv2D(filters * 4, kernel_size, padding="same", name="conv")
        self.act = layers.LeakyReLU(negative_slope=0.1)

    def build(self, input_shape: tuple) -> None:
        self.conv.build(input_shape)
        self.built = True

    def call(self, x):
        return self.act(ops.depth_to_space(self.conv(x), 2))

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        n, h, w, _ = input_shape
        return (n, None if h is None else h * 2, None if w is None else w * 2, self.filters)

    def get_config(self) -> dict:
        return {**super().get_config(), "filters": self.filters,
                "kernel_size": self.kernel_size}


@keras.saving.register_keras_serializable(package=PACKAGE)
class ResidualBlock(layers.Layer):
    """Two 3x3 convs with LeakyReLU(0.2) and an identity skip, DFL's decoder ResidualBlock.

    The skip lets the decoder add detail at each resolution without having to re-learn the
    upscaled content, which is what sharpens faces early in training.
    """

    def __init__(self, filters: int, kernel_size: int = 3, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.filters = filters
        self.kernel_size = kernel_size
        self.conv1 = Conv2D(filters, kernel_size, padding="same", name="conv1")
        self.conv2 = Conv2D(filters, kernel_size, padding="same", name="conv2")
        self.act1 = layers.LeakyReLU(negative_slope=0.2)
        self.act2 = layers.LeakyReLU(negative_slope=0.2)

    def build(self, input_shape: tuple) -> None:
        if input_shape[-1] != self.filters:
            raise ValueError(f"ResidualBlock({self.filters}) needs {self.filters} input "
                             f"channels, got {input_shape[-1]}")
        self.conv1.build(input_shape)
        self.conv2.build(self.conv1.compute_output_shape(input_shape))
        self.built = True

    def call(self, x):
        y = self.act1(self.conv1(x))
        return self.act2(self.conv2(y) + x)

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        return input_shape

    def get_config(self) -> dict:
        return {**super().get_config(), "filters": self.filters,
                "kernel_size": self.kernel_size}


@keras.saving.register_keras_serializable(package=PACKAGE)
class PixelNorm(layers.Layer):
    """x / sqrt(mean(x^2) + eps) over the last axis: DFL's -u option on the encoder's code.

    It fixes the scale of the code whatever the lighting or contrast of the input, so the
    dense bottleneck spends its width on what the face is doing, not on how bright it is.
    """

    def __init__(self, epsilon: float = 1e-6, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.epsilon = epsilon

    def call(self, x):
        return x * ops.rsqrt(ops.mean(ops.square(x), axis=-1, keepdims=True) + self.epsilon)

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        return input_shape

    def get_config(self) -> dict:
        return {**super().get_config(), "epsilon": self.epsilon}


@keras.saving.register_keras_serializable(package=PACKAGE)
class DoublingOutput(layers.Layer):
    """DFL's -d output: one 1x1 and three 3x3 convs to ``channels`` each, side by side,
    depth-to-space to twice the size, then sigmoid. The decoder runs at half the output
    resolution and each of the four convs paints one pixel of every 2x2 block, which is
    what buys twice the resolution for about the same FLOPs.
    """

    def __init__(self, channels: int = 3, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.channels = channels
        self.convs = [Conv2D(channels, 1 if i == 0 else 3, padding="same",
                             name=f"conv{i}", dtype=self.dtype_policy)
                      for i in range(4)]

    def build(self, input_shape: tuple) -> None:
        for conv in self.convs:
            conv.build(input_shape)
        self.built = True

    def call(self, x):
        y = ops.concatenate([conv(x) for conv in self.convs], axis=-1)
        return ops.sigmoid(ops.depth_to_space(y, 2))

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        n, h, w, _ = input_shape
        return (n, None if h is None else h * 2, None if w is None else w * 2, self.channels)

    def get_config(self) -> dict:
        return {**super().get_config(), "channels": self.channels}
