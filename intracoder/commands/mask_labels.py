"""`intracoder mask propagate|labels`: carry hand-drawn mask labels to nearby frames, list
them, and move them between extractions as one JSON file.

``add_label_parsers(sub)`` adds the two subcommands to the ``mask`` command's subparsers.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

EXPORT_FORMAT = "intracoder-mask-labels"


def add_label_parsers(sub) -> None:
    p = sub.add_parser("propagate", help="carry a crop's hand-drawn mask labels to the crops "
                       "of nearby frames of the same face",
                       description="Maps the polygons of CROP_NAME through the 468-point face "
                       "mesh onto every crop of the same source and face within --radius frames. "
                       "Crops labelled by hand are kept unless --overwrite-user; a crop that "
                       "already carries a label propagated from a nearer frame keeps it.")
    p.add_argument("faces_dir", metavar="FACES_DIR", help="a folder of extracted faces")
    p.add_argument("crop_name", metavar="CROP_NAME", help="the labelled crop (its file name)")
    p.add_argument("--radius", type=int, default=10,
                   help="frames before and after CROP_NAME to label (default: 10)")
    p.add_argument("--overwrite-user", action="store_true",
                   help="also replace labels drawn by hand on those crops")
    p.set_defaults(func=run_propagate)

    q = sub.add_parser("labels", help="list the crops with mask labels; export or import them",
                       description="Lists the labelled crops of FACES_DIR with their polygon "
                       "counts. --export writes every label as one JSON keyed by crop name; "
                       "--import sets them on the crops of the same name (or, failing that, "
                       "the same source file, frame and face), remapped to each crop's own "
                       "alignment, so labels survive a re-extraction at another size.")
    q.add_argument("faces_dir", metavar="FACES_DIR", help="a folder of extracted faces")
    q.add_argument("--export", metavar="JSON", help="write all labels of FACES_DIR to JSON")
    q.add_argument("--import", dest="import_", metavar="JSON",
                   help="set the labels of JSON on the crops of FACES_DIR")
    q.set_defaults(func=run_labels)


def run_propagate(args: argparse.Namespace) -> int:
    from intracoder.faces.labels import propagate_in_folder

    name = Path(args.crop_name).name
    written = propagate_in_folder(args.faces_dir, name, radius=args.radius,
                                  overwrite_user=args.overwrite_user)
    print(f"propagated the labels of {name} to {len(written)} crops within "
          f"+-{args.radius} frames" + ("" if written else
                                        " (none found without a label of its own)"))
    return 0


def _metas(folder: str):
    from intracoder.errors import UserError
    from intracoder.faces.faceset import list_faces, read_meta

    paths = list_faces(folder)
    if not paths:
        raise UserError(f"{folder}: no extracted faces in this folder")
    return [(p, read_meta(p)) for p in paths]


def run_labels(args: argparse.Namespace) -> int:
    from intracoder.errors import UserError

    if args.export and args.import_:
        raise UserError("--export and --import cannot be combined; run them one after the other")
    if args.import_:
        return _import(args.faces_dir, args.import_)
    from intracoder.faces.labels import _entry, labels_of, propagated_from

    metas = _metas(args.faces_dir)
    labelled = [(p, m) for p, m in metas if labels_of(m)]
    if args.export:
        from intracoder.atomic import write_json

        labels = {p.name: {**_entry(m), "polygons": labels_of(m), "size": m.size,
                           "matrix": m.matrix, "source": m.source, "frame": m.frame,
                           "face_index": m.face_index} for p, m in labelled}
        write_json(args.export, {"format": EXPORT_FORMAT, "version": 1, "labels": labels})
        print(f"exported the labels of {len(labels)} crops to {args.export}")
        return 0
    for p, m in labelled:
        polys = labels_of(m)
        inc = sum(q["mode"] == "include" for q in polys)
        origin = propagated_from(m)
        print(f"{p.name}  {len(polys)} polygons ({inc} include, {len(polys) - inc} exclude)  "
              + (f"propagated from {origin}" if origin else "drawn by hand"))
    hand = sum(propagated_from(m) is None for _, m in labelled)
    print(f"{len(labelled)} of {len(metas)} crops labelled ({hand} by hand, "
          f"{len(labelled) - hand} propagated)")
    return 0


def _import(folder: str, json_path: str) -> int:
    import dataclasses

    import cv2
    import numpy as np

    from intracoder.errors import UserError
    from intracoder.faces.faceset import read_face, rewrite_face
    from intracoder.faces.labels import with_labels

    try:
        data = json.loads(Path(json_path).read_text())
    except FileNotFoundError:
        raise UserError(f"{json_path}: no such file") from None
    except (ValueError, UnicodeDecodeError):
        raise UserError(f"{json_path}: not a JSON file") from None
    if not isinstance(data, dict) or data.get("format") != EXPORT_FORMAT \
            or not isinstance(data.get("labels"), dict):
        raise UserError(f"{json_path}: not a mask-labels export (intracoder mask labels --export)")
    metas = _metas(folder)
    by_name = {p.name: p for p, _ in metas}
    by_key = {(Path(m.source).name, m.frame, m.face_index): p for p, m in metas}
    done, missing = 0, []
    for name, entry in data["labels"].items():
        if not isinstance(entry, dict):
            raise UserError(f"{json_path}: the entry of {name} is not an object")
        key = (Path(str(entry.get("source", ""))).name, entry.get("frame"), entry.get("face_index"))
        path = by_name.get(name) or by_key.get(key)
        if path is None:
            missing.append(name)
            continue
        face = read_face(path)
        polygons = entry.get("polygons")
        try:
            old = np.asarray(entry["matrix"], np.float64).reshape(2, 3)
        except (KeyError, TypeError, ValueError):
            old = None
        if old is not None and isinstance(polygons, list):
            # Drawn on another extraction's crop: crop -> source frame -> this crop.
            back = cv2.invertAffineTransform(old)
            m = face.meta.matrix_np
            polygons = [{**q, "points": ((np.asarray(q["points"], np.float64) @ back[:, :2].T
                                         + back[:, 2]) @ m[:, :2].T + m[:, 2]).tolist()}
                        if isinstance(q, dict) and _is_points(q.get("points")) else q
                        for q in polygons]
        try:
            meta = with_labels(face.meta, polygons, entry.get("propagated_from"),
                               from_frame=entry.get("from_frame"))
        except UserError as exc:
            raise UserError(f"{json_path}: {name}: {exc}") from None
        rewrite_face(path, dataclasses.replace(face, meta=meta))
        done += 1
    print(f"imported the labels of {done} crops into {folder}"
          + (f"; {len(missing)} not found there (e.g. {missing[0]})" if missing else ""))
    return 0


def _is_points(points) -> bool:
    import numpy as np

    try:
        arr = np.asarray(points, np.float64)
    except (TypeError, ValueError):
        return False
    return arr.ndim == 2 and arr.shape[1] == 2 and np.isfinite(arr).all()
