"""Training on faces extracted from the bundled portraits: it learns, it saves and resumes
exactly, it survives NaN and Ctrl-C, and it refuses a model folder that does not fit.

The model is the quick preset narrowed (e/d dims 8) so that a few dozen steps take
seconds on a 2-core CPU; the code paths are those of any preset.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

from intracoder.cli import main
from intracoder.config import given_options
from intracoder.data.dataset import PairDataset
from intracoder.errors import UserError
from intracoder.models.config import LossConfig, ModelConfig
from intracoder.training import checkpoint, inference
from intracoder.training.config import TrainConfig
from intracoder.training.guard import LR_DROP, MAX_ROLLBACKS
from intracoder.training.loop import train

ROOT = Path(__file__).resolve().parents[1]
HAS_TF = importlib.util.find_spec("tensorflow") is not None  # the TensorBoard event writer
# float32 on every CPU: the tests judge what fixed iterations learn, and auto picks bf16
# where the CPU has it (test_recipe.py keeps the bf16 path tested).
TINY = dict(preset="quick", arch="df", resolution=64, e_dims=8, ae_dims=32, d_dims=8,
            d_mask_dims=4, batch_size=4, eyes_mouth_priority=False,
            lr=5e-4, log_every=5, preview_every=0, mixed_precision="off")


def _config(facesets, model_dir, **kw) -> TrainConfig:
    return TrainConfig(a=str(facesets[0]), b=str(facesets[1]), model=str(model_dir),
                       **{**TINY, **kw})


def _weights(model_dir: Path) -> list[np.ndarray]:
    model, _ = inference.load_model(model_dir)
    return [keras.ops.convert_to_numpy(v) for v in model.weights]


@pytest.fixture(scope="module")
def straight(facesets, tmp_path_factory) -> Path:
    """30 iterations in one run, saved at 0, 10, 20 and 30 (two backups kept), with
    previews and TensorBoard scalars."""
    model_dir = tmp_path_factory.mktemp("train") / "straight"
    train(_config(facesets, model_dir, iterations=30, preview_every=15, tensorboard=HAS_TF,
                  save_every=10, keep_backups=2), {})
    return model_dir


def test_config_covers_every_model_and_loss_option():
    fields = set(TrainConfig.__dataclass_fields__)
    assert set(ModelConfig.__dataclass_fields__) <= fields
    assert set(LossConfig.__dataclass_fields__) <= fields
    from intracoder.cli import build_parser

    args = build_parser().parse_args(["train", "--model", "m", "--ae-dims", "64",
                                      "--no-random-warp", "--preset", "quick"])
    assert given_options(TrainConfig, args) == {"model": "m", "ae_dims": 64,
                                                "random_warp": False, "preset": "quick"}
    assert TrainConfig(preset="quick", ae_dims=64).model_config().ae_dims == 64


def test_loss_goes_down_and_monitoring_files(straight):
    state = checkpoint.read_state(straight)
    history = np.asarray(state["history"])
    assert state["iteration"] == 30 and history[:, 0].tolist() == [5, 10, 15, 20, 25, 30]
    first, last = history[:2, 1:].mean(), history[-2:, 1:].mean()
    # 30 steps of random batches: the draw alone moves this ratio by a few hundredths
    # (0.84-0.87 seen); an untrained or diverging model stays at 1 or above.
    assert last < 0.9 * first, (first, last)
    for name in ("preview.png", "loss.png"):
        assert (straight / name).stat().st_size > 10_000
    assert list((straight / "logs").glob("events.out.tfevents.*")) or not HAS_TF
    assert state["backend"] == keras.backend.backend() and state["versions"]["keras"]
    assert state["facesets"]["a"]["count"] >= 10 and state["channels"] == "RGB"


def test_save_load_gives_identical_weights_and_optimiser(tmp_path):
    from intracoder.models.autoencoder import build_model

    cfg = TrainConfig(**TINY)
    model = build_model(cfg.model_config(), cfg.loss_config())
    model.compile(optimizer=keras.optimizers.Adam(1e-4))
    model.optimizer.build(model.trainable_variables)
    rng = np.random.default_rng(0)
    for var in model.optimizer.variables:  # stand-in for a trained optimiser state
        var.assign(rng.random(var.shape).astype(var.dtype) * 3)
    state = checkpoint.new_state(cfg.to_dict(), cfg.model_config(), cfg.loss_config(), {}, "full")
    checkpoint.save(tmp_path, model, {**state, "iteration": 7})

    loaded, loaded_state = inference.load_model(tmp_path)
    assert loaded_state["iteration"] == 7
    for a, b in zip(model.weights, loaded.weights):
        assert np.array_equal(keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b))
    loaded.compile(optimizer=keras.optimizers.Adam(1e-4))
    loaded.optimizer.build(loaded.trainable_variables)
    checkpoint.restore(tmp_path, loaded)
    for a, b in zip(model.optimizer.variables, loaded.optimizer.variables):
        assert np.array_equal(keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b))


def test_resume_continues_exactly(straight, tmp_path):
    backups = sorted(p.name for p in (straight / "backups").iterdir())
    assert backups == ["iter-000000010", "iter-000000020"]
    model_dir = tmp_path / "resumed"
    shutil.copytree(straight / "backups" / "iter-000000010", model_dir / "checkpoint")
    again = dict(iterations=30, log_every=5, preview_every=0)
    train(TrainConfig(model=str(model_dir), **again), again)
    state = checkpoint.read_state(model_dir)
    assert state["iteration"] == 30
    assert [h[0] for h in state["history"]] == [5, 10, 15, 20, 25, 30]
    assert [p.name for p in (model_dir / "backups").iterdir()] == ["iter-000000010"]
    for a, b in zip(_weights(straight), _weights(model_dir)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_nan_rolls_back_lowers_lr_and_never_saves_nan(facesets, tmp_path, monkeypatch):
    poisoned = {4, 5, *range(12, 100)}  # two bad batches, then nothing but bad batches
    original = PairDataset.__getitem__

    def getitem(self, iteration):
        x, y = original(self, iteration)
        if iteration in poisoned:
            x = (x[0] * np.nan, x[1])
        return x, y

    monkeypatch.setattr(PairDataset, "__getitem__", getitem)
    model_dir = tmp_path / "nan"
    with pytest.raises(UserError, match=f"after {MAX_ROLLBACKS} rollbacks"):
        train(_config(facesets, model_dir, iterations=30, rollback_every=2, save_every=4), {})
    state = checkpoint.read_state(model_dir)
    # Batches 4 and 5 are undone (back to iteration 4 each time: an undone step is not an
    # iteration), batches 6..11 make iterations 5..10, the last save (every 4) is at 8.
    assert state["iteration"] == 8
    assert [(r["iteration"], r["restored"]) for r in state["rollbacks"]] == [(5, 4), (5, 4)]
    assert state["lr_scale"] == pytest.approx(LR_DROP ** 2)  # scales the schedule from here on
    assert all(np.isfinite(w).all() for w in _weights(model_dir))
    assert all(np.isfinite(h[1:]).all() for h in state["history"])


def test_ctrl_c_saves_a_loadable_checkpoint(facesets, tmp_path):
    model_dir = tmp_path / "interrupted"
    # A preview after every iteration prints "iteration N:", so Ctrl-C can be sent once a
    # step has really run (the first step traces for seconds on a busy machine).
    flags = [(f"--{k}" if v else f"--no-{k}") if isinstance(v, bool) else f"--{k}={v}"
             for k, v in ((k.replace("_", "-"), v) for k, v in {**TINY, "preview_every": 1}.items())]
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "train.py"), "--a", str(facesets[0]), "--b",
         str(facesets[1]), "--model", str(model_dir), "--iterations", "100000", *flags],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        for line in proc.stdout:
            if line.startswith("iteration "):
                break
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 0, err[-2000:]
    assert "(Ctrl-C)" in out
    model, state = inference.load_model(model_dir)
    assert state["iteration"] >= 1 and not (model_dir / checkpoint.STAGING).exists()


def test_a_save_cut_off_at_any_point_leaves_a_loadable_model(straight, tmp_path):
    # Killed while writing the new checkpoint: the half-written folder is ignored.
    half = tmp_path / "half"
    shutil.copytree(straight / "checkpoint", half / "checkpoint")
    shutil.copytree(straight / "checkpoint", half / checkpoint.STAGING)
    (half / checkpoint.STAGING / "state.json").unlink()
    assert checkpoint.find_checkpoint(half) == half / "checkpoint"
    # Killed between moving the old checkpoint to backups and renaming the new one in.
    between = tmp_path / "between"
    shutil.copytree(straight / "checkpoint", between / checkpoint.STAGING)
    shutil.copytree(straight / "backups", between / "backups")
    _, state = inference.load_model(between)
    assert state["iteration"] == 30
    checkpoint.read_state(between, repair=True)
    assert (between / "checkpoint" / "state.json").exists()
    assert not (between / checkpoint.STAGING).exists()


def test_mismatched_model_folder_is_one_clear_error(straight, facesets, tmp_path, capsys):
    common = ["train", "--model", str(straight), "--iterations", "30"]
    cases = [
        (["--ae-dims", "64"], "trained with --ae-dims 32, not --ae-dims 64"),
        # The warp is a phase switch (test_phase.py): only the batch size contradicts.
        (["--no-random-warp", "--batch-size", "2"], "with --batch-size 4, not --batch-size 2;"),
        (["--a", str(facesets[1]), "--b", str(facesets[0])], "swapped"),
        (["--mixed-precision", "bf16"], None),
    ]
    for extra, expected in cases:
        code = main(common + extra)
        err = capsys.readouterr().err.strip()
        if expected is None and code == 0:
            continue  # a GPU is visible: mixed precision is allowed
        assert code == 2 and len(err.splitlines()) == 1 and err.startswith("intracoder: error:")
        assert expected is None or expected in err, err
    assert main(["train", "--model", str(tmp_path / "none"), "--resume"]) == 2
    assert "no model to resume" in capsys.readouterr().err
    assert main(["train", "--a", str(facesets[0]), "--b", str(facesets[1]), "--model",
                 str(tmp_path / "big"), "--preset", "df256"]) == 2
    assert "128 px but the model is 256 px" in capsys.readouterr().err

    broken = tmp_path / "broken"
    shutil.copytree(straight / "checkpoint", broken / "checkpoint")
    state_file = broken / "checkpoint" / "state.json"
    state = json.loads(state_file.read_text())
    state["model_config"]["d_dims"] = 16
    state_file.write_text(json.dumps(state))
    with pytest.raises(UserError, match="does not fit the model"):
        inference.load_model(broken)


def test_held_out_faces_stay_out_of_training(facesets):
    from intracoder.data.dataset import load_faceset

    every = load_faceset(facesets[1], 64, 1, held_out_every=0)
    split = load_faceset(facesets[1], 64, 1, held_out_every=5)
    assert len(every) == 12 and len(split) == 9
    assert split.held_out == [p.name for p in sorted(facesets[1].glob("*.png"))][::5]
    assert split.info()["held_out"] == split.held_out
    assert split.fingerprint == every.fingerprint  # the folder is the same folder


@pytest.mark.parametrize("arch", ["df", "liae"])
def test_optimiser_state_is_restored_by_path_not_by_order(arch, tmp_path):
    """Each saved array is keyed by the model variable and slot it belongs to, so a file
    whose order differs (or a Keras that orders its variables differently) still gives
    every moment back to its own variable; by order, Adam's momentum and velocity of a
    variable (equal shapes) would be swapped silently."""
    import h5py

    from intracoder.models.autoencoder import build_model
    from intracoder.training import optimizers

    cfg = TrainConfig(**{**TINY, "arch": arch})
    model = build_model(cfg.model_config(), cfg.loss_config())
    model.compile(optimizer=keras.optimizers.Adam(1e-4))
    model.optimizer.build(model.trainable_variables)
    rng = np.random.default_rng(0)
    for var in model.optimizer.variables:
        var.assign(rng.random(var.shape).astype(var.dtype) * 3)
    paths = optimizers.keyed_paths(model.optimizer, optimizers.variable_names(model))
    assert len(set(paths)) == len(paths)  # Keras' own paths repeat across the decoders
    assert len({v.path for v in model.optimizer.variables}) < len(paths)
    assert "decoder_b/up0/conv/kernel:momentums" in paths or arch == "liae"

    state = checkpoint.new_state(cfg.to_dict(), cfg.model_config(), cfg.loss_config(), {}, "full")
    ckpt = checkpoint.save(tmp_path, model, {**state, "iteration": 7})
    with h5py.File(ckpt / checkpoint.OPTIMIZER, "r+") as f:  # the file's order reversed
        names = sorted(f.keys())
        data = [(f[n][()], f[n].attrs["path"]) for n in names]
        for n in names:
            del f[n]
        for n, (array, path) in zip(names, reversed(data)):
            f.create_dataset(n, data=array).attrs["path"] = path

    loaded, _ = inference.load_model(tmp_path)
    loaded.compile(optimizer=keras.optimizers.Adam(1e-4))
    loaded.optimizer.build(loaded.trainable_variables)
    checkpoint.restore(tmp_path, loaded)
    for a, b in zip(model.optimizer.variables, loaded.optimizer.variables):
        assert np.array_equal(keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b)), a.path


def test_optimiser_state_saved_before_keys_still_restores_by_order(tmp_path):
    from intracoder.models.autoencoder import build_model
    from intracoder.training import optimizers

    cfg = TrainConfig(**TINY)
    model = build_model(cfg.model_config(), cfg.loss_config())
    model.compile(optimizer=keras.optimizers.Adam(1e-4))
    model.optimizer.build(model.trainable_variables)
    for var in model.optimizer.variables:
        var.assign(np.full(var.shape, 0.5, var.dtype))
    arrays, _ = optimizers.state_of(model.optimizer)
    old_paths = [v.path for v in model.optimizer.variables]  # what older checkpoints hold
    fresh = keras.optimizers.Adam(1e-4)
    fresh.build(model.trainable_variables)
    assert optimizers.assign_state(fresh, arrays, old_paths, optimizers.variable_names(model))
    assert all(np.all(keras.ops.convert_to_numpy(v) == 0.5) for v in fresh.variables[2:])


def test_the_lowered_learning_rate_survives_a_resume(facesets, tmp_path, monkeypatch):
    """Two rollbacks quarter the rate; a resumed run trains on at the quartered schedule,
    not at the schedule's own rate (the optimiser file holds the rate last applied)."""
    from intracoder.training import schedule

    original = PairDataset.__getitem__

    def getitem(self, iteration):
        x, y = original(self, iteration)
        return ((x[0] * np.nan, x[1]) if iteration in (4, 5) else x), y

    monkeypatch.setattr(PairDataset, "__getitem__", getitem)
    model_dir = tmp_path / "model"
    cfg = _config(facesets, model_dir, iterations=8, rollback_every=2)
    train(cfg, {})
    monkeypatch.setattr(PairDataset, "__getitem__", original)
    train(_config(facesets, model_dir, iterations=10, rollback_every=2), {"iterations": 10})
    state = checkpoint.read_state(model_dir)
    assert state["iteration"] == 10 and state["lr_scale"] == pytest.approx(LR_DROP ** 2)
    arrays, paths = checkpoint.read_optimizer(model_dir / "checkpoint" / checkpoint.OPTIMIZER)
    applied = float(arrays[paths.index("learning_rate")])
    resolved = cfg.resolved()
    plan = schedule.plan(state.get("schedule"), resolved.lr, resolved.lr * resolved.lr_floor,
                         resolved.warmup, 9, state["train_seconds"], 10, None)
    assert applied == pytest.approx(plan.rate(9, state["train_seconds"]) * LR_DROP ** 2,
                                    rel=1e-4)


