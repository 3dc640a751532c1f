"""`intracoder sort DIR --by ...`: order a faceset, drop its worst faces, restore them."""

from __future__ import annotations

import argparse
import dataclasses

from intracoder.config import add_arguments, from_args


def add_parser(sub) -> None:
    from intracoder.faces.sort import SortConfig

    p = sub.add_parser("sort", help="order a faceset (blur, pose, identity, similarity, "
                       "histogram); move the worst faces to DIR/_dropped/ and back",
                       description="Writes the order into DIR/faces.json (files keep their "
                       "names unless --rename). --drop-worst moves faces into DIR/_dropped/ "
                       "(never deleted; training skips them); --restore brings them all back.")
    add_arguments(p, SortConfig)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from intracoder.errors import UserError
    from intracoder.faces.sort import (DROPPED, SortConfig, check_drop, drop_worst, restore, sort_faces,
                                       write_order)

    cfg = from_args(SortConfig, args)
    if cfg.restore:
        if cfg.drop_worst is not None or cfg.rename:
            raise UserError("--restore cannot be combined with --drop-worst or --rename")
        back = restore(cfg.folder)
        print(f"restored {len(back)} faces from {cfg.folder}/{DROPPED}/" if back
              else f"nothing to restore in {cfg.folder}/{DROPPED}/")
        return 0
    if cfg.drop_worst is not None:
        check_drop(cfg.folder, cfg.drop_worst, cfg.by)  # before anything is written
    result = sort_faces(cfg.folder, cfg.by, cfg.reference)
    if cfg.drop_worst is not None:
        # Dropped first, so that --rename numbers only the faces that stay.
        write_order(cfg.folder, result)
        gone = drop_worst(cfg.folder, cfg.drop_worst, cfg.by, cfg.reference, result=result)
        print(f"moved {len(gone)} faces (worst by {cfg.by}) to {cfg.folder}/{DROPPED}/; "
              f"`intracoder sort {cfg.folder} --restore` brings them back")
        gone_set = set(gone)
        result = dataclasses.replace(result, names=[n for n in result.names if n not in gone_set],
                                     scores=[s for n, s in zip(result.names, result.scores)
                                             if n not in gone_set])
    write_order(cfg.folder, result, rename=cfg.rename)
    print(f"sorted {len(result.names)} faces by {cfg.by} in {result.seconds:.2f} s "
          f"({result.faces_per_second:.0f} faces/s); order written to {cfg.folder}/faces.json"
          + (" and the crops renamed" if cfg.rename else ""))
    return 0
