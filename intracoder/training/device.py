"""What the machine can compute on: a GPU, and whether the CPU has bf16 arithmetic.

bf16 on a CPU is fast only where the CPU multiplies bf16 natively (AVX512-BF16 on Intel
Cooper Lake / Sapphire Rapids and AMD Zen 4+, AMX on Sapphire Rapids): measured there, a
3x3 convolution runs at 444 GFLOP/s in bf16 against 220 in float32. Without it, bf16 is
emulated and slower than float32. The feature is read from the CPU flags, never guessed
from a machine name. auto picks bf16 on a GPU only: on a CPU no equal-time run of today's
recipe has shown bf16 winning (docs/quality.md, seventh pass), so a CPU trains in float32
unless bf16 is asked for by name.
"""

from __future__ import annotations

import functools
import platform
import sys
from pathlib import Path

import keras

from intracoder.errors import UserError

POLICIES = {"bf16": "mixed_bfloat16", "fp16": "mixed_float16"}
BF16_FLAGS = ("avx512_bf16", "amx_bf16")


def gpu_visible() -> bool:
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        return bool(tf.config.list_physical_devices("GPU"))
    if backend == "jax":
        import jax

        return any(d.platform == "gpu" for d in jax.devices())
    if backend == "torch":
        import torch

        return torch.cuda.is_available()
    return False


def cpu_flags(cpuinfo: str | None = None) -> set[str]:
    """The CPU feature flags (Linux /proc/cpuinfo); empty where they cannot be read."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return set()
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return set(value.split())
    return set()


@functools.cache
def cpu_has_bf16() -> bool:
    return platform.machine().lower() in ("x86_64", "amd64") and bool(
        cpu_flags() & set(BF16_FLAGS))


def resolve_precision(choice: str) -> str:
    """'off', 'bf16' or 'fp16' for a --mixed-precision choice on this machine: auto is bf16
    on a GPU and float32 on a CPU; UserError for fp16 without a GPU (float16 is not
    emulated on CPUs)."""
    gpu = gpu_visible()
    if choice == "auto":
        return "bf16" if gpu else "off"
    if choice == "fp16" and not gpu:
        raise UserError(f"--mixed-precision fp16 needs a GPU; the {keras.backend.backend()} "
                        "backend sees none (bf16 runs on CPUs with AVX512-BF16)")
    if choice == "bf16" and not (gpu or cpu_has_bf16()):
        # Asked for by name: it runs (every backend emulates bf16), but say what it costs.
        print("warning: this CPU has no bf16 arithmetic (flags "
              f"{' or '.join(BF16_FLAGS)}): bf16 is emulated and slower than float32",
              file=sys.stderr, flush=True)
    return choice
