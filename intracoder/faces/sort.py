"""Sort a faceset, move its worst faces into ``DIR/_dropped/`` and bring them back.

Orders (``by``), best first:

- ``blur``: sharpest first (the crops' blur score, variance of the Laplacian in the mask);
- ``yaw`` / ``pitch``: ascending degrees (as DeepFaceLab's face-yaw / face-pitch);
- ``identity``: nearest the faceset's mean dlib embedding (or ``reference``'s) first, so other
  people come last (faces dlib cannot embed come after them);
- ``similarity``: a greedy chain on the embeddings, each next face the nearest to the one
  before (DeepFaceLab's similarity sort), so look-alike faces sit together;
- ``histogram``: the same chain on grey histograms of the masked face, Bhattacharyya distance
  (DeepFaceLab's hist sort).

blur, yaw and pitch read the rows of ``faces.json`` (a crop missing from it is read once), so
they take milliseconds; the other three open every crop. The order is written to the index
as ``data["order"] = {"by", "names", "scores"}``; files keep their names unless renamed.

Dropping never deletes: files move to ``_dropped/`` under their own names, their index rows
to ``data["dropped"][name] = {"row", "position", "score", "batch"}`` (the place they held in
the order), so :func:`restore` puts files, rows and order back exactly. Training, pretrain
and evaluate list only a folder's own files (``list_faces``), so they skip ``_dropped/``.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from intracoder.atomic import fsync_path
from intracoder.errors import UserError
from intracoder.faces.faceset import FacesetIndex, list_faces, read_face, read_meta

SORT_BY = ("blur", "yaw", "pitch", "identity", "similarity", "histogram")
DROP_BY = ("blur", "identity", "similarity", "histogram")  # similarity/histogram: near duplicates
DROPPED = "_dropped"
_TEMP = ".sorting-"


@dataclass
class SortConfig:
    folder: str = field(default="", metadata={"positional": True,
                                              "help": "a folder of extracted faces"})
    by: str = field(default="blur", metadata={"help": "blur | yaw | pitch | identity | "
                                              "similarity | histogram"})
    reference: str | None = field(default=None, metadata={
        "help": "identity: an image (or crop) of the wanted person, instead of the faceset's mean"})
    drop_worst: str | None = field(default=None, metadata={
        "help": "N or FRACTION (0-1): move that many worst faces by --by into DIR/_dropped/ "
                "(blur: blurriest, identity: other people, similarity/histogram: near duplicates)"})
    rename: bool = field(default=False, metadata={
        "help": "rename the crops NNNNN_<name> in the new order (index keys follow)"})
    restore: bool = field(default=False, metadata={
        "help": "move every face of DIR/_dropped/ back, with its index row"})


@dataclass(frozen=True)
class SortResult:
    by: str
    names: list[str]  # best first
    scores: list[float]  # per name: blur, degrees, distance to the centre / to the previous face
    seconds: float
    faces_per_second: float


def _check_by(by: str, allowed: tuple[str, ...] = SORT_BY) -> None:
    if by not in allowed:
        raise UserError(f"--by {by!r}: use one of {', '.join(allowed)}")


def _row_from_meta(path: Path) -> dict:
    m = read_meta(path)
    return {"source": m.source, "frame": m.frame, "face_index": m.face_index,
            "confidence": round(m.confidence, 4), "blur": m.blur, "yaw": m.yaw,
            "pitch": m.pitch, "roll": m.roll, "face_type": m.face_type, "size": m.size}


def face_rows(folder: str | Path) -> tuple[list[str], list[dict]]:
    """(names, index rows) of the crops in ``folder``; a crop missing from faces.json is read."""
    folder = Path(folder)
    paths = list_faces(folder)
    if not paths:
        raise UserError(f"{folder}: no extracted faces in this folder")
    faces = FacesetIndex(folder).faces
    return [p.name for p in paths], [faces.get(p.name) or _row_from_meta(p) for p in paths]


def index_order(folder: str | Path) -> list[str]:
    """The crops of ``folder`` in the order written to its index, then any others by name."""
    names = [p.name for p in list_faces(folder)]
    present = set(names)
    ordered = [n for n in (FacesetIndex(folder).data.get("order") or {}).get("names", [])
               if n in present]
    seen = set(ordered)
    return ordered + [n for n in names if n not in seen]


def _crop_embedding(path: Path) -> np.ndarray | None:
    from intracoder.identity.embedding import embed

    face = read_face(path)
    pts = face.meta.landmarks_in_crop()
    lo, hi = pts.min(0), pts.max(0)
    return embed(face.image, (lo[0], lo[1], hi[0] - lo[0], hi[1] - lo[1]))


def _reference_embedding(path: str) -> np.ndarray:
    from intracoder.identity.embedding import embed

    try:
        return _check_ref(_crop_embedding(Path(path)), path)
    except UserError:  # not a crop: find the face in the image
        if not Path(path).is_file():
            raise UserError(f"--reference {path}: no such file") from None
    img = cv2.imread(str(path))
    if img is None:
        raise UserError(f"--reference {path}: not a readable image")
    return _check_ref(embed(img), path)


def _check_ref(e, path) -> np.ndarray:
    if e is None:
        raise UserError(f"--reference {path}: no face found in it")
    return e


def _vectors(folder: Path, names: list[str], kind: str) -> np.ndarray:
    """n x d: dlib embeddings (NaN rows where dlib finds no face) or square roots of the
    normalised grey histograms of the masked faces (their dot product is the Bhattacharyya
    coefficient)."""
    out = []
    for name in names:
        if kind == "embedding":
            e = _crop_embedding(folder / name)
            out.append(np.full(128, np.nan) if e is None else e)
        else:
            face = read_face(folder / name)
            gray = cv2.cvtColor(face.image, cv2.COLOR_BGR2GRAY)
            mask = (face.mask > 127).astype(np.uint8) if (face.mask > 127).any() else None
            h = cv2.calcHist([gray], [0], mask, [256], [0, 256]).ravel().astype(np.float64)
            out.append(np.sqrt(h / max(h.sum(), 1.0)))
    return np.asarray(out, np.float64)


def _distances(vecs: np.ndarray, i: int, kind: str) -> np.ndarray:
    if kind == "embedding":
        return np.linalg.norm(vecs - vecs[i], axis=1)
    return np.sqrt(np.clip(1.0 - vecs @ vecs[i], 0.0, None))  # = cv2 HISTCMP_BHATTACHARYYA


def _chain(vecs: np.ndarray, kind: str) -> tuple[list[int], list[float]]:
    """Greedy chain from the first face: each next one the nearest left to the last; rows
    with no vector (NaN) come last with score inf."""
    valid = ~np.isnan(vecs).any(1)
    left = valid.copy()
    order, scores = [], []
    if valid.any():
        cur = int(np.flatnonzero(valid)[0])
        order, scores, left[cur] = [cur], [0.0], False
        while left.any():
            d = np.where(left, _distances(vecs, cur, kind), np.inf)
            cur = int(np.argmin(d))
            order.append(cur), scores.append(float(d[cur]))
            left[cur] = False
    rest = np.flatnonzero(~valid).tolist()
    return order + rest, scores + [math.inf] * len(rest)


def _identity_distances(vecs: np.ndarray, reference: str | None) -> np.ndarray:
    from intracoder.identity.embedding import SAME_PERSON

    valid = ~np.isnan(vecs).any(1)
    if reference:
        centre = _reference_embedding(reference)
    else:
        if not valid.any():
            raise UserError("dlib found no face in any crop of this folder")
        centre = vecs[valid].mean(0)
        near = valid & (np.linalg.norm(vecs - centre, axis=1) < SAME_PERSON)
        if near.any():  # once more without the faces of other people pulling the mean
            centre = vecs[near].mean(0)
    d = np.linalg.norm(vecs - centre, axis=1)
    return np.where(valid, d, np.inf)


def _sort(folder: Path, names: list[str], rows: list[dict], by: str, reference: str | None
          ) -> tuple[list[int], list[float], np.ndarray | None]:
    if by in ("blur", "yaw", "pitch"):
        key = np.array([float(r.get(by, 0.0)) for r in rows])
        order = np.argsort(-key if by == "blur" else key, kind="stable")
        return order.tolist(), key[order].tolist(), None
    vecs = _vectors(folder, names, "histogram" if by == "histogram" else "embedding")
    if by == "identity":
        d = _identity_distances(vecs, reference)
        order = np.argsort(d, kind="stable")
        return order.tolist(), d[order].tolist(), vecs
    order, scores = _chain(vecs, "histogram" if by == "histogram" else "embedding")
    return order, scores, vecs


def sort_faces(folder: str | Path, by: str = "blur", reference: str | None = None) -> SortResult:
    """The crops of ``folder`` ordered by ``by``, best first; writes nothing (write_order)."""
    _check_by(by)
    folder = Path(folder)
    start = time.perf_counter()
    names, rows = face_rows(folder)
    order, scores, _ = _sort(folder, names, rows, by, reference)
    seconds = time.perf_counter() - start
    return SortResult(by, [names[i] for i in order], scores, seconds,
                      len(names) / max(seconds, 1e-9))


def _finite(v: float) -> float | None:
    return round(v, 4) if math.isfinite(v) else None


def write_order(folder: str | Path, result: SortResult, rename: bool = False) -> list[str]:
    """Write ``result`` as the index's order; with ``rename`` the crops become
    ``NNNNN_<original name>`` (the original kept in the row, so a second rename does not
    stack prefixes) and the index keys follow. Returns the names, in order."""
    folder = Path(folder)
    index = FacesetIndex(folder)
    names = list(result.names)
    if rename:
        for tmp in folder.glob(_TEMP + "*"):  # an interrupted rename: finish it
            os.replace(tmp, folder / tmp.name[len(_TEMP):])
        faces = index.faces
        rows = {n: faces.get(n) or _row_from_meta(folder / n) for n in names}
        new = [f"{i:05d}_{rows[n].get('original_name', n)}" for i, n in enumerate(names)]
        moved = [(o, n) for o, n in zip(names, new) if o != n]
        for old, nn in moved:
            os.replace(folder / old, folder / (_TEMP + nn))
        for _, nn in moved:
            os.replace(folder / (_TEMP + nn), folder / nn)
        fsync_path(folder)
        for old, nn in zip(names, new):
            faces.pop(old, None)
            faces[nn] = {**rows[old], "original_name": rows[old].get("original_name", old)}
        names = new
    index.data["order"] = {"by": result.by, "names": names,
                           "scores": [_finite(s) for s in result.scores]}
    index.save()
    return names


def _count(count_or_fraction: int | float | str, n: int) -> int:
    v = count_or_fraction
    if isinstance(v, str):
        try:
            v = int(v)
        except ValueError:
            try:
                v = float(v)
            except ValueError:
                raise UserError(f"--drop-worst {v!r}: give a count (3) or a fraction (0.1)") from None
    if isinstance(v, float):
        if not 0.0 < v < 1.0:
            raise UserError(f"--drop-worst {v}: a FRACTION must be between 0 and 1 (exclusive)")
        v = int(round(v * n))
    if v < 0 or v >= n:
        raise UserError(f"--drop-worst {v}: the folder has {n} faces; drop fewer than that")
    return v


def _near_duplicates(vecs: np.ndarray, kind: str, blur: np.ndarray, k: int) -> list[int]:
    """k faces, one at a time: of the closest remaining pair, the blurrier one. Faces with
    no vector are dropped first (they are not faces dlib recognises)."""
    bad = np.flatnonzero(np.isnan(vecs).any(1)).tolist()[:k]
    alive = ~np.isnan(vecs).any(1)
    n = len(vecs)
    nn_d, nn_j = np.full(n, np.inf), np.zeros(n, int)

    def update(i: int) -> None:
        d = np.where(alive, _distances(vecs, i, kind), np.inf)
        d[i] = np.inf
        nn_j[i], nn_d[i] = int(np.argmin(d)), float(d.min())

    for i in np.flatnonzero(alive):
        update(i)
    out = list(bad)
    while len(out) < k and alive.sum() > 1:
        i = int(np.argmin(np.where(alive, nn_d, np.inf)))
        j = nn_j[i]
        victim = i if blur[i] < blur[j] else j
        alive[victim] = False
        out.append(int(victim))
        for r in np.flatnonzero(alive & (nn_j == victim)):
            update(r)
    return out


def check_drop(folder: str | Path, count_or_fraction: int | float | str, by: str) -> int:
    """How many faces ``drop_worst`` would move; a UserError for a bad ``by`` or count."""
    _check_by(by, DROP_BY)
    return _count(count_or_fraction, len(face_rows(folder)[0]))


def drop_worst(folder: str | Path, count_or_fraction: int | float | str, by: str = "blur",
               reference: str | None = None, result: SortResult | None = None) -> list[str]:
    """Move the worst faces by ``by`` into ``folder/_dropped/``; returns their names, worst
    first. A FRACTION (0 < f < 1) of the faces, or a count. ``result``: this folder's
    sort_faces by blur or identity, to reuse instead of sorting again."""
    k = check_drop(folder, count_or_fraction, by)
    folder = Path(folder)
    names, rows = face_rows(folder)
    if k == 0:
        return []
    if by in ("blur", "identity"):
        if result is not None and result.by == by and sorted(result.names) == names:
            return move_to_dropped(folder, result.names[::-1][:k])
        order, _, _ = _sort(folder, names, rows, by, reference)
        victims = order[::-1][:k]
    else:
        _, _, vecs = _sort(folder, names, rows, by, reference)
        blur = np.array([float(r.get("blur", 0.0)) for r in rows])
        victims = _near_duplicates(vecs, "histogram" if by == "histogram" else "embedding", blur, k)
    return move_to_dropped(folder, [names[i] for i in victims])


def move_to_dropped(folder: str | Path, names: list[str]) -> list[str]:
    folder = Path(folder)
    dropped_dir = folder / DROPPED
    for n in names:
        if (dropped_dir / n).exists():
            raise UserError(f"{dropped_dir / n} already exists; restore first")
    index = FacesetIndex(folder)
    order = index.data.get("order") or {"names": [], "scores": []}
    records = index.data.setdefault("dropped", {})
    batch = 1 + max((r.get("batch", 0) for r in records.values()), default=0)
    dropped_dir.mkdir(exist_ok=True)
    for n in names:
        os.replace(folder / n, dropped_dir / n)
    fsync_path(dropped_dir), fsync_path(folder)
    pos = {n: i for i, n in enumerate(order["names"])}
    scores = order.get("scores") or [None] * len(order["names"])
    for n in names:
        p = pos.get(n)
        records[n] = {"row": index.faces.pop(n, None), "position": p, "batch": batch,
                      "score": None if p is None else scores[p]}
    gone = set(names)
    if "order" in index.data:
        keep = [i for i, n in enumerate(order["names"]) if n not in gone]
        order["names"] = [order["names"][i] for i in keep]
        if order.get("scores") is not None:
            order["scores"] = [scores[i] for i in keep]
    index.save()
    return list(names)


def restore(folder: str | Path) -> list[str]:
    """Move every crop of ``folder/_dropped/`` back with its index row and place in the
    order; returns the names restored. Nothing moves when one would overwrite a crop."""
    folder = Path(folder)
    dropped_dir = folder / DROPPED
    files = list_faces(dropped_dir) if dropped_dir.is_dir() else []
    clash = [p.name for p in files if (folder / p.name).exists()]
    if clash:
        raise UserError(f"{folder / clash[0]} exists; move it away before restoring "
                        f"({len(clash)} name(s) clash)")
    index = FacesetIndex(folder)
    for p in files:
        os.replace(p, folder / p.name)
    if files:
        fsync_path(folder)
    records = index.data.get("dropped", {})
    back = sorted((n for n in records if (folder / n).exists()),
                  key=lambda n: (-records[n].get("batch", 0), records[n].get("position") or 0))
    order = index.data.get("order")
    for n in back:
        rec = records.pop(n)
        if rec.get("row") is not None:
            index.faces[n] = rec["row"]
        if order is not None and rec.get("position") is not None and n not in order["names"]:
            order["names"].insert(rec["position"], n)
            if order.get("scores") is not None:
                order["scores"].insert(rec["position"], rec.get("score"))
    if not records:
        index.data.pop("dropped", None)
    index.save()
    if dropped_dir.is_dir() and not any(dropped_dir.iterdir()):
        dropped_dir.rmdir()
    return [p.name for p in files]
