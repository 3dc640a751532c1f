"""`intracoder mask apply`: write the learned mask into every crop of a faceset, beside its
hull, and `Next to label`: the crops the net is least sure of."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from intracoder.errors import UserError
from intracoder.faces.faceset import list_faces, read_face, rewrite_face
from intracoder.progress import progress
from intracoder.segment.predict import MaskPredictor, fit, uncertainty

CHUNK = 64  # crops read, predicted and written together


def _check_face_type(predictor: MaskPredictor, face_type: str, folder: Path) -> None:
    if face_type != predictor.face_type:
        raise UserError(f"{folder} holds {face_type!r} crops but the mask model learnt "
                        f"{predictor.face_type!r} ones: train a mask model on this face type")


def apply_masks(folder: str | Path, mask_model: str | Path, quiet: bool = False) -> dict:
    """Write the learned mask into each crop of ``folder``; returns counts and the mean
    share of the hull the learned mask keeps (low: much of the faces is occluded)."""
    folder = Path(folder)
    predictor = MaskPredictor.load(mask_model)
    paths = list_faces(folder)
    if not paths:
        raise UserError(f"{folder}: no face crops in it")
    kept = []
    bar = progress(len(paths), unit="face", desc="mask apply", quiet=quiet)
    for start in range(0, len(paths), CHUNK):
        chunk = paths[start:start + CHUNK]
        faces = [read_face(p) for p in chunk]
        for face in faces:
            _check_face_type(predictor, face.meta.face_type, folder)
        by_size: dict[int, list[int]] = {}
        for i, face in enumerate(faces):
            by_size.setdefault(face.image.shape[0], []).append(i)
        for size, idx in by_size.items():
            masks = predictor.masks(np.stack([faces[i].image for i in idx]), size)
            for i, mask in zip(idx, masks):
                faces[i].learned = mask
                hull = faces[i].mask >= 128
                kept.append(float((mask >= 128)[hull].mean()) if hull.any() else 1.0)
        for path, face in zip(chunk, faces):
            rewrite_face(path, face)
        bar.update(len(chunk))
    bar.close()
    return {"faces": len(paths), "hull_kept": round(float(np.mean(kept)), 4)}


def rank_uncertain(faces_dir: str | Path, mask_model: str | Path, count: int = 20
                   ) -> list[tuple[str, float]]:
    """The ``count`` crops of ``faces_dir`` where the net is least certain, most uncertain
    first, with their uncertainty (0: sure of every pixel): the ones worth labelling."""
    folder = Path(faces_dir)
    predictor = MaskPredictor.load(mask_model)
    paths = list_faces(folder)
    ranked = []
    for start in range(0, len(paths), CHUNK):
        chunk = paths[start:start + CHUNK]
        # Crops of one faceset may differ in size: each is brought to the net's first.
        images = np.stack([fit(read_face(p).image, predictor.resolution) for p in chunk])
        probs = predictor.probabilities(images)
        ranked += [(p.name, round(uncertainty(pr), 4)) for p, pr in zip(chunk, probs)]
    ranked.sort(key=lambda r: -r[1])
    return ranked[:max(0, count)]
