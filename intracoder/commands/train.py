"""`intracoder train --a DIR --b DIR --model DIR [--from PRETRAINED]`: train or resume a pair
model."""

from __future__ import annotations

import argparse

from intracoder.config import add_arguments, from_args, given_options


def add_parser(sub) -> None:
    from intracoder.training.config import TrainConfig

    p = sub.add_parser(
        "train", help="train a face-swap model on two facesets (resumes an existing model)",
        description="Train one shared encoder and a decoder per person on two folders of "
        "extracted faces. The model folder is created on the first run; running again on it "
        "resumes from its checkpoint with the settings stored there (flags that contradict "
        "them are an error). Ctrl-C saves and stops.")
    add_arguments(p, TrainConfig, skip=("faces",))
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from intracoder.training.config import TrainConfig
    from intracoder.training.loop import train

    return train(from_args(TrainConfig, args), given_options(TrainConfig, args))
