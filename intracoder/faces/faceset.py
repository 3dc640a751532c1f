"""Aligned crops that carry their own metadata, and the index of a faceset folder.

A crop is a PNG (RGBA: the alpha channel is the face mask) whose iTXt chunk
``intracoder`` holds the metadata as JSON, or a JPEG whose comment segment holds the
metadata plus the mask (PNG, base64), since JPEG has no alpha. Either way the image file
alone is enough to warp a generated face back into its source frame.

The alpha channel is the landmark hull. ``mask apply`` adds the learned mask (what of the
face is visible: occluders excluded) beside it, as a grey PNG in base64: the iTXt chunk
``intracoder-mask`` of a PNG, the key ``learned_png`` of a JPEG's comment. Mask labels
drawn in the studio live in the metadata (``extra["mask_labels"]``, faces/labels.py), so a
label travels with the crop through sort, rename and copy.
"""

from __future__ import annotations

import base64
import dataclasses
import io
import json
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, PngImagePlugin

from intracoder.atomic import atomic_path, write_json
from intracoder.errors import UserError

META_KEY = "intracoder"
LEARNED_KEY = "intracoder-mask"
INDEX_NAME = "faces.json"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


@dataclass
class FaceMeta:
    source: str
    frame: int
    face_index: int
    confidence: float
    points5: list  # 5x2, source pixels: left eye, right eye, nose, mouth left, mouth right
    landmarks: list  # 468x3, source pixels (x, y, z; z in the same scale as x)
    matrix: list  # 2x3 affine, source -> crop
    face_type: str
    size: int
    blur: float
    yaw: float
    pitch: float
    roll: float
    version: str
    extra: dict = field(default_factory=dict)

    @property
    def matrix_np(self) -> np.ndarray:
        return np.asarray(self.matrix, np.float64).reshape(2, 3)

    @property
    def landmarks_np(self) -> np.ndarray:
        return np.asarray(self.landmarks, np.float64).reshape(-1, 3)

    def landmarks_in_crop(self) -> np.ndarray:
        """468x2 landmark positions in crop pixels."""
        pts = self.landmarks_np[:, :2]
        return pts @ self.matrix_np[:, :2].T + self.matrix_np[:, 2]

    def to_json(self) -> str:
        # Shallow on purpose: dataclasses.asdict deep-copies the 468 landmarks (30 ms).
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        return json.dumps(fields, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> "FaceMeta":
        data = json.loads(text)
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


@dataclass
class Face:
    image: np.ndarray  # HxWx3 uint8 BGR (OpenCV order)
    mask: np.ndarray  # HxW uint8, 255 = face: the landmark hull
    meta: FaceMeta
    learned: np.ndarray | None = None  # HxW uint8, 255 = visible face; None until applied

    @property
    def train_mask(self) -> np.ndarray:
        """The mask training learns and weights its loss by: the learned mask once applied
        (occluders excluded), else the hull."""
        return self.mask if self.learned is None else self.learned


def _round(obj, nd=2):
    return np.round(np.asarray(obj, np.float64), nd).tolist()


def _png64(mask: np.ndarray) -> str:
    ok, data = cv2.imencode(".png", mask)
    return base64.b64encode(data.tobytes()).decode()


def _unpng64(text: str) -> np.ndarray:
    mask = cv2.imdecode(np.frombuffer(base64.b64decode(text), np.uint8), cv2.IMREAD_GRAYSCALE)
    if mask is None:
        raise ValueError("not a PNG mask")
    return mask


def encode_face(image: np.ndarray, mask: np.ndarray, meta: FaceMeta, fmt: str = "png",
                learned: np.ndarray | None = None) -> bytes:
    meta = dataclasses.replace(meta, points5=_round(meta.points5), landmarks=_round(meta.landmarks),
                               matrix=_round(meta.matrix, 6))
    rgb = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    buf = io.BytesIO()
    if fmt == "png":
        info = PngImagePlugin.PngInfo()
        info.add_itxt(META_KEY, meta.to_json(), zip=True)
        if learned is not None:
            info.add_itxt(LEARNED_KEY, _png64(learned))
        rgba = np.dstack([rgb, mask])
        Image.fromarray(rgba, "RGBA").save(buf, "PNG", pnginfo=info, compress_level=1)
    elif fmt in ("jpg", "jpeg"):
        fields = {"meta": json.loads(meta.to_json()), "mask_png": _png64(mask)}
        if learned is not None:
            fields["learned_png"] = _png64(learned)
        payload = json.dumps(fields)
        Image.fromarray(rgb, "RGB").save(buf, "JPEG", quality=95, comment=payload.encode())
    else:
        raise UserError(f"unknown crop format {fmt!r}: use png or jpg")
    return buf.getvalue()


def write_face(path: str | Path, image: np.ndarray, mask: np.ndarray, meta: FaceMeta,
               learned: np.ndarray | None = None) -> None:
    path = Path(path)
    data = encode_face(image, mask, meta, path.suffix.lower().lstrip("."), learned)
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def read_face(path: str | Path) -> Face:
    path = Path(path)
    try:
        with Image.open(path) as im:
            im.load()
            info = dict(im.info)
            arr = np.asarray(im.convert("RGBA" if im.mode in ("RGBA", "LA") else "RGB"))
    except FileNotFoundError:
        raise UserError(f"{path}: no such file") from None
    except Exception as exc:
        raise UserError(f"{path}: not a readable image ({exc.__class__.__name__})") from None
    learned = None
    if META_KEY in info:
        meta = FaceMeta.from_json(info[META_KEY])
        mask = arr[..., 3].copy() if arr.shape[-1] == 4 else np.full(arr.shape[:2], 255, np.uint8)
        if LEARNED_KEY in info:
            try:
                learned = _unpng64(info[LEARNED_KEY])
            except ValueError:
                raise UserError(f"{path}: its learned mask is corrupt; run mask apply again") from None
    elif "comment" in info:
        try:
            payload = json.loads(info["comment"])
            meta = FaceMeta(**payload["meta"])
            mask = _unpng64(payload["mask_png"])
            if "learned_png" in payload:
                learned = _unpng64(payload["learned_png"])
        except (ValueError, KeyError, TypeError):
            raise UserError(f"{path}: not an intracoder face crop (no metadata)") from None
    else:
        raise UserError(f"{path}: not an intracoder face crop (no metadata)")
    image = cv2.cvtColor(np.ascontiguousarray(arr[..., :3]), cv2.COLOR_RGB2BGR)
    return Face(image=image, mask=mask, meta=meta, learned=learned)


def rewrite_face(path: str | Path, face: Face) -> None:
    """Write ``face`` (its metadata, labels or learned mask changed, never its pixels) back
    over its file. A JPEG keeps its compressed pixels byte for byte: only its comment
    segment is replaced, so labelling a crop ten times does not re-encode it ten times."""
    path = Path(path)
    if path.suffix.lower() not in (".jpg", ".jpeg"):
        write_face(path, face.image, face.mask, face.meta, face.learned)
        return
    fields = {"meta": json.loads(face.meta.to_json()), "mask_png": _png64(face.mask)}
    if face.learned is not None:
        fields["learned_png"] = _png64(face.learned)
    data = _with_jpeg_comment(path.read_bytes(), json.dumps(fields).encode())
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def _with_jpeg_comment(data: bytes, comment: bytes) -> bytes:
    """The JPEG ``data`` with its comment (COM) segments replaced by one holding ``comment``."""
    if data[:2] != b"\xff\xd8" or len(comment) > 65533:
        raise UserError("not a JPEG crop, or its metadata is too large for a JPEG comment")
    out, i = [data[:2]], 2
    while i + 4 <= len(data) and data[i] == 0xFF and data[i + 1] != 0xDA:  # up to start of scan
        length = int.from_bytes(data[i + 2:i + 4], "big")
        if data[i + 1] != 0xFE:
            out.append(data[i:i + 2 + length])
        i += 2 + length
    out.insert(1 + (data[2:4] == b"\xff\xe0"), b"\xff\xfe" + (len(comment) + 2).to_bytes(2, "big")
               + comment)
    out.append(data[i:])
    return b"".join(out)


def read_meta(path: str | Path) -> FaceMeta:
    return read_face(path).meta


def list_faces(folder: str | Path) -> list[Path]:
    """Crops of a faceset folder, in a stable order."""
    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"{folder}: not a folder of extracted faces")
    return sorted(p for p in folder.iterdir()
                  if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith("."))