@pytest.mark.parametrize("damage", ["truncate_weights", "truncate_state", "delete_optimizer"])
def test_a_torn_checkpoint_falls_back_to_the_newest_good_backup(straight, tmp_path, damage,
                                                                 capsys):
    """Before: find_checkpoint only checked that state.json existed, so a checkpoint whose
    files were torn failed to load (resume and convert) although good backups were there."""
    model_dir = tmp_path / "model"
    shutil.copytree(straight, model_dir)
    backups = sorted((model_dir / "backups").iterdir())
    assert backups, "the fixture's model must have a backup"
    ckpt = model_dir / "checkpoint"
    if damage == "truncate_weights":
        path = ckpt / "encoder.weights.h5"
        path.write_bytes(path.read_bytes()[:100])
    elif damage == "truncate_state":
        (ckpt / "state.json").write_text('{"format": 1, "iter')
    else:
        (ckpt / checkpoint.OPTIMIZER).unlink()
    state = checkpoint.read_state(model_dir)
    assert checkpoint.find_checkpoint(model_dir) == backups[-1]
    assert state["iteration"] == json.loads((backups[-1] / "state.json").read_text())["iteration"]
    inference.load_model(model_dir)  # convert's loading works from the backup
    err = capsys.readouterr().err
    assert err.count("is torn") == 1 and "backups" in err

    found = checkpoint.find_checkpoint(model_dir, repair=True)  # as a resume does
    assert found == backups[-1] and not ckpt.exists()
    assert (model_dir / checkpoint.TORN).is_dir()  # kept for inspection, not deleted


