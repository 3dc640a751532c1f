"""The studio's Masks tab (DeepFaceLab's XSeg editor, in the browser): a faceset's crops and
their mask labels, include/exclude polygons saved into a crop's metadata
(faces/labels.py), a label carried to the neighbouring frames of its clip, the crops the
mask net is least sure of, and a crop with one of its masks tinted. Also the convert mask
modes, so that the Convert tab offers every one.

Every input is checked here and a bad one is a 400 with one line: the crop must be one of
the faceset's own (a bare file name, no separators), polygons pass labels.validate, counts
and radii are bounded. Writes go through labels.save_labels (atomic).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import cv2
import numpy as np
from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response

from intracoder.errors import UserError

MAX_COUNT = 1000  # crops "Next to label" lists at most
MAX_RADIUS = 1000  # frames a label is carried at most, either way
MAX_BODY = 1 << 20  # bytes of a POST: labels.MAX_POINTS points take some 30 kB
WHICH = ("learned", "hull", "labels")
TINT = np.array([80, 220, 60], np.float32)  # BGR: the page draws include polygons green


def _text(value, key: str) -> str:
    if value is None or value == "":
        raise UserError(f"{key}: missing")
    if not isinstance(value, str):
        raise UserError(f"{key}: must be a string")
    if "\x00" in value:
        raise UserError(f"{key}: a NUL byte")
    return value


def _integer(value, key: str, low: int, high: int, default: int | None = None) -> int:
    if value is None or value == "":
        if default is None:
            raise UserError(f"{key}: missing")
        return default
    if isinstance(value, str):
        try:
            value = int(value.strip())
        except ValueError:
            raise UserError(f"{key}: must be a whole number, got {value[:40]!r}") from None
    if isinstance(value, bool) or not isinstance(value, int):
        raise UserError(f"{key}: must be a whole number")
    if not low <= value <= high:
        raise UserError(f"{key}: must be between {low} and {high}, got {value}")
    return value


async def _body(request: Request) -> dict:
    """The JSON object a POST carries; one line when it is not one."""
    raw = await request.body()
    if len(raw) > MAX_BODY:
        raise UserError(f"the request body is {len(raw)} bytes; at most {MAX_BODY}")
    try:
        body = json.loads(raw or b"null")
    except (ValueError, UnicodeDecodeError):
        raise UserError("the request body is not JSON") from None
    if not isinstance(body, dict):
        raise UserError("the request body must be a JSON object")
    return body


def crop_path(folder: Path, name) -> Path:
    """``name`` as one of ``folder``'s crops (not a dropped one), or a UserError."""
    from intracoder.faces.faceset import list_faces

    name = _text(name, "name")
    if Path(name).name != name or "/" in name or "\\" in name or name in (".", ".."):
        raise UserError(f"{name[:80]!r}: a crop's file name, without folders")
    path = folder / name
    # Not a link to a file elsewhere either: the crop itself is read and rewritten.
    if path not in list_faces(folder) or path.resolve().parent != folder.resolve():
        raise UserError(f"{name}: no such crop in {folder.name}")
    return path


def _labels_json(meta) -> dict:
    from intracoder.faces import labels

    return {"size": int(meta.size), "polygons": labels.labels_of(meta),
            "propagated_from": labels.propagated_from(meta)}


def _polygons(value) -> list:
    from intracoder.faces import labels

    if not isinstance(value, list):
        raise UserError("polygons: must be a list of {mode, points}")
    return labels.validate(value)  # a one-line UserError when they are not polygons


def _row(path: Path) -> dict:
    from intracoder.faces import labels
    from intracoder.faces.faceset import read_meta

    try:
        meta = read_meta(path)
    except UserError:  # a stray image in the folder: listed, never labelled
        return {"name": path.name, "label": None, "size": None}
    label = "user" if labels.is_user_label(meta) else (
        "propagated" if labels.is_labelled(meta) else None)
    return {"name": path.name, "label": label, "size": int(meta.size)}


def mask_models(root: Path) -> list[str]:
    """The workspace's mask model folders (``mask train``'s MASKDIR, a face model's
    ``mask/``): mask.json and the net beside it."""
    from intracoder.segment.store import STATE, is_mask_model

    rels = [p.parent.relative_to(root) for p in root.rglob(STATE) if is_mask_model(p.parent)]
    return sorted(str(r) for r in rels
                  if not any(part.startswith(".") or part == "_dropped" for part in r.parts))


def _rank_uncertain():
    try:
        from intracoder.segment.uncertain import rank_uncertain
    except ImportError:
        from intracoder.segment.apply import rank_uncertain
    return rank_uncertain


