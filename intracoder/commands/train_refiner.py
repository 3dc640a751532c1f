"""`intracoder train-refiner --model DIR`: train the colour-transfer / 2x super-resolution net."""

from __future__ import annotations

import argparse

from intracoder.config import add_arguments, from_args, given_options


def add_parser(sub) -> None:
    from intracoder.refiner.config import RefinerTrainConfig

    p = sub.add_parser(
        "train-refiner", help="train the refiner (learned colour transfer + upscale) of a model",
        description="Train a second network that takes the decoder's face at the model's "
        "resolution R and the destination face as colour reference, and returns the face at "
        "--scale x R (4R when the crops are large enough, else 2R) in the destination's "
        "colours. It trains self-supervised on the faces of the person whose decoder it "
        "follows (--side b for a2b) and is saved in MODEL/refiner/; running again resumes "
        "it. Every 10th face is held out for --eval. convert uses it with --color refiner. "
        "Ctrl-C saves and stops.")
    add_arguments(p, RefinerTrainConfig)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from intracoder.refiner.config import RefinerTrainConfig
    from intracoder.refiner.loop import train_refiner

    return train_refiner(from_args(RefinerTrainConfig, args),
                         given_options(RefinerTrainConfig, args))
