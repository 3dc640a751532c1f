"""Which Keras backend a run uses: chosen before Keras is imported, since Keras reads
KERAS_BACKEND once, at import.

``auto`` keeps a KERAS_BACKEND the user set; otherwise it picks JAX when an NVIDIA GPU is
visible to JAX (a jit-compiled step, bf16, and the only Keras 3.15 backend with
multi-device distribution) and TensorFlow (the default, which mtcnn needs anyway) on a CPU.
This module imports no Keras, TensorFlow or JAX at import time.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

from intracoder.errors import UserError

BACKENDS = ("auto", "tensorflow", "jax", "torch")


def nvidia_gpu_present() -> bool:
    """An NVIDIA driver with at least one GPU, seen without loading any framework."""
    gpus = Path("/proc/driver/nvidia/gpus")
    return (gpus.is_dir() and any(gpus.iterdir())) or Path("/dev/nvidia0").exists()


def _jax_sees_gpu() -> bool:
    if importlib.util.find_spec("jax") is None:
        return False
    import jax

    try:
        return bool(jax.devices("gpu"))
    except RuntimeError:  # jax without its CUDA plugin: CPU only
        return False


def auto_backend() -> str:
    if os.environ.get("KERAS_BACKEND"):
        return os.environ["KERAS_BACKEND"]
    if nvidia_gpu_present() and _jax_sees_gpu():
        return "jax"
    return "tensorflow"


def select_backend(choice: str) -> str:
    """Set KERAS_BACKEND for ``choice`` (a key of BACKENDS) and return the backend's name.

    UserError when the backend is not installed, or when Keras is already loaded with
    another backend (it cannot switch in a running process).
    """
    if choice not in BACKENDS:
        raise UserError(f"unknown backend {choice!r}; choose from {', '.join(BACKENDS)}")
    name = auto_backend() if choice == "auto" else choice
    if importlib.util.find_spec(name) is None:
        raise UserError(f"the {name} backend is not installed (pip install {name})")
    if "keras" in sys.modules:
        import keras

        loaded = keras.backend.backend()
        if loaded != name and choice != "auto":
            raise UserError(f"Keras is already running on {loaded}; start a new process "
                            f"with --backend {name} (or KERAS_BACKEND={name})")
        return loaded
    os.environ["KERAS_BACKEND"] = name
    return name
