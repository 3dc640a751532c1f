"""The learned mask in convert: which mask net a convert uses, the crop it sees, and how each
mask mode combines it with the model's mask and the landmark hull."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import cv2
import numpy as np

from intracoder.convert import blend
from intracoder.convert.settings import LEARNED_MODES, Settings
from intracoder.errors import UserError
from intracoder.faces.align import alignment_matrix

if TYPE_CHECKING:
    from intracoder.segment.predict import MaskPredictor


def load_segment(model_dir: str | None, mask_model: str | None,
                 settings: Sequence[Settings]) -> MaskPredictor | None:
    """The mask net when some frame's mask mode uses one: ``mask_model``, else MODEL/mask.
    A UserError when learned is asked for and there is none; auto falls back to predicted."""
    from intracoder.segment.predict import MaskPredictor
    from intracoder.segment.store import find_mask_model

    modes = {s.mask for s in settings}
    if not modes & set(LEARNED_MODES):
        return None
    folder = find_mask_model(model_dir, mask_model)
    if folder is None:
        asked = sorted(modes & {"learned", "learned-predicted"})
        if asked:
            raise UserError(f"--mask {asked[0]} needs a mask model: train one with intracoder "
                            f"mask train and pass --mask-model MASKDIR (or put it in "
                            f"{Path(model_dir or 'MODEL') / 'mask'})")
        return None
    return MaskPredictor.load(folder)


def needs_segment(settings: Sequence[Settings], have: bool) -> bool:
    """Whether a chunk of frames needs the mask net run on its faces."""
    return have and any(s.mask in LEARNED_MODES for s in settings)


def resolve(mode: str, have_segment: bool) -> str:
    """The mode a frame is blended with: auto is learned with a mask net, else predicted."""
    if mode == "auto":
        return "learned" if have_segment else "predicted"
    if mode in ("learned", "learned-predicted") and not have_segment:
        raise UserError(f"mask {mode} needs a mask model: train one with intracoder mask train "
                        "and put it in MODEL/mask (or pass --mask-model)")
    return mode


def segment_crop(frame: np.ndarray, landmarks: np.ndarray, face_type: str, res: int,
                 cut: np.ndarray, cut_matrix: np.ndarray, model_face_type: str
                 ) -> tuple[np.ndarray, np.ndarray]:
    """(the crop the mask net sees, its 2x3 frame -> crop matrix). When the net learnt the
    model's face type, it is the model's cut shrunk (one warp per face, not two)."""
    if face_type == model_face_type:
        scale = res / cut.shape[0]
        interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
        return cv2.resize(cut, (res, res), interpolation=interp), cut_matrix * scale
    matrix = alignment_matrix(landmarks, face_type, res)
    return cv2.warpAffine(frame, matrix, (res, res), flags=cv2.INTER_AREA,
                          borderMode=cv2.BORDER_REPLICATE), matrix


def into_paste(prob: np.ndarray, seg_matrix: np.ndarray, paste_matrix: np.ndarray,
               size: int) -> np.ndarray:
    """The net's probabilities (in its crop) as a uint8 mask in the paste crop."""
    to_seg = np.vstack([seg_matrix, [0.0, 0.0, 1.0]])
    to_paste = np.vstack([paste_matrix, [0.0, 0.0, 1.0]])
    m = (to_paste @ np.linalg.inv(to_seg))[:2]
    warped = cv2.warpAffine(prob.astype(np.float32), m, (size, size), flags=cv2.INTER_LINEAR,
                            borderMode=cv2.BORDER_CONSTANT, borderValue=0.0)
    return np.clip(np.rint(warped * 255.0), 0, 255).astype(np.uint8)


def blend_inputs(mode: str, predicted: np.ndarray, hull: np.ndarray
                 ) -> tuple[np.ndarray | None, np.ndarray | None]:
    """(mask, hull) to hand blend.face_mask for a mode without the learned mask; it takes
    their minimum."""
    if mode == "hull":
        return None, hull
    if mode == "predicted-only":
        return predicted, None
    return predicted, hull


