"""Phase switches on real faces (training/phase.py): the late sharpening phase turns the random
warp off and learning-rate dropout on at the right iteration and keeps the optimiser's
moments; the same switches may be changed on resume and are recorded, while any other
recipe change is still refused."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from intracoder.errors import UserError
from intracoder.training import checkpoint, inference, optimizers
from intracoder.training.config import TrainConfig
from intracoder.training.loop import train
from intracoder.training.phase import SHARPEN_LR_DROPOUT
from intracoder.training.preview import write_loss_plot
from tests.test_training import TINY


def _cfg(facesets, model_dir, **kw) -> TrainConfig:
    return TrainConfig(a=str(facesets[0]), b=str(facesets[1]), model=str(model_dir),
                       **{**TINY, "workers": 1, "prefetch": 1, **kw})


@pytest.fixture(scope="module")
def sharpened(facesets, tmp_path_factory):
    """12 iterations, the last quarter in the sharpening phase; the dataset it trained on."""
    import intracoder.training.loop as loop

    seen = {}
    real = loop.PairDataset

    def spy(*args, **kwargs):
        seen["dataset"] = real(*args, **kwargs)
        return seen["dataset"]

    model_dir = tmp_path_factory.mktemp("phase") / "m"
    mp = pytest.MonkeyPatch()
    mp.setattr(loop, "PairDataset", spy)
    try:
        train(_cfg(facesets, model_dir, iterations=12, sharpen_last=0.25), {})
    finally:
        mp.undo()
    return model_dir, seen["dataset"]


def test_sharpening_turns_the_warp_off_and_lr_dropout_on_at_the_budget_share(sharpened):
    model_dir, dataset = sharpened
    state = checkpoint.read_state(model_dir)
    assert state["phases"] == [{"iteration": 9, "why": "--sharpen-last 0.25",
                                "random_warp": False, "lr_dropout": SHARPEN_LR_DROPOUT,
                                "sharpening": True}]
    assert state["phase"]["sharpening"] and state["iteration"] == 12
    # Before the switch the input is a warped copy of the target; from it on, no warp.
    (warped, _), (target, *_) = dataset[3]
    assert np.abs(warped - target).mean() > 0.02
    (warped, _), (target, *_) = dataset[10]
    np.testing.assert_array_equal(warped, target)


def test_the_switch_keeps_the_optimiser_state(sharpened, facesets, tmp_path):
    model_dir, _ = sharpened
    model, state = inference.load_model(model_dir)
    # Resumed in the phase: the optimiser is built with dropout and the saved state fits it.
    model.compile(optimizer=optimizers.make_optimizer("adam", 5e-4, lr_dropout=0.3))
    model.optimizer.build(model.trainable_variables)
    checkpoint.restore(model_dir, model)
    # 12 steps in all: the step count went on through the switch instead of restarting.
    assert int(keras.ops.convert_to_numpy(model.optimizer.iterations)) == 12
    # And a plain optimiser (the phase switched off again) takes the same state.
    model.compile(optimizer=optimizers.make_optimizer("adam", 5e-4))
    model.optimizer.build(model.trainable_variables)
    checkpoint.restore(model_dir, model)
    assert int(keras.ops.convert_to_numpy(model.optimizer.iterations)) == 12


def test_switches_change_on_resume_and_are_recorded(facesets, tmp_path):
    model_dir = tmp_path / "m"
    train(_cfg(facesets, model_dir, iterations=4), {})
    given = {"random_warp": False, "lr_dropout": 0.5, "iterations": 8}
    train(TrainConfig(model=str(model_dir), **{**TINY, **given}), given)
    state = checkpoint.read_state(model_dir)
    assert state["iteration"] == 8
    assert state["phases"] == [{"iteration": 4, "why": "resume", "random_warp": False,
                                "lr_dropout": 0.5}]
    assert state["config"]["random_warp"] is False and state["config"]["lr_dropout"] == 0.5
    path = tmp_path / "loss.png"
    write_loss_plot(state["history"], [], path, "t", state["rates"], state["phases"])
    assert path.stat().st_size > 10_000
    # Anything else in the recipe is still frozen.
    with pytest.raises(UserError, match="--lr 0.001"):
        train(TrainConfig(model=str(model_dir), iterations=10, lr=1e-3),
              {"iterations": 10, "lr": 1e-3})


def test_sharpen_last_needs_a_budget(facesets, tmp_path):
    with pytest.raises(UserError, match="--sharpen-last"):
        train(_cfg(facesets, tmp_path / "m", sharpen_last=0.2), {})
    with pytest.raises(UserError, match="--sharpen-last"):
        TrainConfig(sharpen_last=1.0)
