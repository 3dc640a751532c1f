"""Silence the C++ start-up chatter of TensorFlow and LiteRT.

TensorFlow 2.21 prints absl/oneDNN/CUDA notices, and LiteRT an XNNPACK notice, from C++
before any log level is read, so environment variables alone do not silence them. We
point file descriptor 2 at a temporary file while they load and replay it only if
loading fails.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from typing import Iterator


@contextlib.contextmanager
def native_stderr_silenced() -> Iterator[None]:
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield
        except BaseException:
            os.dup2(saved, 2)
            sink.seek(0)
            sys.stderr.write(sink.read().decode(errors="replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def keras_backend_name() -> str:
    """The backend Keras will load, read as Keras reads it (KERAS_BACKEND, else the
    keras.json under KERAS_HOME or ~/.keras), without importing Keras."""
    if os.environ.get("KERAS_BACKEND"):
        return os.environ["KERAS_BACKEND"]
    import json

    home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    try:
        with open(os.path.join(home, "keras.json")) as f:
            return str(json.load(f).get("backend", "tensorflow"))
    except (OSError, ValueError):
        return "tensorflow"


def _keep_off_the_gpu(tf) -> None:
    """Under the jax or torch backend TensorFlow is there for MTCNN only; left alone it would
    claim the GPU's memory and starve the backend that trains. Hidden before TensorFlow
    initialises its devices (after that the call raises, and the devices are TensorFlow's)."""
    if keras_backend_name() == "tensorflow":
        return
    try:
        tf.config.set_visible_devices([], "GPU")
    except RuntimeError:  # already initialised by an earlier import: nothing left to do
        pass


def import_tensorflow():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    with native_stderr_silenced():
        import tensorflow as tf
    _keep_off_the_gpu(tf)
    return tf


def import_backend() -> None:
    """Load Keras and its backend (and TensorFlow, which mtcnn needs, when installed) with
    their native start-up notices silenced."""
    import importlib.util

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    with native_stderr_silenced():
        if importlib.util.find_spec("tensorflow") is not None:
            import tensorflow

            _keep_off_the_gpu(tensorflow)
        import keras  # noqa: F401
