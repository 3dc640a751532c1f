"""bench/quality.py's contact sheets: sheet.png (source above swapped, one column per frame)
and faces.png (the same frames cropped to the face, larger), so the swapped face is judged
by eye too."""

from __future__ import annotations

import json
from pathlib import Path

from quality_stages import QualityError

SHEET_COLUMNS = 8


def contact_sheets(source: Path, swapped: Path, out: Path, spec: str | None,
                   evaluation: dict | None, faces_dir: Path | None) -> tuple[Path, Path]:
    """OUT/sheet.png and OUT/faces.png for the frames of ``spec`` (--sheet-frames) or
    SHEET_COLUMNS evenly spaced ones; faces cropped at the boxes of ``evaluation`` or of
    the source's extracted faces in ``faces_dir``."""
    from intracoder.media.video import probe

    n_frames = probe(source).frame_count
    picks = sheet_frames(n_frames, spec)
    if spec:
        past = [f for f in sheet_frames(10**9, spec) if f >= n_frames]
        if past:
            print(f"--sheet-frames: {past} past the clip's {n_frames} frames, left out")
    return write_sheets(source, swapped, picks, out,
                        face_boxes(evaluation, faces_dir, source, picks))


def sheet_frames(n_frames: int, spec: str | None, count: int = SHEET_COLUMNS) -> list[int]:
    """Frame numbers for the contact sheets: ``count`` evenly spaced over the clip, or the
    comma-separated ``spec`` (in the order given, duplicates dropped, frames past the end of
    the clip left out)."""
    if n_frames <= 0:
        return []
    if spec:
        try:
            wanted = [int(s) for s in spec.replace(" ", "").split(",") if s]
        except ValueError:
            raise QualityError(f"--sheet-frames {spec!r}: not a comma-separated list of frame "
                               "numbers") from None
        if any(f < 0 for f in wanted):
            raise QualityError(f"--sheet-frames {spec!r}: frame numbers start at 0")
        picked = list(dict.fromkeys(f for f in wanted if f < n_frames))
        if picked:
            return picked
    if n_frames <= count:
        return list(range(n_frames))
    return [int(round(i * (n_frames - 1) / (count - 1))) for i in range(count)]


def read_frames(video: Path, wanted: list[int]) -> dict:
    """The frames of ``video`` numbered in ``wanted`` (BGR arrays), read in one pass."""
    from intracoder.media.video import iter_frames

    want = set(wanted)
    out = {}
    if not want:
        return out
    for i, frame in enumerate(iter_frames(video, 0, max(want) + 1)):
        if i in want:
            out[i] = frame.copy()
    return out


def _label(img, text: str) -> None:
    import cv2

    scale = max(img.shape[0] / 400, 0.5)
    th = max(int(round(scale * 2)), 1)
    org = (int(8 * scale), int(28 * scale))
    cv2.putText(img, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), th + 3, cv2.LINE_AA)
    cv2.putText(img, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), th, cv2.LINE_AA)


def _tile(img, height: int):
    import cv2

    h, w = img.shape[:2]
    width = max(int(round(w * height / h)), 1)
    interp = cv2.INTER_AREA if height < h else cv2.INTER_CUBIC
    return cv2.resize(img, (width, height), interpolation=interp)


