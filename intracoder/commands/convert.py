"""`intracoder convert --model DIR INPUT OUTPUT`: swap the faces of a video, image or folder."""

from __future__ import annotations

import argparse

from intracoder.config import add_arguments, from_args


def add_parser(sub) -> None:
    from intracoder.convert.pipeline import ConvertConfig

    p = sub.add_parser(
        "convert", help="swap faces in a video, image or folder of images with a trained model",
        description="Find every face in INPUT, replace it with the other person of the model "
        "(a2b: A's faces become B), match its colour, blend it in and write OUTPUT: a video "
        "with the original audio, an image, or a folder of images. Every frame written "
        "carries an invisible watermark and the file a synthetic-content notice.")
    add_arguments(p, ConvertConfig)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from intracoder.convert.pipeline import ConvertConfig, convert

    config = from_args(ConvertConfig, args)
    summary = convert(config)
    print(f"{summary.line()} -> {config.output}")
    # A folder of videos where some could not be converted: each had its error line.
    return 1 if summary.inputs_failed else 0
