"""What the studio shows of the workspace folder: its facesets, models and videos, a
faceset's crops and their figures, a model's progress. Paths from the page are always
resolved inside the workspace."""

from __future__ import annotations

import io
import json
from pathlib import Path

import cv2
import numpy as np

from intracoder.errors import UserError
from intracoder.faces.faceset import INDEX_NAME, FacesetIndex, list_faces
from intracoder.media.video import VIDEO_SUFFIXES, probe

_READ_VIDEO = {*VIDEO_SUFFIXES, ".avi", ".webm", ".ts"}


def inside(root: Path, path: str, kind: str = "path") -> Path:
    """``path`` (relative to the workspace, or absolute within it) as a checked Path:
    ``faceset`` must hold crops, ``model`` a checkpoint, ``video`` be a file; ``new`` may
    not exist yet."""
    if not path:
        raise UserError(f"no {kind} chosen")
    p = (root / path).resolve()
    if p != root and root not in p.parents:
        raise UserError(f"{path}: outside the workspace {root}")
    if kind == "faceset" and not (p.is_dir() and list_faces(p)):
        raise UserError(f"{path}: a folder without faces (extract some first)")
    if kind == "model" and not (p / "checkpoint").is_dir():
        raise UserError(f"{path}: not a trained model folder (no checkpoint in it)")
    if kind == "video" and not p.is_file():
        raise UserError(f"{path}: no such file")
    return p


def listing(root: Path) -> dict:
    facesets, models, videos = [], [], []
    for p in sorted(root.rglob("*")):
        rel = str(p.relative_to(root))
        if any(part.startswith(".") or part == "_dropped" for part in p.relative_to(root).parts):
            continue
        if p.is_file() and p.name == INDEX_NAME:
            facesets.append(str(p.parent.relative_to(root)))
        elif p.is_dir() and (p / "checkpoint").is_dir():
            models.append(rel)
        elif p.is_file() and p.suffix.lower() in _READ_VIDEO:
            videos.append(rel)
    return {"root": str(root), "facesets": facesets, "models": models, "videos": videos}


def faceset_rows(folder: Path) -> dict:
    index = FacesetIndex(folder)
    names = [p.name for p in list_faces(folder)]
    sort = index.data.get("order", {})
    order = sort.get("names")
    # The last sort's score of each face (for an identity sort: its distance to the set).
    score = dict(zip(order or [], sort.get("scores") or []))
    if order:  # the sorted order first, crops it does not know at the end
        known = set(names)
        names = [n for n in order if n in known] + [n for n in names if n not in set(order)]
    rows = []
    for name in names:
        row = index.data["faces"].get(name, {})
        identity = score.get(name) if sort.get("by") == "identity" else None
        rows.append({"name": name, "blur": row.get("blur"), "yaw": row.get("yaw"),
                     "pitch": row.get("pitch"),
                     "identity": row.get("identity_distance", identity)})
    dropped = sorted(p.name for p in (folder / "_dropped").glob("*")) \
        if (folder / "_dropped").is_dir() else []
    return {"faces": rows, "dropped": dropped,
            "order": index.data.get("order", {}).get("by")}


def thumbnail(folder: Path, name: str, size: int) -> np.ndarray:
    path = folder / name if (folder / name).is_file() else folder / "_dropped" / name
    if Path(name).name != name or not path.is_file():
        raise UserError(f"{name}: no such crop in {folder}")
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise UserError(f"{name}: not an image that can be decoded")
    return cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA)


def distribution_png(folder: Path) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = faceset_rows(folder)["faces"]
    fig, axes = plt.subplots(1, 3, figsize=(9, 2.4), dpi=100)
    for ax, key in zip(axes, ("blur", "yaw", "pitch")):
        values = [r[key] for r in rows if r[key] is not None]
        ax.hist(values, bins=20, color="#4a7")
        ax.set_title(f"{key} ({len(values)} faces)", fontsize=9)
        ax.tick_params(labelsize=7)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return buffer.getvalue()


def model_summary(folder: Path) -> dict:
    state_file = folder / "checkpoint" / "state.json"
    state = {}
    if state_file.is_file():
        try:
            state = json.loads(state_file.read_text())
        except ValueError:
            state = {}
    return {"iteration": state.get("iteration"), "saved": state_file.is_file(),
            "preview": (folder / "preview.png").is_file(), "loss": (folder / "loss.png").is_file()}


def settings_path(model: Path) -> Path:
    from intracoder.convert.settings import default_path

    return default_path(model)


def settings_from(values: dict):
    """The page's controls as convert Settings; one line for a bad value."""
    import dataclasses

    from intracoder.convert.settings import KEYS, Settings

    unknown = sorted(set(values) - set(KEYS))
    if unknown:
        raise UserError(f"unknown convert setting {unknown[0]!r}")
    settings = dataclasses.replace(Settings(), **values)
    for key, why in settings.problems():
        raise UserError(f"{key.replace('_', ' ')} {why}")
    return settings


def convert_info(video: Path, model: Path) -> dict:
    from intracoder.convert.settings import SettingsFile

    info = probe(video)
    path = settings_path(model)
    keys = SettingsFile.load(path).to_json() if path.is_file() else None
    return {"frames": info.frame_count, "fps": info.fps, "width": info.width,
            "height": info.height, "settings": keys}


def apply_from(model: Path, frame: int, values: dict) -> dict:
    """"Apply from this frame on": the keyframe written into the model's settings file."""
    from intracoder.convert.settings import SettingsFile

    path = settings_path(model)
    keys = SettingsFile.load(path) if path.is_file() else SettingsFile()
    keys.apply_from(frame, settings_from(values))
    keys.save(path)
    return keys.to_json()


def report_dir(swapped: Path) -> Path:
    return swapped.with_name(f"{swapped.stem}_report")


def report_url(root: Path, swapped: Path) -> str:
    return "/files/" + str((report_dir(swapped) / "index.html").relative_to(root))