def _tinted(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The crop with ``mask`` (uint8, 255 = inside) tinted, the outside darkened, and the
    mask's edge drawn."""
    a = (mask.astype(np.float32) / 255.0)[..., None]
    inside = image * 0.55 + TINT * 0.45
    out = inside * a + image * 0.45 * (1.0 - a)
    out = np.clip(np.rint(out), 0, 255).astype(np.uint8)
    contours, _ = cv2.findContours((mask > 127).astype(np.uint8), cv2.RETR_LIST,
                                   cv2.CHAIN_APPROX_SIMPLE)
    cv2.drawContours(out, contours, -1, (255, 255, 255), 1, cv2.LINE_AA)
    return out


def _png(image: np.ndarray) -> Response:
    ok, data = cv2.imencode(".png", image)
    if not ok:
        raise UserError("could not encode the image")
    return Response(data.tobytes(), media_type="image/png", headers={"Cache-Control": "no-store"})


def _missing(message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=404)


def register(app: FastAPI, root: Path, inside: Callable[[str, str], Path]) -> None:
    """The Masks tab's routes on ``app``; ``inside(path, kind)`` is the studio's check that a
    path is in the workspace (and a faceset, a model...)."""

    def faceset(value) -> Path:
        return inside(_text(value, "dir"), "faceset")

    rows: dict[str, tuple] = {}  # crop path -> (its file's stat, its row): read once

    def row(path: Path) -> dict:
        stat = path.stat()  # a rewrite (atomic: a new file) changes the inode too
        key = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
        known = rows.get(str(path))
        if known is None or known[0] != key:
            known = rows[str(path)] = (key, _row(path))
        return known[1]

    def mask_folder(value) -> Path:
        from intracoder.segment.store import find_mask_model

        # A mask model folder, or a face model folder holding one in mask/.
        return find_mask_model(None, inside(_text(value, "mask_model"), "path"))

    @app.get("/api/masks/modes")
    def modes():
        from intracoder.convert.settings import MASK_MODES, Settings

        return {"modes": list(MASK_MODES), "default": Settings().mask}

    @app.get("/api/masks/models")
    def models():
        return {"models": mask_models(root)}

    @app.get("/api/masks/faceset")
    def faceset_labels(dir: str | None = None):
        from intracoder.faces.faceset import list_faces

        folder = faceset(dir)
        return {"faces": [row(p) for p in list_faces(folder)]}

    @app.get("/api/masks/labels")
    def get_labels(dir: str | None = None, name: str | None = None):
        from intracoder.faces.faceset import read_meta

        return _labels_json(read_meta(crop_path(faceset(dir), name)))

    @app.post("/api/masks/labels")
    async def save_labels(request: Request):
        from intracoder.faces import labels

        body = await _body(request)
        path = crop_path(faceset(body.get("dir")), body.get("name"))
        polygons = _polygons(body.get("polygons"))
        meta = await run_in_threadpool(labels.save_labels, path, polygons)
        return _labels_json(meta)

    @app.post("/api/masks/propagate")
    async def propagate(request: Request):
        from intracoder.faces import labels

        body = await _body(request)
        folder = faceset(body.get("dir"))
        path = crop_path(folder, body.get("name"))
        radius = _integer(body.get("radius"), "radius", 1, MAX_RADIUS, default=10)
        written = await run_in_threadpool(labels.propagate_in_folder, folder, path.name, radius)
        return {"written": list(written)}

    @app.get("/api/masks/uncertain")
    def uncertain(dir: str | None = None, mask_model: str | None = None,
                  count: str | None = None):
        folder = faceset(dir)
        n = _integer(count, "count", 1, MAX_COUNT, default=20)
        ranked = _rank_uncertain()(folder, mask_folder(mask_model), n)
        return {"faces": [{"name": str(name), "score": float(score)} for name, score in ranked]}

    @app.get("/api/masks/overlay")
    def overlay(dir: str | None = None, name: str | None = None, which: str | None = None):
        from intracoder.faces import labels
        from intracoder.faces.faceset import read_face

        which = _text(which, "which")
        if which not in WHICH:
            raise UserError(f"which: must be one of {', '.join(WHICH)}, got {which[:40]!r}")
        face = read_face(crop_path(faceset(dir), name))
        if which == "learned":
            mask = face.learned
            if mask is None:
                return _missing(f"{name}: no learned mask yet (run mask apply on the faceset)")
        elif which == "hull":
            mask = face.mask
        else:
            polygons = labels.labels_of(face.meta)
            if not polygons:
                return _missing(f"{name}: not labelled")
            mask = labels.rasterise(polygons, face.image.shape[0])
        if mask.shape[:2] != face.image.shape[:2]:
            mask = cv2.resize(mask, face.image.shape[1::-1], interpolation=cv2.INTER_LINEAR)
        return _png(_tinted(face.image.astype(np.float32), mask))