def face_boxes(evaluation: dict | None, faces_dir: Path | None, source: Path,
               frames: list[int]) -> dict[int, tuple]:
    """Face box (x, y, w, h) in source pixels for each of ``frames`` that has one: from
    evaluation.json's frames when they carry a box, else from the 468 landmarks of the
    source clip's extracted crop of that frame."""
    boxes: dict[int, tuple] = {}
    for fr in (evaluation or {}).get("frames", []):
        for key in ("source_box", "box", "face_box"):
            b = fr.get(key)
            if isinstance(b, (list, tuple)) and len(b) == 4 and "frame" in fr:
                boxes[int(fr["frame"])] = tuple(float(v) for v in b)
                break
    missing = [f for f in frames if f not in boxes]
    if not missing or faces_dir is None or not (faces_dir / "faces.json").is_file():
        return boxes
    try:
        from intracoder.faces.faceset import read_face

        index = json.loads((faces_dir / "faces.json").read_text())
        crops: dict[int, tuple[int, str]] = {}  # frame -> (face index, file): the lowest index
        for fname, row in index.get("faces", {}).items():
            if Path(row.get("source", "")).name != source.name:
                continue
            frame, key = int(row["frame"]), (int(row.get("face_index", 0)), fname)
            if frame not in crops or key < crops[frame]:
                crops[frame] = key
        for f in missing:
            if f in crops and (faces_dir / crops[f][1]).is_file():
                pts = read_face(faces_dir / crops[f][1]).meta.landmarks_np[:, :2]
                lo, hi = pts.min(0), pts.max(0)
                boxes[f] = (float(lo[0]), float(lo[1]), float(hi[0] - lo[0]), float(hi[1] - lo[1]))
    except Exception as exc:  # noqa: BLE001 - the sheet falls back to a centre crop
        print(f"faces.png: face boxes from {faces_dir} unreadable ({exc.__class__.__name__}); "
              "centre crops instead")
    return boxes


def box_for(boxes: dict, frame: int, shape: tuple[int, int]) -> tuple[int, int, int]:
    """Square crop (x, y, side) around the face box of ``frame`` (1.15 times its larger
    side: brow to chin, cheek to cheek), else a centre crop of 60% of the shorter side."""
    h, w = shape
    box = boxes.get(frame)
    if box is None:
        side = 0.6 * min(h, w)
        cx, cy = w / 2, h / 2
    else:
        x, y, bw, bh = box
        side = 1.15 * max(bw, bh)
        cx, cy = x + bw / 2, y + bh / 2
    side = int(round(min(max(side, 16), h, w)))
    x0 = int(round(min(max(cx - side / 2, 0), w - side)))
    y0 = int(round(min(max(cy - side / 2, 0), h - side)))
    return x0, y0, side


def write_sheets(source: Path, swapped: Path, frames: list[int], out: Path,
                 boxes: dict) -> tuple[Path, Path]:
    """sheet.png: whole frames, source above swapped; faces.png: the face region of the
    same frames at a larger scale. One column per frame, numbered."""
    import cv2
    import numpy as np

    src, sw = read_frames(source, frames), read_frames(swapped, frames)
    frames = [f for f in frames if f in src and f in sw]
    if not frames:
        raise QualityError(f"{swapped}: none of the sheet's frames could be read")
    cols, face_cols = [], []
    for f in frames:
        a, b = src[f], sw[f]
        if b.shape != a.shape:
            b = cv2.resize(b, (a.shape[1], a.shape[0]))
        top, bottom = _tile(a, 256), _tile(b, 256)
        _label(top, f"source {f}")
        _label(bottom, f"swapped {f}")
        cols.append(np.vstack([top, bottom]))
        x, y, s = box_for(boxes, f, a.shape[:2])
        ft, fb = _tile(a[y:y + s, x:x + s], 448), _tile(b[y:y + s, x:x + s], 448)
        _label(ft, f"source {f}")
        _label(fb, f"swapped {f}")
        face_cols.append(np.vstack([ft, fb]))
    gap = lambda img: np.full((img.shape[0], 4, 3), 255, np.uint8)  # noqa: E731
    sheet = np.hstack([x for c in cols for x in (c, gap(c))][:-1])
    faces = np.hstack([x for c in face_cols for x in (c, gap(c))][:-1])
    sheet_path, faces_path = out / "sheet.png", out / "faces.png"
    cv2.imwrite(str(sheet_path), sheet)
    cv2.imwrite(str(faces_path), faces)
    return sheet_path, faces_path
