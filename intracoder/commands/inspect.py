"""`intracoder inspect PATH`: the metadata of one crop, or a summary of a faceset folder."""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import numpy as np

from intracoder.errors import UserError


def add_parser(sub) -> None:
    p = sub.add_parser("inspect", help="print a crop's metadata or a faceset summary as JSON")
    p.add_argument("path", help="an extracted face crop, or a folder of them")
    p.add_argument("--landmarks", action="store_true",
                   help="include the 468 landmarks of a single crop (long)")
    p.set_defaults(func=run)


def _stats(values: list[float]) -> dict:
    if not values:
        return {}
    a = np.asarray(values, np.float64)
    q = np.percentile(a, [0, 10, 50, 90, 100])
    return {"min": round(q[0], 2), "p10": round(q[1], 2), "median": round(q[2], 2),
            "p90": round(q[3], 2), "max": round(q[4], 2), "mean": round(float(a.mean()), 2)}


def summarise(folder: Path) -> dict:
    from intracoder.faces.faceset import FacesetIndex, list_faces, read_meta

    files = list_faces(folder)
    index = FacesetIndex(folder)
    rows = []
    for f in files:
        row = index.faces.get(f.name)
        if row is None:  # a crop copied in by hand: read its own metadata
            m = read_meta(f)
            row = {"blur": m.blur, "yaw": m.yaw, "pitch": m.pitch, "roll": m.roll,
                   "face_type": m.face_type, "size": m.size, "source": m.source}
        rows.append(row)
    if not rows:
        raise UserError(f"{folder}: no extracted faces in this folder")
    return {
        "folder": str(folder),
        "count": len(rows),
        "sources": sorted({r["source"] for r in rows}),
        "size": sorted({r["size"] for r in rows}),
        "face_type": sorted({r["face_type"] for r in rows}),
        "blur": _stats([r["blur"] for r in rows]),
        "yaw": _stats([r["yaw"] for r in rows]),
        "pitch": _stats([r["pitch"] for r in rows]),
        "roll": _stats([r["roll"] for r in rows]),
    }


def run(args: argparse.Namespace) -> int:
    from intracoder.faces.faceset import read_meta

    path = Path(args.path)
    if path.is_dir():
        out = summarise(path)
    elif path.exists():
        out = dataclasses.asdict(read_meta(path))
        if not args.landmarks:
            out["landmarks"] = f"<{len(out['landmarks'])} points; --landmarks to show>"
    else:
        raise UserError(f"{path}: no such file or folder")
    print(json.dumps(out, indent=1))
    return 0
