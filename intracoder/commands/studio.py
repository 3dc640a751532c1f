"""`intracoder studio`: the local web app over the workspace (intracoder/studio)."""

from __future__ import annotations

import argparse
import sys

from intracoder.config import add_arguments, from_args


def add_parser(sub) -> None:
    from intracoder.studio.config import StudioConfig

    p = sub.add_parser(
        "studio", help="a local web app: clean facesets, watch training, tune a conversion",
        description="Serve the studio for the folders under --workspace: faceset grids with "
        "sort/drop/restore, training started and watched in the page, a frame-by-frame "
        "convert tuner whose per-scene settings convert --settings reuses, and the evaluate "
        "report. Nothing is loaded from the internet.")
    add_arguments(p, StudioConfig)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from intracoder.studio.config import StudioConfig, check

    config = from_args(StudioConfig, args)
    check(config)
    from intracoder.studio.security import LOCAL

    if config.host not in LOCAL:
        print(f"warning: the studio is reachable from other machines on {config.host}; "
              "anyone with the printed token can read and write the workspace's facesets, "
              "models and videos, over plain HTTP", file=sys.stderr)
    from intracoder.studio.server import serve

    print(f"intracoder studio over the workspace {config.workspace}; Ctrl-C stops it",
          file=sys.stderr)
    serve(config)  # prints the page's address with this run's token
    return 0
