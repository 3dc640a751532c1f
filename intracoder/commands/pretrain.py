"""`intracoder pretrain --faces DIR [DIR ...] --model DIR`: a starting point for pair models,
trained on faces of many people (training/pretrained.py)."""

from __future__ import annotations

import argparse

from intracoder.config import add_arguments, from_args, given_options

# A pair model's inputs and its starting point make no sense for a pretrained model.
PAIR_ONLY = ("a", "b", "faces", "from_model", "from_reset")


def add_parser(sub) -> None:
    from intracoder.training.config import TrainConfig

    p = sub.add_parser(
        "pretrain", help="pretrain a model on faces of many people, to start pair models from",
        description="Train the shared encoder and the decoders on a pool of faces of many "
        "people (any number of extracted folders), both sides drawing from the pool, with the "
        "random warp off, flips on and yaw-balanced sampling (DeepFaceLab's pretrain mode). "
        "Start a pair model from it with `intracoder train --a A --b B --model NEW --from "
        "PRETRAINED`; a pretrained model cannot convert. Running again resumes.")
    p.add_argument("--faces", nargs="+", required=True, metavar="DIR",
                   help="folders of extracted faces (of many people)")
    add_arguments(p, TrainConfig, skip=PAIR_ONLY)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from intracoder.training.config import TrainConfig
    from intracoder.training.loop import train

    cfg = from_args(TrainConfig, args, pretrain=True)
    return train(cfg, given_options(TrainConfig, args) | {"pretrain": True})
