"""`intracoder evaluate`: identity, expression, sharpness, seam, flicker and reconstruction of
a swap, and the HTML report."""

from __future__ import annotations

import argparse

from intracoder.config import add_arguments, from_args


def add_parser(sub) -> None:
    from intracoder.metrics.evaluate import EvaluateConfig

    p = sub.add_parser(
        "evaluate", help="score a converted video (identity, expression, sharpness, seam, "
        "flicker)",
        description="Per frame and in summary: dlib identity distance of the swapped face to "
        "each person's faceset; expression error against the source, with the 468 face-mesh "
        "points and with dlib's 5 points (both per inter-ocular distance), and the pose "
        "difference; sharpness ratio (Laplacian variance of the face, swapped / source); seam "
        "score (edge added at the blend boundary, 1 = none); flicker ratio; and each decoder's "
        "reconstruction of held-out faces. --report writes an HTML page with a summary table "
        "(every figure beside its source baseline), per-frame plots, a frame strip and a "
        "side-by-side GIF. Without --swapped, converts first.")
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
