"""Pretrained starting points: ``intracoder pretrain`` on a pool of many people's faces, and
``train --from M``, a new pair model that starts from M's weights.

DeepFaceLab's pretrain mode (models/Model_SAEHD/Model.py) trains both sides on one pool of
faces with the random warp off, flips on and yaw-balanced sampling; when a pair model starts
from it the inter blocks are initialised afresh (the code that will have to tell person A
from person B) while the encoder and decoders, which have learnt faces in general, are kept.
``--from-reset none`` keeps everything instead; docs/quality.md measures both.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from intracoder.data.dataset import FaceSet, load_faceset, pool_faceset
from intracoder.errors import UserError
from intracoder.models.autoencoder import ModelConfig, SwapModel
from intracoder.training import checkpoint
from intracoder.training.config import MODEL_FIELDS, TrainConfig

# What DFL's pretrain mode fixes, unless the flags say otherwise.
PRETRAIN_RECIPE = {"random_warp": False, "flip": 0.5, "uniform_yaw": True}
# The parts trained afresh by --from-reset inter, per layout.
RESET = {"inter": {"df": ("inter",), "liae": ("inter_ab", "inter_a")}, "none": {}}


def check_mode(cfg: TrainConfig, state: dict | None, model_dir: Path) -> None:
    """One clear line when a command meets a model folder of the other kind."""
    if state is None:
        if cfg.pretrain and not cfg.faces:
            raise UserError("--faces (one or more folders of extracted faces) is required")
        return
    if cfg.from_model:
        raise UserError(f"{model_dir} already holds a model; --from starts a new one "
                        "(use a new --model folder)")
    pretrained = bool(state["config"].get("pretrain"))
    if pretrained and not cfg.pretrain:
        raise UserError(f"{model_dir} is a pretrained model; start a pair model from it: "
                        f"intracoder train --a A --b B --model NEW --from {model_dir}")
    if cfg.pretrain and not pretrained:
        raise UserError(f"{model_dir} is a pair model, not a pretrained one; pretrain into "
                        "a new --model folder")


def new_model_config(cfg: TrainConfig, given: dict[str, Any]) -> tuple[TrainConfig, dict | None]:
    """The config of a new model: pretraining's recipe filled in where the flags leave it
    open; with --from, M's architecture (a flag that contradicts it is an error). Returns
    the config and M's state (None without --from)."""
    if cfg.pretrain:
        cfg = dataclasses.replace(cfg, **{k: v for k, v in PRETRAIN_RECIPE.items()
                                          if k not in given})
    if not cfg.from_model:
        return cfg, None
    source = Path(cfg.from_model)
    state = checkpoint.read_state(source)
    if state is None:
        raise UserError(f"--from {source}: not a trained model folder (no checkpoint in it)")
    theirs = ModelConfig(**state["model_config"])
    inherited = {k: v for k, v in state["model_config"].items() if k not in given}
    if "preset" not in given:
        inherited["preset"] = state["config"]["preset"]
    cfg = dataclasses.replace(cfg, **inherited)
    ours = cfg.model_config()
    if ours != theirs:
        diff = ", ".join(f"--{k.replace('_', '-')} {getattr(theirs, k)} (not {getattr(ours, k)})"
                         for k in MODEL_FIELDS if getattr(ours, k) != getattr(theirs, k))
        raise UserError(f"--from {source}: that model was trained with {diff}; drop those "
                        "options to start from it")
    return cfg, state


def load_pool(folders: list[str], resolution: int, workers: int, held_out_every: int) -> FaceSet:
    sets = [load_faceset(f, resolution, workers, held_out_every) for f in folders]
    return sets[0] if len(sets) == 1 else pool_faceset(sets)


def start_from(model: SwapModel, source_state: dict, source: Path, reset: str,
               face_type: str) -> dict:
    """Copy the weights of the model in ``source`` into ``model`` except the parts ``reset``
    names; returns what state.json records of it."""
    if source_state["face_type"] != face_type:
        raise UserError(f"--from {source}: it was trained on {source_state['face_type']!r} "
                        f"faces, these are {face_type!r}")
    ckpt = checkpoint.find_checkpoint(source)
    fresh = RESET[reset].get(model.config.base, ())
    kept = [part for part in model.parts
            if part not in fresh and part != checkpoint.DISCRIMINATOR]
    for part in kept:
        checkpoint.load_weights_file(getattr(model, part), ckpt / f"{part}.weights.h5")
    return {"model": str(source.resolve()), "iteration": source_state["iteration"],
            "pretrained": bool(source_state["config"].get("pretrain")),
            "faces": source_state["facesets"]["a"], "kept": kept, "reset": list(fresh)}