def face_filename(stem: str, frame: int, face_index: int, fmt: str) -> str:
    """The crop's file name; ``stem`` is FacesetIndex.stem_for(source), unique per source."""
    return f"{stem}_{frame:06d}_{face_index}.{fmt}"


class FacesetIndex:
    """``faces.json``: which frames of which sources are done, and one row per crop.

    It is what makes extraction resumable, and what ``inspect`` summarises without
    opening every crop."""

    def __init__(self, folder: str | Path):
        self.path = Path(folder) / INDEX_NAME
        self.data = {"version": 1, "sources": {}, "faces": {}}
        if self.path.exists():
            try:
                self.data = json.loads(self.path.read_text())
            except (ValueError, OSError):
                raise UserError(f"{self.path}: index is corrupt; delete it to re-extract") from None

    def frames_done(self, source: str) -> set[int]:
        return set(self.data["sources"].get(source, {}).get("frames_done", []))

    def stem_for(self, source: str) -> str:
        """The name the crops of ``source`` start with: its file stem, or, when another
        source of this faceset already has that stem (``a/clip.mp4`` and ``b/clip.mp4``,
        ``x.png`` and ``x.jpg``), the stem with the first free ``-2``, ``-3``, ... so no
        crop overwrites another's. Recorded in the index, so a resume keeps it."""
        sources = self.data["sources"]
        entry = sources.get(source, {})
        if "stem" in entry:
            return entry["stem"]
        # Indexes written before stems were recorded used the plain file stem.
        taken = {e.get("stem", Path(s).stem) for s, e in sources.items() if s != source}
        base = Path(source).stem
        stem, n = base, 1
        while stem in taken:
            n += 1
            stem = f"{base}-{n}"
        sources.setdefault(source, {"frames_done": []})["stem"] = stem
        return stem

    def mark_frame(self, source: str, frame: int, files: list[str], rows: list[dict]) -> None:
        entry = self.data["sources"].setdefault(source, {"frames_done": []})
        entry["frames_done"].append(frame)
        for name, row in zip(files, rows):
            self.data["faces"][name] = row

    def set_source_info(self, source: str, **info) -> None:
        self.data["sources"].setdefault(source, {"frames_done": []}).update(info)

    def save(self) -> None:
        for entry in self.data["sources"].values():
            entry["frames_done"] = sorted(set(entry["frames_done"]))
        write_json(self.path, self.data)

    @property
    def faces(self) -> dict[str, dict]:
        return self.data["faces"]
