"""`intracoder extract INPUT OUT_DIR`: aligned face crops with metadata and masks."""

from __future__ import annotations

import argparse

from intracoder.config import add_arguments, from_args


def add_parser(sub) -> None:
    from intracoder.faces.extract import ExtractConfig

    p = sub.add_parser("extract", help="detect, align and save the faces of a video or images",
                       description="Detect faces (MTCNN), refine them with 468 dense landmarks, "
                       "align them to a mean face and save crops with metadata and masks. "
                       "Running again on the same INPUT and OUT_DIR resumes.")
    add_arguments(p, ExtractConfig)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from intracoder.faces.extract import ExtractConfig, extract

    summary = extract(from_args(ExtractConfig, args))
    print(summary.line())
    return 0
