"""A trained model loaded to be used (convert, evaluate, the refiner's inputs): weights only,
no optimiser, no discriminator; a pretrained-only model is refused."""

from __future__ import annotations

from pathlib import Path

from intracoder.errors import UserError
from intracoder.models.autoencoder import LossConfig, ModelConfig, SwapModel, build_model
from intracoder.training.checkpoint import find_checkpoint, load_weights, read_state


def require_pair_model(state: dict, model_dir: str | Path) -> None:
    """One clear line for a pretrained model where a pair model is needed (convert,
    evaluate): its decoders have learnt faces in general, nobody in particular."""
    if state["config"].get("pretrain"):
        raise UserError(f"{model_dir} is a pretrained model, trained on many people but on no "
                        f"pair: train one from it first (intracoder train --a A --b B --model "
                        f"NEW --from {model_dir})")


def load_model(model_dir: str | Path) -> tuple[SwapModel, dict]:
    """The trained model of a model folder (weights only, not compiled) and its state.json,
    for convert and evaluation."""
    state = read_state(model_dir)
    if state is None:
        raise UserError(f"{model_dir}: not a trained model folder (no checkpoint in it)")
    require_pair_model(state, model_dir)
    model = build_model(ModelConfig(**state["model_config"]), LossConfig(**state["loss_config"]))
    load_weights(model, find_checkpoint(model_dir))  # convert needs no discriminator
    return model, state
