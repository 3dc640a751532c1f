"""Model and loss configuration, the named presets, and the compute cost a config implies.

Kept free of Keras imports so the CLI can list presets, validate options and report FLOPs
without paying the seconds it takes to import a backend.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from intracoder.errors import UserError

N_DOWNSCALES = 4  # encoder: resolution -> resolution/16, as in DFL's DF architecture


def _help(text: str) -> dict:
    return {"help": text}


@dataclass(frozen=True)
class ModelConfig:
    resolution: int = field(default=64, metadata=_help("face size in and out (multiple of 16)"))
    e_dims: int = field(default=32, metadata=_help("encoder base width"))
    ae_dims: int = field(default=128, metadata=_help("bottleneck width"))
    d_dims: int = field(default=32, metadata=_help("decoder base width"))
    d_mask_dims: int = field(default=16, metadata=_help("mask branch base width"))

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise UserError(f"model option {f.name} must be a positive integer, "
                                f"got {value!r}")
        if self.resolution % 16 or self.resolution < 32:
            raise UserError(f"resolution must be a multiple of 16 and at least 32, "
                            f"got {self.resolution}")

    @property
    def lowest_res(self) -> int:
        """Spatial size at the bottleneck (the encoder's output grid)."""
        return self.resolution // 2 ** N_DOWNSCALES

    @property
    def encoder_filters(self) -> tuple[int, ...]:
        return tuple(self.e_dims * 2 ** i for i in range(N_DOWNSCALES))

    @property
    def decoder_filters(self) -> tuple[int, ...]:
        return (self.d_dims * 8, self.d_dims * 4, self.d_dims * 2)

    @property
    def mask_filters(self) -> tuple[int, ...]:
        return (self.d_mask_dims * 8, self.d_mask_dims * 4, self.d_mask_dims * 2)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class LossConfig:
    dssim_weight: float = field(default=10.0, metadata=_help("weight of the DSSIM term"))
    mse_weight: float = field(default=10.0, metadata=_help("weight of the pixel MSE term"))
    mask_weight: float = field(default=10.0, metadata=_help("weight of the mask MSE term"))
    eyes_mouth_priority: bool = field(
        default=False, metadata=_help("extra L1 weight inside eye and mouth regions"))
    priority_weight: float = field(
        default=300.0, metadata=_help("weight of the eyes/mouth L1 term (DFL: 300)"))
    masked: bool = field(
        default=True, metadata=_help("compare faces only inside the (blurred) face mask"))

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


PRESETS: dict[str, ModelConfig] = {
    # Trains visibly in minutes on a 2-core CPU: DF layout at 64 px with narrow decoders
    # (d_dims 16 costs 3.1 GFLOP per training face; the ModelConfig defaults cost 11).
    "quick": ModelConfig(resolution=64, e_dims=32, ae_dims=128, d_dims=16, d_mask_dims=8),
    # DFL SAEHD defaults (ae 256, e 64, d 64, mask 22) on the DF layout at 128 px.
    "df128": ModelConfig(resolution=128, e_dims=64, ae_dims=256, d_dims=64, d_mask_dims=22),
    # Same widths at 256 px; the loss switches to DFL's two-window DSSIM at this size.
    "df256": ModelConfig(resolution=256, e_dims=64, ae_dims=256, d_dims=64, d_mask_dims=22),
}


def preset(name: str, **overrides: int) -> ModelConfig:
    """The named preset with some fields replaced, validated."""
    if name not in PRESETS:
        raise UserError(f"unknown model preset {name!r}; choose from {', '.join(PRESETS)}")
    known = {f.name for f in dataclasses.fields(ModelConfig)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise UserError(f"unknown model option(s) {', '.join(unknown)}; "
                        f"known: {', '.join(sorted(known))}")
    return dataclasses.replace(PRESETS[name], **overrides)


def _conv(k: int, c_in: int, c_out: int, h: int) -> float:
    """Forward FLOPs (2 per multiply-add) of a k x k conv producing an h x h x c_out map."""
    return 2.0 * k * k * c_in * c_out * h * h


def forward_flops(config: ModelConfig) -> dict[str, float]:
    """Forward FLOPs per face of each part: encoder, inter, one decoder (RGB + mask)."""
    res, low = config.resolution, config.lowest_res
    enc, h, c_in = 0.0, res, 3
    for c in config.encoder_filters:
        h //= 2
        enc += _conv(5, c_in, c, h)
        c_in = c
    flat = low * low * config.encoder_filters[-1]
    ae = config.ae_dims
    inter = 2.0 * flat * ae + 2.0 * ae * low * low * ae + _conv(3, ae, 4 * ae, low)
    dec, h, c_in = 0.0, 2 * low, ae
    for c in config.decoder_filters:
        dec += _conv(3, c_in, 4 * c, h)
        h *= 2
        dec += 2 * _conv(3, c, c, h)
        c_in = c
    dec += _conv(1, c_in, 3, res)
    h, c_in = 2 * low, ae
    for c in config.mask_filters:
        dec += _conv(3, c_in, 4 * c, h)
        h *= 2
        c_in = c
    dec += _conv(1, c_in, 1, res)
    return {"encoder": enc, "inter": inter, "decoder": dec}


def flops_per_sample(config: ModelConfig) -> float:
    """Training FLOPs per face: forward + backward (3x forward) through the shared encoder,
    inter and ONE decoder. A train step with batch n per side processes 2n samples.

    Counts convolutions and dense layers only (bias, activations, pixel shuffle and the
    loss are a fraction of a percent).
    """
    return 3.0 * sum(forward_flops(config).values())
