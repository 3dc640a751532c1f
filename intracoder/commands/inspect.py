"""`intracoder inspect PATH`: the metadata of one crop, or a summary of a faceset folder
(``--sheet FILE.png``: and a contact sheet of its crops)."""

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
    p.add_argument("--sheet", metavar="FILE.png",
                   help="a folder: also draw its crops (in the order of the last `sort`) "
                   "labelled with blur and yaw into a contact sheet")
    p.add_argument("--masks", action="store_true",
                   help="on the sheet, outline the hull and tint red what the learned mask "
                   "(intracoder mask apply) leaves out")
    p.add_argument("--columns", type=int, default=8, help="contact sheet columns (default: 8)")
    p.add_argument("--limit", type=int, default=400,
                   help="at most this many crops on the sheet; 0: all (default: 400)")
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
    from intracoder.faces.sort import DROPPED

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
    dropped = folder / DROPPED
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
        "order": (index.data.get("order") or {}).get("by"),
        "dropped": len(list_faces(dropped)) if dropped.is_dir() else 0,
    }


def _crop(path: Path) -> dict:
    """A crop's metadata, and its masks: the hull's share of the crop and, once applied,
    the learned mask's share and how much of the hull it keeps."""
    from intracoder.faces.faceset import read_face
    from intracoder.faces.labels import labels_of

    face = read_face(path)
    out = dataclasses.asdict(face.meta)
    hull = face.mask >= 128
    masks = {"hull": {"area": round(float(hull.mean()), 4)}}
    if face.learned is not None:
        learned = face.learned >= 128
        masks["learned"] = {"area": round(float(learned.mean()), 4),
                            "keeps_of_hull": round(float(learned[hull].mean()), 4) if hull.any() else 0.0}
    masks["labels"] = len(labels_of(face.meta))
    out["masks"] = masks
    return out


def run(args: argparse.Namespace) -> int:
    path = Path(args.path)
    if args.sheet and not path.is_dir():
        raise UserError(f"--sheet needs a folder of faces; {path} is not one")
    if path.is_dir():
        out = summarise(path)
        if args.sheet:
            from intracoder.faces.sheet import contact_sheet

            sheet = contact_sheet(path, args.sheet, columns=args.columns, limit=args.limit or None,
                                  masks=args.masks)
            out["sheet"] = {"path": str(sheet.path), "shown": len(sheet.shown)}
    elif path.exists():
        out = _crop(path)
        if not args.landmarks:
            out["landmarks"] = f"<{len(out['landmarks'])} points; --landmarks to show>"
    else:
        raise UserError(f"{path}: no such file or folder")
    print(json.dumps(out, indent=1))
    return 0
