"""A contact sheet of a faceset: its crops in index order, each labelled with blur and yaw."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from intracoder.atomic import atomic_path
from intracoder.errors import UserError
from intracoder.faces.faceset import read_face
from intracoder.faces.sort import face_rows, index_order

LABEL_H = 14


@dataclass(frozen=True)
class SheetResult:
    path: Path
    shown: list[str]  # the crops drawn, in order
    total: int  # crops in the folder


def contact_sheet(folder: str | Path, out_png: str | Path, order: list[str] | None = None,
                  columns: int = 8, labels: bool = True, thumb: int = 96,
                  limit: int | None = 400, masks: bool = False) -> SheetResult:
    """Draw the crops of ``folder`` (``order``, default the index's order: that of the last
    ``sort``) as a grid of ``thumb``-px tiles, ``limit`` at most, and write ``out_png``
    atomically. Labels: ``b`` blur score, ``y`` yaw in degrees. ``masks``: the hull's
    outline drawn in yellow and what the learned mask leaves out tinted red."""
    folder, out_png = Path(folder), Path(out_png)
    if out_png.suffix.lower() != ".png":
        raise UserError(f"--sheet {out_png}: the contact sheet is a .png file")
    if columns < 1 or thumb < 16:
        raise UserError("--columns must be >= 1 and the tiles >= 16 px")
    names, rows = face_rows(folder)
    row_of = dict(zip(names, rows))
    wanted = index_order(folder) if order is None else list(order)
    missing = [n for n in wanted if n not in row_of]
    if missing:
        raise UserError(f"{folder / missing[0]}: not a crop of this folder")
    shown = wanted[:limit] if limit else wanted
    if not shown:
        raise UserError(f"{folder}: nothing to draw")
    cell_h = thumb + (LABEL_H if labels else 0)
    n_rows = math.ceil(len(shown) / columns)
    sheet = np.full((n_rows * cell_h, min(columns, len(shown)) * thumb, 3), 32, np.uint8)
    for k, name in enumerate(shown):
        y, x = (k // columns) * cell_h, (k % columns) * thumb
        face = read_face(folder / name)
        image = overlay_masks(face.image, face.mask, face.learned) if masks else face.image
        sheet[y:y + thumb, x:x + thumb] = cv2.resize(image, (thumb, thumb),
                                                     interpolation=cv2.INTER_AREA)
        if labels:
            r = row_of[name]
            text = f"b{float(r.get('blur', 0)):.0f} y{float(r.get('yaw', 0)):+.0f}"
            cv2.putText(sheet, text, (x + 2, y + thumb + LABEL_H - 3), cv2.FONT_HERSHEY_SIMPLEX,
                        0.33, (230, 230, 230), 1, cv2.LINE_AA)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out_png) as tmp:
        if not cv2.imwrite(str(tmp), sheet):
            raise UserError(f"{out_png}: could not write the contact sheet")
    return SheetResult(out_png, shown, len(names))


def overlay_masks(image: np.ndarray, hull: np.ndarray, learned: np.ndarray | None) -> np.ndarray:
    """The crop with the hull's outline in yellow and, once a learned mask is applied, the
    part of the hull it leaves out (an occluder, hair) tinted red."""
    out = image.copy()
    if learned is not None:
        left_out = (hull >= 128) & (learned < 128)
        out[left_out] = (0.45 * out[left_out] + 0.55 * np.array([40, 40, 230])).astype(np.uint8)
    contours, _ = cv2.findContours((hull >= 128).astype(np.uint8), cv2.RETR_EXTERNAL,
                                   cv2.CHAIN_APPROX_SIMPLE)
    cv2.drawContours(out, contours, -1, (0, 220, 255), max(1, image.shape[0] // 128), cv2.LINE_AA)
    return out
