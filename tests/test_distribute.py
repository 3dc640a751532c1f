"""Training over many devices and processes (training/distribute.py), the backend choice
(training/backend.py) and --batch-size auto (training/autobatch.py).

The JAX runs go in subprocesses: Keras picks its backend once, at import, and JAX its
device count (XLA_FLAGS=--xla_force_host_platform_device_count=2 gives this CPU two
devices) when it starts.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import cv2
import numpy as np
import pytest

from intracoder.config import add_arguments, from_args
from intracoder.errors import UserError
from intracoder.training import autobatch, distribute
from intracoder.training.backend import select_backend
from intracoder.training.config import TrainConfig, resume_config

ROOT = Path(__file__).resolve().parents[1]
HAS_JAX = importlib.util.find_spec("jax") is not None
needs_jax = pytest.mark.skipif(not HAS_JAX, reason="jax is not installed")
TINY = dict(preset="quick", arch="df", resolution=64, e_dims=8, ae_dims=32, d_dims=8,
            d_mask_dims=4, eyes_mouth_priority=False, lr=5e-4, warmup=0, log_every=1,
            preview_every=0, autosave_minutes=0, pipeline="threads", workers=1,
            mixed_precision="off")


def _env(**extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KERAS_DISTRIBUTION")}
    return {**env, "KERAS_BACKEND": "jax", "TF_CPP_MIN_LOG_LEVEL": "3",
            "INTRACODER_NO_PROGRESS": "1", "JAX_PLATFORMS": "cpu",
            "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
            **extra}


def _history(model_dir: Path) -> np.ndarray:
    state = json.loads((model_dir / "checkpoint" / "state.json").read_text())
    return np.array(state["history"])[:, 1:]


# --- the pieces, in this process -------------------------------------------------------

def test_cluster_shards_the_global_batch_and_scales_the_rate():
    two_hosts = [distribute.Cluster(p, 2, 4) for p in (0, 1)]
    assert [c.global_batch(8) for c in two_hosts] == [64, 64]
    assert [c.batch_part(8) for c in two_hosts] == [(0, 32), (32, 64)]
    assert two_hosts[0].chief and not two_hosts[1].chief
    assert two_hosts[0].lr_factor == pytest.approx(math.sqrt(8))
    single = distribute.Cluster()
    assert single.batch_part(8) is None and single.lr_factor == 1 and single.devices == 1
    assert single.agree(True, 12.5) == (True, 12.5)


def test_devices_need_jax_and_a_sane_count(monkeypatch):
    assert distribute.setup("1").distribution is None
    with pytest.raises(UserError, match="JAX backend"):
        distribute.setup("2")  # this process runs TensorFlow
    with pytest.raises(UserError, match="'all' or a number"):
        distribute.parse_devices("two")
    monkeypatch.setenv("KERAS_DISTRIBUTION_NUM_PROCESSES", "x")
    with pytest.raises(UserError, match="number of processes"):
        distribute.setup("1")


def test_backend_cannot_switch_once_keras_runs(monkeypatch):
    import keras

    monkeypatch.delenv("KERAS_BACKEND", raising=False)
    assert select_backend("auto") == keras.backend.backend()  # no GPU here: what runs
    other = "jax" if keras.backend.backend() != "jax" else "tensorflow"
    if importlib.util.find_spec(other):
        with pytest.raises(UserError, match="already running"):
            select_backend(other)
    with pytest.raises(UserError, match="unknown backend"):
        select_backend("theano")


def test_largest_batch_doubles_until_memory_runs_out():
    tried = []

    def fits(batch):
        tried.append(batch)
        return batch <= 100

    assert autobatch.largest_batch(fits, 8) == 64 and tried == [8, 16, 32, 64, 128]
    assert autobatch.largest_batch(lambda b: True, 8, limit=32) == 32
    with pytest.raises(MemoryError):
        autobatch.largest_batch(lambda b: False, 8)
    assert autobatch.is_out_of_memory(RuntimeError("RESOURCE_EXHAUSTED: Out of memory while "
                                                   "trying to allocate 3.1GiB"))
    assert not autobatch.is_out_of_memory(ValueError("shapes (2, 3) and (4,) mismatch"))


def test_try_step_tells_out_of_memory_from_other_failures():
    class Model:
        def __init__(self, error):
            self.error = error

        def train_on_batch(self, x, y):
            raise self.error

    oom = Model(RuntimeError("RESOURCE_EXHAUSTED: out of memory"))
    assert autobatch.try_step(lambda: oom, 16, False, 2) is False
    with pytest.raises(ValueError):
        autobatch.try_step(lambda: Model(ValueError("a real bug")), 16, False, 2)
    assert autobatch.auto_batch_size(lambda: oom, 16, False, 8, gpu=False) == 8  # CPU


def test_batch_size_auto_parses_and_resumes():
    import argparse

    parser = argparse.ArgumentParser()
    add_arguments(parser, TrainConfig)
    assert from_args(TrainConfig, parser.parse_args(["--batch-size", "auto"])).batch_size \
        == "auto"
    assert from_args(TrainConfig, parser.parse_args(["--batch-size", "16"])).batch_size == 16
    with pytest.raises(SystemExit):
        parser.parse_args(["--batch-size", "many"])
    stored = TrainConfig(preset="quick", batch_size=48).resolved()
    again = resume_config(stored.to_dict(), stored.model_config().to_dict(),
                          TrainConfig(batch_size="auto", devices="all"),
                          {"batch_size": "auto", "devices": "all"})
    assert again.batch_size == 48 and again.devices == "all"


# --- JAX on two CPU devices, and two processes ------------------------------------------

DATA_PARALLEL = textwrap.dedent("""
    import json, math, sys
    from pathlib import Path

    import keras
    import numpy as np

    from intracoder.models.autoencoder import build_model, preset
    from intracoder.training.config import TrainConfig
    from intracoder.training.loop import train

    a, b, out = sys.argv[1], sys.argv[2], Path(sys.argv[3])
    tiny = json.loads(sys.argv[4])
    assert keras.backend.backend() == "jax" and len(keras.distribution.list_devices()) == 2
    # The same global batch of 4 faces per side: 2 per device on two devices, or 4 on
    # one with the rate the square-root rule gives the two-device run.
    train(TrainConfig(a=a, b=b, model=str(out / "dp"), devices="2", batch_size=2,
                      iterations=20, **tiny), {})
    tiny["lr"] *= math.sqrt(2)
    train(TrainConfig(a=a, b=b, model=str(out / "one"), devices="1", batch_size=4,
                      iterations=20, **tiny), {})
    assert keras.distribution.distribution() is None  # restored after training

    # bf16 on the CPU: float32 heads, and the global policy restored afterwards.
    tiny |= {"mixed_precision": "bf16", "lr": 5e-4}
    train(TrainConfig(a=a, b=b, model=str(out / "bf16"), batch_size=2, iterations=3, **tiny),
          {})
    assert keras.mixed_precision.global_policy().name == "float32"
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    model = build_model(preset("quick", arch="df", resolution=64, e_dims=8, ae_dims=32,
                               d_dims=8, d_mask_dims=4))
    faces = np.random.default_rng(0).random((2, 64, 64, 3), np.float32)
    outputs = model((faces, faces))
    keras.mixed_precision.set_global_policy("float32")
    print("DTYPES", json.dumps(sorted({str(v.dtype) for v in outputs.values()})))