INNER = 0.06  # an occluder reaches this far inside the hull (share of the crop side)
RIM = 4.0  # an occluder's edge: grown by this, feathered by half of it (px of a 256-px face)
# Hysteresis, as Canny's edges: an occluder has a core the net is sure of (p < 0.4), at
# least MIN_CORE of the hull (an eye, a nostril or an open mouth the net doubts is smaller),
# and takes in every unsure pixel (p < 0.8) connected to it: a generated face painted over
# the white rim of a cup shows far more than the original face kept beside it.
SURE_BELOW, UNSURE_BELOW, MIN_CORE = 102, 204, 0.012


def occluders(learned: np.ndarray, hull: np.ndarray, size: int) -> np.ndarray:
    """The occluders the learned mask sees in front of the face (a hand, a cup, a
    microphone), as a bool mask inside the hull; see SURE_BELOW."""
    inner_k = max(1, int(round(INNER * size)))
    inner = cv2.erode(hull, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * inner_k + 1,) * 2))
    in_hull = hull >= 128
    core = ((learned < SURE_BELOW) & (inner >= 128)).astype(np.uint8)
    if not core.any():
        return np.zeros(hull.shape, bool)
    _, core_labels, stats, _ = cv2.connectedComponentsWithStats(core, connectivity=8)
    big = np.flatnonzero(stats[1:, cv2.CC_STAT_AREA] >= MIN_CORE * max(1, int(in_hull.sum()))) + 1
    if not len(big):
        return np.zeros(hull.shape, bool)
    weak = ((learned < UNSURE_BELOW) & in_hull).astype(np.uint8)
    _, labels = cv2.connectedComponents(weak, connectivity=8)
    keep = np.unique(labels[np.isin(core_labels, big)])
    return np.isin(labels, keep[keep > 0])


def paste_masks(mode: str, predicted: np.ndarray, hull: np.ndarray, learned: np.ndarray | None,
                erode_px: float, blur_px: float, size: int
                ) -> tuple[np.ndarray, np.ndarray | None]:
    """(blend mask, Poisson solve mask or None) of one face in its paste crop.

    A learned mode is the predicted mode (the model's mask within the hull; with
    learned-predicted, the model's mask times the learned one) with the occluders the mask
    net sees cut out: so an unoccluded face is swapped exactly as by default. An occluder
    gets its own narrow rim: the wide feather of the face's outline would either paint the
    generated face over the occluder's edge or leave a band of the original face around
    it. The Poisson equation is solved over the face with the occluders filled in
    (blend.paste_seamless), so their colours do not bleed into the face."""
    if mode not in ("learned", "learned-predicted"):
        return blend.face_mask(*blend_inputs(mode, predicted, hull), erode_px, blur_px, size), None
    if learned is None:
        raise ValueError(f"mask {mode} needs the learned mask")
    base = predicted
    if mode == "learned-predicted":
        product = learned.astype(np.float32) * predicted.astype(np.float32) / 255.0
        base = np.clip(np.rint(product), 0, 255).astype(np.uint8)
    solve = blend.face_mask(base, hull, erode_px, blur_px, size)
    occluded = occluders(learned, hull, size)
    if not occluded.any():
        return solve, None
    scale = size / blend.REFERENCE_FACE_SIZE
    grow = max(1, int(round(RIM * scale)))
    rim = cv2.dilate(occluded.astype(np.uint8), cv2.getStructuringElement(
        cv2.MORPH_ELLIPSE, (2 * grow + 1,) * 2)).astype(np.float32)
    rim = cv2.GaussianBlur(rim, (0, 0), max(0.5, RIM * scale / 2.0))
    mask = np.clip(np.rint(solve * (1.0 - np.minimum(rim * 1.5, 1.0))), 0, 255).astype(np.uint8)
    return mask, solve
