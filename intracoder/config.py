"""Map a stage's config dataclass onto argparse one to one.

Each field becomes ``--field-name``; its type, default and ``metadata["help"]`` drive the
option. Fields with ``metadata["positional"]`` become positional arguments, and
``metadata["choices"]`` restricts values, ``metadata["nargs"]`` lets a list option take
several values after one flag (``--faces A B``), and ``metadata["flag"]`` names an option whose
field name cannot be its flag (``--from``). A bool field becomes an on/off flag pair.
"""

from __future__ import annotations

import argparse
import dataclasses
import typing
from typing import Any, TypeVar

T = TypeVar("T")


def _base_type(tp):
    origin = typing.get_origin(tp)
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return _base_type(args[0])
    if origin in (list, tuple):
        return list, _base_type(typing.get_args(tp)[0])[0]
    return tp, None


def add_arguments(parser: argparse.ArgumentParser, cls: type, skip: tuple[str, ...] = ()) -> None:
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.name in skip or f.metadata.get("cli") is False:
            continue
        tp, item = _base_type(hints[f.name])
        tp = f.metadata.get("type", tp)  # a parser of its own (e.g. a number or "auto")
        help_ = f.metadata.get("help", "")
        choices = f.metadata.get("choices")
        if f.metadata.get("positional"):
            parser.add_argument(f.name, type=tp, help=help_)
            continue
        flag = f.metadata.get("flag") or "--" + f.name.replace("_", "-")
        default = f.default if f.default is not dataclasses.MISSING else None
        if tp is bool:
            parser.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction,
                                default=None, help=f"{help_} (default: {default})")
        elif tp is list and f.metadata.get("nargs"):
            parser.add_argument(flag, dest=f.name, type=item, action="extend", nargs="+",
                                default=None, metavar=f.metadata.get("metavar"), help=help_)
        elif tp is list:
            parser.add_argument(flag, dest=f.name, type=item, action="append", default=None,
                                help=help_ + " (repeatable)")
        else:
            # None as the parsed default lets callers tell "not given" from "given".
            parser.add_argument(flag, dest=f.name, type=tp, choices=choices, default=None,
                                help=f"{help_} (default: {default})")


def from_args(cls: type[T], args: argparse.Namespace, **overrides: Any) -> T:
    """Build ``cls`` from parsed args: given options override the dataclass defaults."""
    kwargs = {}
    for f in dataclasses.fields(cls):
        value = getattr(args, f.name, None)
        if value is not None:
            kwargs[f.name] = value
    kwargs.update(overrides)
    return cls(**kwargs)


def given_options(cls: type, args: argparse.Namespace) -> dict[str, Any]:
    """The options the user actually set on the command line."""
    return {f.name: getattr(args, f.name) for f in dataclasses.fields(cls)
            if getattr(args, f.name, None) is not None}