""")


@needs_jax
def test_two_devices_train_as_one_and_convert_under_tensorflow(facesets, finder, tmp_path):
    proc = subprocess.run(
        [sys.executable, "-c", DATA_PARALLEL, str(facesets[0]), str(facesets[1]),
         str(tmp_path), json.dumps(TINY)],
        env=_env(XLA_FLAGS="--xla_force_host_platform_device_count=2"),
        capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-4000:]
    assert "data parallel over 2 devices" in proc.stdout
    assert 'DTYPES ["float32"]' in proc.stdout
    state = json.loads((tmp_path / "dp" / "checkpoint" / "state.json").read_text())
    assert state["devices"] == {"count": 2, "processes": 1, "global_batch": 4,
                                "lr_factor": round(math.sqrt(2), 6)}
    dp, one = _history(tmp_path / "dp"), _history(tmp_path / "one")
    assert dp.shape == one.shape == (20, 2)
    assert dp[-1].sum() < dp[0].sum()  # it learns
    np.testing.assert_allclose(dp, one, rtol=2e-3)

    # The checkpoint it wrote converts here, under TensorFlow.
    from intracoder.cli import main
    from intracoder.convert.pipeline import ConvertConfig, convert
    from intracoder.samples import render_clip

    face, out = tmp_path / "face.png", tmp_path / "swapped.png"
    cv2.imwrite(str(face), render_clip("grace_hopper", n_frames=1, size=256).frames[0])
    summary = convert(ConvertConfig(input=str(face), output=str(out),
                                    model=str(tmp_path / "dp")), finder)
    assert summary.faces_swapped == 1 and main(["verify", str(out)]) == 0


def _launch(process_id: int, model_dir: Path, facesets, iterations: int, port: int):
    argv = [sys.executable, "-m", "intracoder.cli", "train", "--a", str(facesets[0]),
            "--b", str(facesets[1]), "--model", str(model_dir), "--iterations", str(iterations),
            "--devices", "all", "--batch-size", "2"]
    for key, value in TINY.items():
        flag = "--" + key.replace("_", "-")
        argv += ([flag] if value is True else [f"--no-{flag[2:]}"] if value is False
                 else [flag, str(value)])
    env = _env(KERAS_DISTRIBUTION_JOB_ADDRESSES=f"127.0.0.1:{port},127.0.0.1:{port + 1}",
               KERAS_DISTRIBUTION_NUM_PROCESSES="2", KERAS_DISTRIBUTION_PROCESS_ID=str(process_id))
    return subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@needs_jax
def test_two_processes_train_one_model_and_only_the_chief_writes(facesets, tmp_path):
    """Multi-machine training simulated on localhost (a 127.0.0.1 coordinator, gloo for
    the CPU collectives). Process 1 is pointed at a folder of its own to show that it
    writes nothing; then both resume the chief's model."""
    chief_dir, other_dir = tmp_path / "model", tmp_path / "other"

    def run_pair(dirs, iterations):
        port = _free_port()
        procs = [_launch(p, d, facesets, iterations, port) for p, d in enumerate(dirs)]
        outputs = [p.communicate(timeout=900)[0] for p in procs]
        for p, text in zip(procs, outputs):
            assert p.returncode == 0, text[-4000:]
        return outputs

    outputs = run_pair((chief_dir, other_dir), 6)
    assert "data parallel over 1 devices on each of 2 processes" in outputs[0]
    assert not other_dir.exists()
    state = json.loads((chief_dir / "checkpoint" / "state.json").read_text())
    assert state["iteration"] == 6 and state["devices"]["global_batch"] == 4
    # Both processes saw the same replicated losses at every step.
    finals = [line for text in outputs for line in text.splitlines() if "stopped at" in line]
    assert len(finals) == 2 and finals[0].split(" after ")[0] == finals[1].split(" after ")[0]

    run_pair((chief_dir, chief_dir), 9)
    state = json.loads((chief_dir / "checkpoint" / "state.json").read_text())
    assert state["iteration"] == 9 and len(state["history"]) == 9
