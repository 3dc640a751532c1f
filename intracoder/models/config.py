"""Model and loss configuration, the named presets, and the compute cost a config implies.

Kept free of Keras imports so the CLI can list presets, validate options and report FLOPs
without paying the seconds it takes to import a backend.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from intracoder.errors import UserError

N_DOWNSCALES = 4  # encoder: resolution -> resolution/16, as in DFL's DF architecture
ARCH_BASES = ("df", "liae")
ARCH_SUFFIXES = ("", "-u", "-d", "-ud")
ARCHS = tuple(base + suffix for base in ARCH_BASES for suffix in ARCH_SUFFIXES)
# The directions each layout can swap. LIAE's private inter only ever sees the faces that
# will be replaced (person A), so it can render B on A's faces but not A on B's.
DIRECTIONS = {"df": ("a2b", "b2a"), "liae": ("a2b",)}
# The parts each layout is made of, in checkpoint order. DFL's LIAE calls its private inter
# inter_B because its B is the destination, the person replaced; here that person is A.
PARTS = {"df": ("encoder", "inter", "decoder_a", "decoder_b"),
         "liae": ("encoder", "inter_ab", "inter_a", "decoder")}


def _help(text: str) -> dict:
    return {"help": text}


@dataclass(frozen=True)
class ModelConfig:
    arch: str = field(default="df", metadata=_help(
        "layout: df (one decoder per person) or liae (shared + private inter, one decoder), "
        "with DeepFaceLab's suffixes -u (pixel-normalised code) and -d (half-resolution "
        "decoder doubled by its output convs): " + ", ".join(ARCHS)))
    resolution: int = field(default=64, metadata=_help("face size in and out (multiple of 16)"))
    e_dims: int = field(default=32, metadata=_help("encoder base width"))
    ae_dims: int = field(default=128, metadata=_help("bottleneck width"))
    d_dims: int = field(default=32, metadata=_help("decoder base width"))
    d_mask_dims: int = field(default=16, metadata=_help("mask branch base width"))

    def __post_init__(self) -> None:
        if self.arch not in ARCHS:
            raise UserError(f"unknown --arch {self.arch!r}; choose from {', '.join(ARCHS)}")
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name == "arch":
                continue
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise UserError(f"model option {f.name} must be a positive integer, "
                                f"got {value!r}")
        step = 32 if self.halved else 16
        if self.resolution % step or self.resolution < 32:
            raise UserError(f"resolution must be a multiple of {step} and at least 32 for "
                            f"--arch {self.arch}, got {self.resolution}")

    @property
    def base(self) -> str:
        """'df' or 'liae'."""
        return self.arch.split("-")[0]

    @property
    def options(self) -> str:
        """DeepFaceLab's suffix letters: 'u', 'd', 'ud' or ''."""
        return self.arch.partition("-")[2]

    @property
    def pixel_norm(self) -> bool:
        return "u" in self.options

    @property
    def halved(self) -> bool:
        """-d: the decoder works at half resolution; its output convs double it."""
        return "d" in self.options

    @property
    def directions(self) -> tuple[str, ...]:
        return DIRECTIONS[self.base]

    @property
    def dense_res(self) -> int:
        """Grid size the inter's dense layer maps back to (DFL's lowest_dense_res)."""
        return self.resolution // (32 if self.halved else 16)

    @property
    def inter_out(self) -> int:
        """Channels of one inter's code: LIAE's inters are twice as wide (DFL ae_out_ch)."""
        return self.ae_dims * (2 if self.base == "liae" else 1)

    @property
    def decoder_in(self) -> int:
        """Channels into the decoder: LIAE's decoder reads two inter codes side by side."""
        return self.inter_out * (2 if self.base == "liae" else 1)

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
    # On by default: at 15 CPU minutes it cut the dlib 5-point expression error from 0.056 to
    # 0.046 and the swap keeps half-closed eyes (docs/quality.md).
    eyes_mouth_priority: bool = field(
        default=True, metadata=_help("extra L1 weight inside eye and mouth regions"))
    priority_weight: float = field(
        default=300.0, metadata=_help("weight of the eyes/mouth L1 term (DFL: 300)"))
    masked: bool = field(
        default=True, metadata=_help("compare faces only inside the (blurred) face mask"))

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


PRESETS: dict[str, ModelConfig] = {
    # The best model 15 minutes on a 2-core CPU can buy (docs/quality.md): DF keeps identity
    # better than LIAE at this budget, and -ud doubles the output to 128 px for 1.3x the
    # FLOPs of the 64-px DF it replaces (4.1 GFLOP per training face).
    "quick": ModelConfig(arch="df-ud", resolution=128, e_dims=32, ae_dims=128, d_dims=16,
                         d_mask_dims=8),
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
    """Forward FLOPs per face of each part: encoder, one inter, the decoder (RGB + mask)."""
    res, low, dense = config.resolution, config.lowest_res, config.dense_res
    enc, h, c_in = 0.0, res, 3
    for c in config.encoder_filters:
        h //= 2
        enc += _conv(5, c_in, c, h)
        c_in = c
    flat = low * low * config.encoder_filters[-1]
    ae, out = config.ae_dims, config.inter_out
    inter = 2.0 * flat * ae + 2.0 * ae * dense * dense * out + _conv(3, out, 4 * out, dense)
    dec, h, c_in = 0.0, 2 * dense, config.decoder_in
    for c in config.decoder_filters:
        dec += _conv(3, c_in, 4 * c, h)
        h *= 2
        dec += 2 * _conv(3, c, c, h)
        c_in = c
    if config.halved:  # one 1x1 and three 3x3 output convs at half size, then depth-to-space
        dec += _conv(1, c_in, 3, h) + 3 * _conv(3, c_in, 3, h)
    else:
        dec += _conv(1, c_in, 3, res)
    h, c_in = 2 * dense, config.decoder_in
    mask_filters = config.mask_filters + ((config.d_mask_dims,) if config.halved else ())
    for c in mask_filters:
        dec += _conv(3, c_in, 4 * c, h)
        h *= 2
        c_in = c
    dec += _conv(1, c_in, 1, res)
    return {"encoder": enc, "inter": inter, "decoder": dec}


def flops_per_sample(config: ModelConfig) -> float:
    """Training FLOPs per face: forward + backward (3x forward) through the shared encoder,
    the inter(s) and ONE decoder pass. A train step with batch n per side processes 2n
    samples. LIAE runs the shared inter on every face and the private one on A's half.

    Counts convolutions and dense layers only (bias, activations, pixel shuffle and the
    loss are a fraction of a percent).
    """
    f = forward_flops(config)
    inters = 1.5 if config.base == "liae" else 1.0
    return 3.0 * (f["encoder"] + inters * f["inter"] + f["decoder"])
