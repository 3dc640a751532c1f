"""`intracoder evaluate`: identity, expression, flicker and reconstruction of a swap."""

from __future__ import annotations

import argparse

from intracoder.config import add_arguments, from_args


def add_parser(sub) -> None:
    from intracoder.metrics.evaluate import EvaluateConfig

    p = sub.add_parser("evaluate", help="score a converted video (identity, expression, flicker)",
                       description="Per frame and in summary: dlib identity distance of the "
                       "swapped face to each person's faceset, 468-point landmark error and "
                       "pose difference against the source, flicker ratio, and each decoder's "
                       "reconstruction of held-out faces. Without --swapped, converts first.")
    add_arguments(p, EvaluateConfig)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from intracoder.metrics.evaluate import EvaluateConfig, evaluate, summary_lines

    cfg = from_args(EvaluateConfig, args)
    result = evaluate(cfg)
    print("\n".join(summary_lines(result)))
    if cfg.json:
        print(f"numbers: {cfg.json}")
    if cfg.report:
        print(f"report: {cfg.report}/index.html")
    return 0
