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


def import_tensorflow():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    with native_stderr_silenced():
        import tensorflow as tf
    return tf


def import_backend() -> None:
    """Load Keras and its backend (and TensorFlow, which mtcnn needs, when installed) with
    their native start-up notices silenced."""
    import importlib.util

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    with native_stderr_silenced():
        if importlib.util.find_spec("tensorflow") is not None:
            import tensorflow  # noqa: F401
        import keras  # noqa: F401
