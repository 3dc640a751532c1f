"""TensorFlow, imported for MTCNN, stays off the GPU when another backend trains."""

from __future__ import annotations

import json
import types

import pytest

from intracoder import quiet


class _Config:
    def __init__(self, initialised: bool = False):
        self.calls, self.initialised = [], initialised

    def set_visible_devices(self, devices, kind):
        if self.initialised:
            raise RuntimeError("Visible devices cannot be modified after being initialized")
        self.calls.append((devices, kind))


@pytest.mark.parametrize("backend, hidden", [("jax", True), ("torch", True),
                                             ("tensorflow", False)])
def test_gpus_are_hidden_from_tensorflow_unless_it_is_the_backend(backend, hidden, monkeypatch):
    monkeypatch.setenv("KERAS_BACKEND", backend)
    tf = types.SimpleNamespace(config=_Config())
    quiet._keep_off_the_gpu(tf)
    assert tf.config.calls == ([([], "GPU")] if hidden else [])


def test_the_backend_is_read_from_keras_json_too(monkeypatch, tmp_path):
    monkeypatch.delenv("KERAS_BACKEND", raising=False)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    assert quiet.keras_backend_name() == "tensorflow"
    (tmp_path / "keras.json").write_text(json.dumps({"backend": "jax"}))
    assert quiet.keras_backend_name() == "jax"
    tf = types.SimpleNamespace(config=_Config())
    quiet._keep_off_the_gpu(tf)
    assert tf.config.calls == [([], "GPU")]


def test_tensorflow_already_initialised_is_not_an_error(monkeypatch):
    monkeypatch.setenv("KERAS_BACKEND", "jax")
    quiet._keep_off_the_gpu(types.SimpleNamespace(config=_Config(initialised=True)))