def test_a_dead_data_worker_saves_and_stops_in_one_line(facesets, tmp_path, monkeypatch,
                                                         capsys):
    """A worker process killed under the trainer (out of memory, most often) stops the run
    after saving what it trained, with one line and exit code 2, not a traceback."""
    from intracoder.data import workers
    from intracoder.training import loop

    real = workers.make_prefetcher

    class Dying:
        def __init__(self, *args):
            self.inner, self.left = real(*args), 7

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.inner.close()

        @property
        def wait_seconds(self):
            return self.inner.wait_seconds

        def __next__(self):
            self.left -= 1
            if self.left < 0:
                raise workers.WorkerDied("data worker augment-0 died (exit code -9); "
                                         "out of memory?")
            return next(self.inner)

    monkeypatch.setattr(loop, "make_prefetcher", Dying)
    model_dir = tmp_path / "dies"
    code = main(["train", "--a", str(facesets[0]), "--b", str(facesets[1]), "--model",
                 str(model_dir), "--iterations", "20", "--preset", "quick", "--arch", "df",
                 "--resolution", "64", "--e-dims", "8", "--ae-dims", "32", "--d-dims", "8",
                 "--d-mask-dims", "4", "--batch-size", "2", "--preview-every", "0"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err[-1].startswith("intracoder: error: data worker augment-0 died")
    assert checkpoint.read_state(model_dir)["iteration"] == 7
