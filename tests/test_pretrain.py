"""Pretrained starting points on real faces: `intracoder pretrain` trains on a pool of folders
with DFL's pretrain recipe and records what it saw; a pretrained model cannot convert; `train
--from` copies the kept parts, re-initialises the inter block, refuses another architecture,
and starts lower than a model trained from scratch on the same faces."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from intracoder.cli import main
from intracoder.errors import UserError
from intracoder.models.autoencoder import ModelConfig, build_model
from intracoder.training import checkpoint, inference
from intracoder.training.config import TrainConfig
from intracoder.training.loop import train
from tests.test_training import TINY

PRETRAIN_ITERATIONS = 60


def _pretrain(facesets, model_dir, **kw) -> None:
    given = {"pretrain": True, **kw}
    train(TrainConfig(faces=[str(f) for f in facesets], model=str(model_dir),
                      **{**TINY, "workers": 1, "prefetch": 1, **given}), given)


def _pair(facesets, model_dir, **kw) -> None:
    train(TrainConfig(a=str(facesets[0]), b=str(facesets[1]), model=str(model_dir),
                      **{**TINY, "workers": 1, "prefetch": 1, **kw}), kw)


def _parts(model_dir) -> dict[str, list[np.ndarray]]:
    model = build_model(ModelConfig(**checkpoint.read_state(model_dir)["model_config"]))
    checkpoint.load_weights(model, checkpoint.find_checkpoint(model_dir))
    return {part: [keras.ops.convert_to_numpy(w) for w in getattr(model, part).weights]
            for part in model.parts}


@pytest.fixture(scope="module")
def pretrained(facesets, tmp_path_factory):
    model_dir = tmp_path_factory.mktemp("pretrain") / "pool"
    _pretrain(facesets, model_dir, iterations=PRETRAIN_ITERATIONS)
    return model_dir


def test_pretrain_uses_the_pool_with_dfl_recipe_and_records_it(pretrained, facesets):
    state = checkpoint.read_state(pretrained)
    assert state["config"]["pretrain"] and state["iteration"] == PRETRAIN_ITERATIONS
    cfg = state["config"]
    assert (cfg["random_warp"], cfg["flip"], cfg["uniform_yaw"]) == (False, 0.5, True)
    pool = state["facesets"]["a"]
    assert pool == state["facesets"]["b"]  # both sides draw from the one pool
    assert [s["path"] for s in pool["sources"]] == [str(f.resolve()) for f in facesets]
    assert all(s["count"] > 0 and len(s["fingerprint"]) == 16 for s in pool["sources"])
    assert pool["count"] == sum(s["count"] for s in pool["sources"])


def test_a_pretrained_model_cannot_convert_or_be_paired_in_place(pretrained, facesets, clips,
                                                                  tmp_path, capsys):
    with pytest.raises(UserError, match="pretrained model.*--from"):
        inference.load_model(pretrained)
    code = main(["convert", str(clips["grace_hopper"]), str(tmp_path / "out.mp4"),
                 "--model", str(pretrained)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code != 0 and len(err) == 1 and "pretrained model" in err[0]
    with pytest.raises(UserError, match="pretrained model; start a pair model"):
        _pair(facesets, pretrained, iterations=PRETRAIN_ITERATIONS + 2)
    pair = tmp_path / "pair"
    _pair(facesets, pair, iterations=1)
    with pytest.raises(UserError, match="pair model, not a pretrained one"):
        _pretrain(facesets, pair, iterations=2)


def test_from_copies_encoder_and_decoders_and_reinitialises_inter(pretrained, facesets,
                                                                    tmp_path):
    _pair(facesets, tmp_path / "m", iterations=0, from_model=str(pretrained))
    state = checkpoint.read_state(tmp_path / "m")
    assert state["from"]["kept"] == ["encoder", "decoder_a", "decoder_b"]
    assert state["from"]["reset"] == ["inter"] and state["from"]["pretrained"]
    assert state["from"]["iteration"] == PRETRAIN_ITERATIONS
    theirs, ours = _parts(pretrained), _parts(tmp_path / "m")
    for part in ("encoder", "decoder_a", "decoder_b"):
        for a, b in zip(theirs[part], ours[part], strict=True):
            np.testing.assert_array_equal(a, b)
    assert all(not np.array_equal(a, b) for a, b in zip(theirs["inter"], ours["inter"])
               if a.ndim == 2)
    inference.load_model(tmp_path / "m")  # a pair model: convert takes it

    _pair(facesets, tmp_path / "all", iterations=0, from_model=str(pretrained),
          from_reset="none")
    for a, b in zip(theirs["inter"], _parts(tmp_path / "all")["inter"], strict=True):
        np.testing.assert_array_equal(a, b)


def test_from_refuses_another_architecture(pretrained, facesets, tmp_path):
    with pytest.raises(UserError, match=r"--from .*--ae-dims 32 \(not 64\)"):
        _pair(facesets, tmp_path / "m", iterations=1, from_model=str(pretrained), ae_dims=64)
    assert not (tmp_path / "m" / "checkpoint").exists()
    with pytest.raises(UserError, match="no checkpoint"):
        _pair(facesets, tmp_path / "n", iterations=1, from_model=str(tmp_path / "nothing"))


def test_from_starts_lower_than_from_scratch(pretrained, facesets, tmp_path):
    # The same faces the pool held, the same seed and batches: only the start differs.
    _pair(facesets, tmp_path / "scratch", iterations=10)
    _pair(facesets, tmp_path / "from", iterations=10, from_model=str(pretrained))
    first = {name: np.mean([h[1] + h[2] for h in checkpoint.read_state(tmp_path / name)
                            ["history"]]) for name in ("scratch", "from")}
    assert first["from"] < 0.9 * first["scratch"], first


def test_the_pretrain_command_maps_onto_the_train_config():
    from intracoder.cli import build_parser
    from intracoder.config import from_args

    args = build_parser().parse_args(["pretrain", "--faces", "p1", "p2", "--model", "m",
                                      "--preset", "quick", "--minutes", "5"])
    cfg = from_args(TrainConfig, args, pretrain=True)
    assert (cfg.faces, cfg.model, cfg.preset, cfg.minutes, cfg.pretrain) == (
        ["p1", "p2"], "m", "quick", 5.0, True)
    with pytest.raises(SystemExit):  # a pair model's inputs are not pretrain options
        build_parser().parse_args(["pretrain", "--faces", "p", "--model", "m", "--a", "x"])
    args = build_parser().parse_args(["train", "--a", "x", "--b", "y", "--model", "m",
                                      "--from", "pre", "--from-reset", "none"])
    assert (args.from_model, args.from_reset) == ("pre", "none")
