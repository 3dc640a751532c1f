"""The refiner at convert time: the generated faces at R -> faces at 2R or 4R (the refiner's
scale) in the frame's colours.

``--color refiner`` replaces the colour-transfer step: the refiner sees the destination
face (the crop the generated face will replace) as its colour reference, inside the same
mask the other colour modes use, and returns the face at 2 or 4 times the model's resolution,
which is then resized to the paste size like any other generated face.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from intracoder.errors import UserError
from intracoder.refiner.model import Refiner


def load_refiner(model_dir: str | Path, decoder: str | None = None) -> Refiner | None:
    """The model folder's trained refiner, or None when it has none. With ``decoder``, a
    refiner trained for the other person is a UserError: it would repaint B's faces as A's
    skin texture."""
    from intracoder.refiner import checkpoint as refiner_checkpoint
    from intracoder.training import checkpoint

    loaded = refiner_checkpoint.load(model_dir)
    if loaded is None:
        return None
    refiner, state = loaded
    main = checkpoint.read_state(model_dir)
    if main is not None and main["model_config"]["resolution"] != refiner.config.resolution:
        raise UserError(f"{model_dir}: its refiner takes {refiner.config.resolution} px faces "
                        f"but the model makes {main['model_config']['resolution']} px faces; "
                        "train the refiner again (delete MODEL/refiner/ first)")
    if decoder is not None and state.get("side") != decoder:
        raise UserError(f"{model_dir}: its refiner follows decoder {state.get('side')!r}, "
                        f"this conversion uses decoder {decoder!r}; train one with "
                        f"intracoder train-refiner --model {model_dir} --side {decoder}")
    return refiner


def require_refiner(model_dir: str | Path, decoder: str | None = None) -> Refiner:
    """load_refiner, with the error convert shows for --color refiner without a refiner."""
    refiner = load_refiner(model_dir, decoder)
    if refiner is None:
        raise UserError(f"{model_dir}: --color refiner needs a trained refiner and this model "
                        f"has none; run intracoder train-refiner --model {model_dir} "
                        "--minutes 30, or pick another --color")
    return refiner


def refine_faces(refiner: Refiner, faces_bgr_uint8_R: np.ndarray,
                 references_bgr_uint8: np.ndarray, masks: np.ndarray,
                 batch_size: int = 16) -> np.ndarray:
    """N x R x R x 3 generated faces (BGR uint8), the destination crops they replace (same
    shape) and masks (N x R x R or N x R x R x 1, uint8, 255 = face) -> N x sR x sR x 3 BGR
    uint8 for the refiner's scale s."""
    faces = np.asarray(faces_bgr_uint8_R)
    refs = np.asarray(references_bgr_uint8)
    masks = np.asarray(masks)
    res = refiner.config.resolution
    if faces.shape[1:] != (res, res, 3) or refs.shape != faces.shape:
        raise ValueError(f"faces and references must both be N x {res} x {res} x 3, "
                         f"got {faces.shape} and {refs.shape}")
    if masks.shape[:3] != faces.shape[:3]:
        raise ValueError(f"masks {masks.shape} do not match faces {faces.shape}")
    if len(faces) == 0:
        size = res * refiner.config.scale
        return np.zeros((0, size, size, 3), np.uint8)
    scale = np.float32(1 / 255)
    out = refiner.refine(faces[..., ::-1] * scale, refs[..., ::-1] * scale,
                         masks.reshape(faces.shape[:3] + (1,)) * scale, batch_size)
    return np.clip(np.rint(out[..., ::-1] * 255.0), 0, 255).astype(np.uint8)
