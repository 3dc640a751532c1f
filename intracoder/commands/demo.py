"""`intracoder demo`: the whole workflow on faces that ship with installed packages."""

from __future__ import annotations

import argparse

from intracoder.config import add_arguments, from_args


def add_parser(sub) -> None:
    from intracoder.demo import DemoConfig

    p = sub.add_parser("demo", help="run the whole workflow on built-in faces (no data needed)",
                       description="Render two short clips from the portraits bundled with "
                       "matplotlib (grace_hopper) and scikit-image (astronaut), and run the "
                       "workflow on them, printing where every output is.")
    add_arguments(p, DemoConfig)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from intracoder.demo import DemoConfig, run_demo

    run_demo(from_args(DemoConfig, args))
    return 0
