"""The mask net trains, saves, resumes and predicts under every installed Keras backend.

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

    from intracoder.models.segmenter import SegmenterConfig, build_segmenter
    from intracoder.segment import store
    from intracoder.segment.loss import segmentation_loss
    from intracoder.segment.predict import MaskPredictor

    assert keras.backend.backend() == sys.argv[1], keras.backend.backend()
    out = Path(sys.argv[2])
    rng = np.random.default_rng(0)
    config = SegmenterConfig(resolution=32, base=8, depth=2, max_channels=16)
    x = rng.random((4, 32, 32, 3), dtype=np.float32)
    y = np.zeros((4, 32, 32, 1), np.float32)
    y[:, 8:24, 8:24] = 1.0
    net = build_segmenter(config)
    net.compile(optimizer=keras.optimizers.Adam(1e-2), loss=segmentation_loss)
    losses = [float(net.train_on_batch(x, y, sample_weight=np.ones(4, np.float32)))
              for _ in range(3)]
    assert all(np.isfinite(losses)) and losses[-1] < losses[0], losses
    store.save(out, net, {"size": "small", "segmenter": config.__dict__, "face_type": "full",
                          "iteration": 3, "seconds": 0.0, "history": []})
    again = store.load_net(out, compile=True)
    for got, want in zip(again.get_weights(), net.get_weights(), strict=True):
        np.testing.assert_array_equal(np.asarray(got), np.asarray(want))
    assert int(again.optimizer.iterations) == 3  # the optimiser state came back: it resumes
    again.train_on_batch(x, y, sample_weight=np.ones(4, np.float32))
    assert int(again.optimizer.iterations) == 4
    masks = MaskPredictor.load(out).masks((x * 255).astype(np.uint8)[..., ::-1], size=48)
    assert masks.shape == (4, 48, 48) and masks.dtype == np.uint8
    print("OK", losses)
""")


# jax spends most of a minute compiling, so it runs with the slow tests.
@pytest.mark.parametrize("backend", ["tensorflow", pytest.param("jax", marks=pytest.mark.slow),
                                     "torch"])
def test_mask_net_trains_saves_and_resumes_on_every_backend(backend, tmp_path):
    if importlib.util.find_spec(backend) is None:
        pytest.skip(f"{backend} is not installed")
    env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3",
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-c", SCRIPT, backend, str(tmp_path)], env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0 and "OK" in proc.stdout, proc.stdout + proc.stderr[-4000:]
