"""The ``intracoder`` command: one subcommand per stage, each mapped onto its config."""

from __future__ import annotations

import argparse
import errno
import importlib
import os
import sys

# Quiet TensorFlow's C++ start-up chatter before anything imports it.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("GLOG_minloglevel", "3")

from intracoder import __version__  # noqa: E402
from intracoder.errors import UserError  # noqa: E402

# Each module defines add_parser(subparsers); heavy imports stay inside its run().
COMMANDS = [
    "intracoder.commands.extract",
    "intracoder.commands.inspect",
    "intracoder.commands.sort",
    "intracoder.commands.demo",
    "intracoder.commands.evaluate",
    "intracoder.commands.train",
    "intracoder.commands.pretrain",
    "intracoder.commands.train_refiner",
    "intracoder.commands.verify",
    "intracoder.commands.mask",
    "intracoder.commands.convert",
    "intracoder.commands.studio",
]

# Commands that never touch Keras or TensorFlow, so they start instantly.
LIGHT_COMMANDS = {"inspect", "sort", "verify", "mask propagate", "mask labels"}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="intracoder",
        description="Face-swap trainer: extract faces, train a pair model, convert video. "
        "Every converted output is labelled as synthetic.")
    parser.add_argument("--version", action="version", version=f"intracoder {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        importlib.import_module(name).add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if hasattr(args, "backend"):  # train and pretrain: Keras reads it once, at import
            from intracoder.training.backend import select_backend

            select_backend(args.backend or "auto")
        step = getattr(args, "mask_command", None)  # a command's own step, e.g. mask labels
        if (f"{args.command} {step}" if step else args.command) not in LIGHT_COMMANDS:
            from intracoder.quiet import import_backend

            import_backend()
        return int(args.func(args) or 0)
    except UserError as exc:
        print(f"intracoder: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("intracoder: interrupted; finished work is kept", file=sys.stderr)
        return 130
    except OSError as exc:
        if exc.errno == errno.ENOSPC:
            print("intracoder: error: the disk is full; free some space and run again "
                  "(finished work is kept)", file=sys.stderr)
        else:
            print(f"intracoder: error: {exc.strerror or exc}: {exc.filename or ''}".rstrip(": "),
                  file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
