"""The model trains, saves and reloads under every installed Keras backend, with and
without its GAN.

Each backend runs in its own subprocess because Keras picks its backend once, at import.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

SCRIPT = textwrap.dedent("""
    import sys
    from pathlib import Path

    import keras
    import numpy as np

    from intracoder.models.autoencoder import build_model, preset

    assert keras.backend.backend() == sys.argv[1], keras.backend.backend()
    out = Path(sys.argv[2])
    rng = np.random.default_rng(0)
    n, res = 2, 64
    a, b = (rng.random((n, res, res, 3), dtype=np.float32) for _ in range(2))
    mask = np.ones((n, res, res, 1), np.float32)
    model = build_model(preset("quick", arch="df", resolution=64))
    model.compile(optimizer=keras.optimizers.Adam(5e-5, clipnorm=1.0))
    logs = [model.train_on_batch(x=(a, b), y=(a, mask, b, mask), return_dict=True)
            for _ in range(2)]
    assert all(np.isfinite(l["loss"]) and {"loss_a", "loss_b"} <= set(l) for l in logs), logs

    fresh = build_model(preset("quick", arch="df", resolution=64))
    for part in ("encoder", "inter", "decoder_a", "decoder_b"):
        getattr(model, part).save_weights(out / f"{part}.weights.h5")
        getattr(fresh, part).load_weights(out / f"{part}.weights.h5")
    model.save(out / "model.keras")
    reloaded = keras.saving.load_model(out / "model.keras")
    want = [np.asarray(w) for w in model.get_weights()]
    for other in (fresh, reloaded):
        for got, w in zip(other.get_weights(), want, strict=True):
            np.testing.assert_array_equal(np.asarray(got), w)
    # The swap path end to end, on the compiled predict path of each model.
    for got, w in zip(fresh.decode(a, "b"), model.decode(a, "b")):
        np.testing.assert_allclose(got, w, atol=1e-6)
    # The whole-model file carries the optimizer state: training resumes, not restarts.
    assert int(reloaded.optimizer.iterations) == 2
    # A phase switch mid-run (training/phase.py): lr dropout on, the moments carried over.
    from intracoder.training.optimizers import make_optimizer, replace_optimizer

    replace_optimizer(model, make_optimizer("adam", 5e-5, lr_dropout=0.3))
    logs.append(model.train_on_batch(x=(a, b), y=(a, mask, b, mask), return_dict=True))
    assert np.isfinite(logs[-1]["loss"]) and int(model.optimizer.iterations) == 3

    # The GAN: generator and discriminator train in one step, each with its own optimiser
    # (GanOptimizer), and both round-trip through a checkpoint.
    from intracoder.training import checkpoint
    from intracoder.training.optimizers import model_optimizer, parts

    def gan_model():
        gan = build_model(preset("quick", arch="df", resolution=64), gan_dims=8)
        gan.set_gan_power(0.1)
        gan.compile(optimizer=model_optimizer(gan, "adam", 5e-5, lr_dropout=0.3))
        gan.optimizer.build(gan.trainable_variables)
        return gan

    gan = gan_model()
    for _ in range(2):
        logs.append(gan.train_on_batch(x=(a, b), y=(a, mask, b, mask), return_dict=True))
    assert np.isfinite(logs[-1]["loss"]) and logs[-1]["loss_d"] > 0, logs[-1]
    assert [int(p.iterations) for p in parts(gan.optimizer)] == [2, 2]
    state = checkpoint.new_state({"lr": 5e-5}, gan.config, gan.loss_config, {}, "whole_face")
    checkpoint.save(out / "gan", gan, state)
    again = gan_model()
    checkpoint.restore(out / "gan", again)
    for got, w in zip(again.get_weights(), gan.get_weights(), strict=True):
        np.testing.assert_array_equal(np.asarray(got), np.asarray(w))
    for mine, theirs in zip(parts(again.optimizer), parts(gan.optimizer)):
        for got, w in zip(mine.variables, theirs.variables, strict=True):
            np.testing.assert_array_equal(np.asarray(got), np.asarray(w))
    logs.append(again.train_on_batch(x=(a, b), y=(a, mask, b, mask), return_dict=True))
    assert np.isfinite(logs[-1]["loss"]) and int(parts(again.optimizer)[1].iterations) == 3
    print("OK", logs[-1]["loss"])
""")


# jax spends most of its minute or more compiling (weight initialisers op by op, then the
# train step with XLA), so it runs with the slow tests.
@pytest.mark.parametrize("backend", ["tensorflow", pytest.param("jax", marks=pytest.mark.slow),
                                     "torch"])
def test_backend_train_save_load(backend, tmp_path):
    if importlib.util.find_spec(backend) is None:
        pytest.skip(f"{backend} is not installed")
    env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3",
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-c", SCRIPT, backend, str(tmp_path)], env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0 and "OK" in proc.stdout, proc.stdout + proc.stderr[-4000:]
