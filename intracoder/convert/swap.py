"""The face swap itself: cut each face as the training faces were cut, run the model on all
faces of a chunk of frames at once, colour-match (or refine) the results and paste them
back, blended, on every core."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Sequence

import cv2
import numpy as np

from intracoder.convert import blend, colour, learned
from intracoder.convert.settings import REFINER, Settings
from intracoder.convert.sharpen import sharpen
from intracoder.faces.align import DegenerateLandmarks, alignment_matrix, transform_points
from intracoder.faces.masks import hull_mask

if TYPE_CHECKING:
    from intracoder.convert.pipeline import ConvertConfig, ConvertSummary
    from intracoder.models.autoencoder import SwapModel
    from intracoder.segment.predict import MaskPredictor

# The model's input is cut as large as the face is in the frame (then shrunk with INTER_AREA,
# as the training faces were), up to MAX_CUT, which bounds the cost of a face filling a 4K
# frame. Mask and paste work at no more than PASTE_SIZE (or the model's resolution if
# larger): the generated face is no sharper than the model's resolution and the mask edge is
# feathered, so a finer grid adds nothing but cost (person_a's 416-px face, quick model: mask
# and alpha paste 3x cheaper at 256 px, result within 48 dB PSNR of the 416-px paste).
MAX_CUT = 512
PASTE_SIZE = 256


def paste_threads() -> int:
    """Pasting runs in OpenCV, which releases the GIL, so frames are blended on every core
    this process may use (a segment worker of a parallel convert gets its share)."""
    import os

    return int(os.environ.get("INTRACODER_THREADS") or os.cpu_count() or 1)


@dataclass
class _Face:
    frame: int  # index into the chunk
    matrix: np.ndarray  # 2x3, frame -> paste crop of ``size`` px
    size: int
    small: np.ndarray  # BGR crop at the model's resolution
    hull: np.ndarray  # face-mesh hull in the paste crop
    seg: np.ndarray | None = None  # the crop the mask net sees
    seg_matrix: np.ndarray | None = None  # 2x3, frame -> seg


class FaceSwapper:
    """Cuts faces the way the training faces were cut, runs the model on all faces of a
    chunk of frames at once, and blends the results back in."""

    def __init__(self, model: SwapModel, decoder: str, face_type: str, config: ConvertConfig,
                 refine: Callable[..., np.ndarray] | None = None,
                 segment: MaskPredictor | None = None):
        self.model, self.decoder, self.face_type, self.config = model, decoder, face_type, config
        self.refine = refine  # refine_faces bound to a refiner: replaces colour transfer
        self.segment = segment  # the mask net, for the learned mask modes
        self.res = model.config.resolution
        # A fixed power of two: decode pads short batches to powers of two, so the model is
        # traced for a handful of batch shapes however many faces each chunk holds.
        self.batch = 1 << (max(config.batch, 1) - 1).bit_length()

    def _cut(self, frame_no: int, frame: np.ndarray, landmarks: np.ndarray) -> _Face | None:
        """The face cut out for the model; None for landmarks no alignment fits (the frame
        keeps its own face there)."""
        # alignment_matrix is linear in the crop size, so one fit serves every size.
        try:
            unit = alignment_matrix(landmarks, self.face_type, self.res)
        except DegenerateLandmarks:
            return None
        in_frame = self.res / np.sqrt(abs(np.linalg.det(unit[:, :2])))
        cut = int(np.clip(round(in_frame / 8) * 8, self.res, MAX_CUT))
        crop = cv2.warpAffine(frame, unit * (cut / self.res), (cut, cut), flags=cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_REPLICATE)
        # INTER_AREA, as the training faces were shrunk from their crops (data/dataset.py).
        small = cv2.resize(crop, (self.res, self.res), interpolation=cv2.INTER_AREA)
        size = min(cut, max(PASTE_SIZE, self.res))
        matrix = unit * (size / self.res)
        hull = hull_mask(transform_points(landmarks, matrix), size)
        face = _Face(frame_no, matrix, size, small, hull)
        if self.segment is not None:
            face.seg, face.seg_matrix = learned.segment_crop(
                frame, landmarks, self.segment.face_type, self.segment.resolution, crop,
                unit * (cut / self.res), self.face_type)
        return face

    def swap(self, frames: list[np.ndarray], faces: list[list[np.ndarray]],
             summary: ConvertSummary,
             settings: Settings | Sequence[Settings] | None = None) -> list[np.ndarray]:
        """The frames with every listed face replaced; frames without faces are returned
        as they are (the same objects). ``settings``: one for all frames or one per frame
        (default: the config's); the model runs once on every face whatever they are."""
        res = self.res
        if settings is None:
            settings = Settings.from_config(self.config)
        if isinstance(settings, Settings):
            settings = [settings] * len(frames)
        with summary.timed("detect"):
            cut = [c for c in (self._cut(i, frames[i], lm) for i, lms in enumerate(faces)
                               for lm in lms) if c is not None]
        if not cut:
            return list(frames)
        with summary.timed("model"):
            rgb = np.stack([f.small[..., ::-1] for f in cut])
            generated, masks = self.model.decode(rgb, self.decoder, batch_size=self.batch)
        seen: list[np.ndarray | None] = [None] * len(cut)  # learned masks in the paste crops
        if learned.needs_segment(settings, self.segment is not None):
            with summary.timed("mask"):
                probs = self.segment.probabilities(np.stack([f.seg for f in cut]), self.batch)
                seen = [learned.into_paste(p, f.seg_matrix, f.matrix, f.size)
                        for p, f in zip(probs, cut)]
        with summary.timed("colour"):
            bgr = np.clip(np.rint(generated[..., ::-1] * 255.0), 0, 255).astype(np.uint8)
            pred8 = np.clip(np.rint(masks[..., 0] * 255.0), 0, 255).astype(np.uint8)
            smalls = np.stack([f.small for f in cut])
            # Statistics come from where the model and the landmarks agree there is face,
            # whatever the blend mask: the colour must not change with it.
            # An occluder the mask net sees is left out of them too.
            visible = [f.hull if v is None else np.minimum(f.hull, v) for f, v in zip(cut, seen)]
            inside = np.stack([np.minimum(p, cv2.resize(v, (res, res), interpolation=cv2.INTER_AREA))
                               for p, v in zip(pred8, visible)])
            coloured = self._colour(bgr, smalls, inside, [settings[f.frame] for f in cut])

        faces_of: dict[int, list] = {}  # frame -> its faces, pasted one after the other
        for face, generated_face, predicted, visible in zip(cut, coloured, pred8, seen):
            faces_of.setdefault(face.frame, []).append((face, generated_face, predicted, visible))

        def paste_all(frame_no: int) -> np.ndarray:
            frame, own = frames[frame_no], settings[frame_no]
            paste = blend.paste_seamless if own.blend == "seamless" else blend.paste_alpha
            mode = learned.resolve(own.mask, self.segment is not None)
            for face, generated_face, predicted, visible in faces_of[frame_no]:
                side = (face.size, face.size)
                big = cv2.resize(generated_face, side, interpolation=cv2.INTER_CUBIC)
                pred_big = cv2.resize(predicted, side, interpolation=cv2.INTER_LINEAR)
                mask, solve = learned.paste_masks(mode, pred_big, face.hull, visible, own.erode,
                                                  own.blur, face.size)
                matrix = blend.scaled_matrix(face.matrix, own.face_scale, face.size)
                # Cubic, not bilinear: the face is enlarged again on its way into the frame
                # (face-box sharpness 0.39 -> 0.40 on person_b -> person_a).
                if own.blend == "seamless":
                    frame = paste(frame, big, mask, matrix, cv2.INTER_CUBIC, solve_mask=solve)
                else:
                    frame = paste(frame, big, mask, matrix, cv2.INTER_CUBIC)
            return frame

        out = list(frames)
        with summary.timed("blend"), ThreadPoolExecutor(paste_threads()) as pool:
            for i, frame in zip(faces_of, pool.map(paste_all, faces_of)):
                out[i] = frame
        return out

    def _colour(self, bgr: np.ndarray, smalls: np.ndarray, inside: np.ndarray,
                settings: list[Settings]) -> list[np.ndarray]:
        """Each generated face colour-matched (or refined) and sharpened by its own
        settings; the refined ones in one batch."""
        coloured: list[np.ndarray | None] = [None] * len(bgr)
        refined = [i for i, s in enumerate(settings) if s.color == REFINER]
        if refined:
            if self.refine is None:
                raise ValueError("a refiner colour mode needs the swapper's refine function "
                                 "(pipeline.load_refiner)")
            out = self.refine(bgr[refined], smalls[refined], inside[refined],
                              batch_size=self.batch)
            for i, face in zip(refined, out):
                coloured[i] = face
        for i, s in enumerate(settings):
            if coloured[i] is None:
                coloured[i] = colour.transfer(s.color, bgr[i], smalls[i], inside[i])
        return [sharpen(face, s.sharpen) for face, s in zip(coloured, settings)]
