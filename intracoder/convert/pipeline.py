"""The convert stage: faces of one person in a video, image or folder become the other's.

frames -> faces (MTCNN on key frames, face-mesh tracking in between, One-Euro smoothing:
``convert.smoothing``) -> aligned crops cut like the training faces -> shared encoder + the
other person's decoder, batched over a chunk of frames -> colour transfer (or the refiner
net) -> mask -> inverse warp and Poisson or alpha blend of the face region only ->
provenance mark -> H.264 with the source audio, or images. Reading and writing media, and
the checks on INPUT and OUTPUT, are in ``convert.media``. Heavy imports (TensorFlow through
the detector and the model) wait until every check has passed.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import json
import os
import time
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator

import cv2
import numpy as np

from intracoder.convert import blend, colour
from intracoder.convert.colour import COLOUR_MODES
from intracoder.convert.media import Sink, check_output, open_source
from intracoder.convert.sharpen import sharpen
from intracoder.convert.smoothing import FaceLocator, FaceTracks
from intracoder.errors import UserError
from intracoder.faces.align import DegenerateLandmarks, alignment_matrix, transform_points
from intracoder.faces.masks import hull_mask
from intracoder.media.image import write_image
from intracoder.progress import progress
from intracoder.provenance import mark_frame
from intracoder.provenance.label import clean_label
from intracoder.provenance.metadata import image_text

if TYPE_CHECKING:
    from intracoder.faces.extract import FaceFinder
    from intracoder.models.autoencoder import SwapModel

STAGES = ("decode", "detect", "model", "colour", "blend", "mark", "encode")
# The model's input is cut as large as the face is in the frame (then shrunk with INTER_AREA,
# as the training faces were), up to MAX_CUT, which bounds the cost of a face filling a 4K
# frame. Mask and paste work at no more than PASTE_SIZE (or the model's resolution if
# larger): the generated face is no sharper than the model's resolution and the mask edge is
# feathered, so a finer grid adds nothing but cost (person_a's 416-px face, quick model: mask
# and alpha paste 3x cheaper at 256 px, result within 48 dB PSNR of the 416-px paste).
MAX_CUT = 512
PASTE_SIZE = 256
PREVIEWS = 8  # side-by-side previews, spread evenly over the frames
REFINER = "refiner"  # the --color choice that runs the model folder's refiner net
# Pasting runs in OpenCV, which releases the GIL, so frames are blended on every core at once.
WORKERS = os.cpu_count() or 1


@dataclass(frozen=True)
class ConvertConfig:
    input: str = field(metadata={"positional": True, "help": "video, image or image folder"})
    output: str = field(metadata={"positional": True, "help": "video, image or folder, as INPUT"})
    model: str | None = field(default=None, metadata={"help": "trained model folder (required)"})
    direction: str = field(default="a2b", metadata={
        "choices": ["a2b", "b2a"], "help": "a2b: faces of person A become B; b2a: the reverse"})
    color: str = field(default="rct", metadata={
        "choices": [*sorted(COLOUR_MODES), REFINER],
        "help": f"colour transfer onto the destination face; {REFINER}: the model's trained "
                "colour/super-resolution net (intracoder train-refiner)"})
    blend: str = field(default="seamless", metadata={
        "choices": ["seamless", "alpha"], "help": "Poisson (seamless) or plain alpha blending"})
    # 1.0: on person_b -> person_a (15-minute quick model) identity distance 0.369 -> 0.355
    # and face-box sharpness 0.40 -> 0.42; 1.5 and 2.0 sharpen more but draw bright halos
    # along the brows and eyes (docs/quality.md).
    sharpen: float = field(default=1.0, metadata={
        "help": "unsharp-mask amount on the generated face before pasting, at one pixel of "
                "the model's output (0: off)"})
    erode: float = field(default=8.0, metadata={
        "help": "shrink the mask by this many pixels of a 256-px face (negative grows it)"})
    blur: float = field(default=16.0, metadata={
        "help": "feather the mask edge over this many pixels of a 256-px face"})
    start: int = field(default=0, metadata={"help": "first frame (video) or image (folder)"})
    end: int | None = field(default=None, metadata={
        "help": "frame or image to stop before; none: to the end"})
    face_index: int | None = field(default=None, metadata={
        "help": "swap only the Nth largest face of each frame, 0 = largest; none: all"})
    label: str | None = field(default=None, metadata={
        "help": "also burn this visible label into every frame (the invisible mark is always on)"})
    preview: str | None = field(default=None, metadata={
        "help": "folder for side-by-side before/after PNGs of sampled frames"})
    smooth: bool = field(default=True, metadata={"help": "smooth landmarks over time (video)"})
    detect_every: int = field(default=8, metadata={
        "help": "run the face detector on every Nth video frame and track faces with the "
                "face mesh in between (1: detect on every frame)"})
    batch: int = field(default=16, metadata={
        "help": "frames handled together: one detector call, one model batch"})
    min_size: int = field(default=40, metadata={"help": "smallest face to swap, in pixels"})
    min_confidence: float = field(default=0.9, metadata={"help": "smallest MTCNN confidence"})
    crf: int = field(default=18, metadata={"help": "H.264 quality, lower is better, 0..51"})


@dataclass
class ConvertSummary:
    frames: int = 0
    faces_swapped: int = 0
    frames_without_face: int = 0
    seconds: float = 0.0
    stages: dict[str, float] = field(default_factory=lambda: dict.fromkeys(STAGES, 0.0))

    def line(self) -> str:
        rate = self.frames / self.seconds if self.seconds else 0.0
        return (f"{self.frames} frames ({rate:.1f}/s), {self.faces_swapped} faces swapped, "
                f"{self.frames_without_face} frames without a face, {self.seconds:.1f} s")

    @contextmanager
    def timed(self, stage: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.stages[stage] += time.perf_counter() - start


@dataclass
class _Face:
    frame: int  # index into the chunk
    matrix: np.ndarray  # 2x3, frame -> paste crop of ``size`` px
    size: int
    small: np.ndarray  # BGR crop at the model's resolution
    hull: np.ndarray  # face-mesh hull in the paste crop


class FaceSwapper:
    """Cuts faces the way the training faces were cut, runs the model on all faces of a
    chunk of frames at once, and blends the results back in."""

    def __init__(self, model: SwapModel, decoder: str, face_type: str, config: ConvertConfig,
                 refine: Callable[..., np.ndarray] | None = None):
        self.model, self.decoder, self.face_type, self.config = model, decoder, face_type, config
        self.refine = refine  # refine_faces bound to a refiner: replaces colour transfer
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
        return _Face(frame_no, matrix, size, small, hull)

    def swap(self, frames: list[np.ndarray], faces: list[list[np.ndarray]],
             summary: ConvertSummary) -> list[np.ndarray]:
        """The frames with every listed face replaced; frames without faces are returned
        as they are (the same objects)."""
        cfg, res = self.config, self.res
        with summary.timed("detect"):
            cut = [c for c in (self._cut(i, frames[i], lm) for i, lms in enumerate(faces)
                               for lm in lms) if c is not None]
        if not cut:
            return list(frames)
        with summary.timed("model"):
            rgb = np.stack([f.small[..., ::-1] for f in cut])
            generated, masks = self.model.decode(rgb, self.decoder, batch_size=self.batch)
        with summary.timed("colour"):
            bgr = np.clip(np.rint(generated[..., ::-1] * 255.0), 0, 255).astype(np.uint8)
            pred8 = np.clip(np.rint(masks[..., 0] * 255.0), 0, 255).astype(np.uint8)
            smalls = np.stack([f.small for f in cut])
            # Statistics come from where the model and the landmarks agree there is face.
            inside = np.stack([np.minimum(p, cv2.resize(f.hull, (res, res),
                                                        interpolation=cv2.INTER_AREA))
                               for p, f in zip(pred8, cut)])
            if self.refine is not None:
                coloured = list(self.refine(bgr, smalls, inside, batch_size=self.batch))
            else:
                coloured = [colour.transfer(cfg.color, *args) for args in zip(bgr, smalls, inside)]
            coloured = [sharpen(face, cfg.sharpen) for face in coloured]
        paste = blend.paste_seamless if cfg.blend == "seamless" else blend.paste_alpha

        faces_of: dict[int, list] = {}  # frame -> its faces, pasted one after the other
        for face, generated_face, predicted in zip(cut, coloured, pred8):
            faces_of.setdefault(face.frame, []).append((face, generated_face, predicted))

        def paste_all(frame_no: int) -> np.ndarray:
            frame = frames[frame_no]
            for face, generated_face, predicted in faces_of[frame_no]:
                side = (face.size, face.size)
                big = cv2.resize(generated_face, side, interpolation=cv2.INTER_CUBIC)
                pred_big = cv2.resize(predicted, side, interpolation=cv2.INTER_LINEAR)
                mask = blend.face_mask(pred_big, face.hull, cfg.erode, cfg.blur, face.size)
                # Cubic, not bilinear: the face is enlarged again on its way into the frame
                # (face-box sharpness 0.39 -> 0.40 on person_b -> person_a).
                frame = paste(frame, big, mask, face.matrix, cv2.INTER_CUBIC)
            return frame

        out = list(frames)
        with summary.timed("blend"), ThreadPoolExecutor(WORKERS) as pool:
            for i, frame in zip(faces_of, pool.map(paste_all, faces_of)):
                out[i] = frame
        return out


def _wait(job: Future | None) -> None:
    """Wait for a job on another thread; its exception, if any, is raised here."""
    if job is not None:
        job.result()


def model_id(state: dict) -> str:
    """Short, stable id of a trained model for the provenance mark: the same model gives the
    same id on every machine, a retrained one (new creation time) a different one."""
    key = json.dumps({"created": state.get("created"), "model": state.get("model_config")},
                     sort_keys=True)
    return "ic-" + hashlib.sha256(key.encode()).hexdigest()[:12]


def _model_folder(model_dir: str | None) -> Path:
    if not model_dir:
        raise UserError("--model is required: the folder of a trained model")
    if not Path(model_dir).is_dir():
        raise UserError(f"{model_dir}: model folder not found")
    return Path(model_dir)


def check_model(model_dir: str | None, decoder: str, direction: str) -> dict:
    """state.json of a complete model that has ``decoder``; UserError otherwise. Reads no
    weights, so a bad model folder fails before the model is built."""
    folder = _model_folder(model_dir)
    from intracoder.training import checkpoint, inference

    state = checkpoint.read_state(folder)
    if state is None:
        raise UserError(f"{folder}: not a trained model folder (no checkpoint in it)")
    inference.require_pair_model(state, folder)
    from intracoder.models.config import PARTS, ModelConfig

    model_config = ModelConfig(**state["model_config"])
    if direction not in model_config.directions:
        raise UserError(f"{folder}: a {model_config.arch} model converts only "
                        f"{' and '.join(model_config.directions)}, not {direction} (its "
                        "private inter has seen only person A's faces)")
    files = state.get("files", {})
    parts = PARTS[model_config.base]
    if decoder not in state.get("facesets", {}) or not set(parts) <= set(files):
        raise UserError(f"{folder}: this model has no decoder for person {decoder.upper()}, "
                        f"so it cannot convert {direction}")
    ckpt = checkpoint.find_checkpoint(folder)
    for part in parts:
        if not (ckpt / files.get(part, f"{part}.weights.h5")).is_file():
            raise UserError(f"{folder}: incomplete model, {part} weights are missing from {ckpt}")
    return state


def _preview(folder: Path, name: str, before: np.ndarray, after: np.ndarray, mid: str,
             label: str | None) -> None:
    side_by_side = mark_frame(np.hstack([before, after]), mid, label)
    write_image(folder / f"{name}.png", side_by_side, image_text(mid))


def convert(cfg: ConvertConfig, finder: FaceFinder | None = None,
            loaded: tuple[SwapModel, dict] | None = None) -> ConvertSummary:
    """Run the whole conversion: every check on input, output and model runs before the first
    frame is read; OUTPUT appears only once complete. ``finder`` and ``loaded`` (load_model's
    result for ``cfg.model``) let a caller that converts several times load them once."""
    if cfg.detect_every < 1 or cfg.batch < 1:
        raise UserError("--detect-every and --batch must be at least 1")
    if cfg.face_index is not None and cfg.face_index < 0:
        raise UserError("--face-index counts from 0 (the largest face)")
    if not 0 <= cfg.crf <= 51:
        raise UserError(f"--crf must be within 0..51 (H.264), got {cfg.crf}")
    if cfg.label is not None:
        try:  # burnt in on the writer thread, after the model loaded: checked here first
            clean_label(cfg.label)
        except ValueError:
            raise UserError(f"--label {cfg.label!r}: nothing to draw (printable ASCII "
                            "characters are needed)") from None
    decoder = "b" if cfg.direction == "a2b" else "a"
    _model_folder(cfg.model)
    source = open_source(cfg.input, cfg.start, cfg.end)
    check_output(source, cfg.output)
    check_model(cfg.model, decoder, cfg.direction)
    refine = None
    if cfg.color == REFINER:  # Keras comes in with it, so only when asked for
        from intracoder.refiner.apply import refine_faces, require_refiner

        refine = functools.partial(refine_faces, require_refiner(cfg.model, decoder))
    preview_dir = Path(cfg.preview) if cfg.preview else None
    if preview_dir:
        preview_dir.mkdir(parents=True, exist_ok=True)

    from intracoder.faces.extract import FaceFinder
    from intracoder.training.inference import load_model

    model, state = loaded or load_model(cfg.model)
    mid = model_id(state)
    finder = finder or FaceFinder(cfg.min_size, cfg.min_confidence)
    video = source.kind == "video"
    tracks = FaceTracks(source.fps) if video and cfg.smooth else None
    locator = FaceLocator(finder, cfg.detect_every if video else 1, tracks)
    swapper = FaceSwapper(model, decoder, state["face_type"], cfg, refine)
    sampled = set(np.linspace(0, source.count - 1, min(PREVIEWS, source.count)).round().astype(int))
    summary = ConvertSummary()
    start = time.perf_counter()
    frames = source.frames()

    def next_chunk() -> list[tuple[str, np.ndarray]]:
        with summary.timed("decode"):
            return list(itertools.islice(frames, cfg.batch))

    def write(first: int, names: list[str], before: list[np.ndarray],
              after: list[np.ndarray]) -> None:
        for i, (name, frame, swapped) in enumerate(zip(names, before, after)):
            with summary.timed("mark"):
                marked = mark_frame(swapped, mid, cfg.label)
            with summary.timed("encode"):
                sink.write(name, marked)
            if preview_dir and first + i in sampled:
                _preview(preview_dir, Path(name).stem, frame, marked, mid, cfg.label)
        bar.update(len(names))
        bar.set_postfix_str(f"{summary.faces_swapped} faces", refresh=False)

    # One chunk is marked and written on a second thread while the next is decoded, detected
    # and swapped: marking and feeding ffmpeg take a third of a frame's time. The writer's
    # pool is left (waiting for the chunk in hand) before the sink, so an error or Ctrl-C
    # never discards a file that is still being written.
    with Sink(source, cfg.output, mid, cfg.crf) as sink, \
            progress(source.count, "frame", "convert") as bar, \
            ThreadPoolExecutor(1) as writer:
        n, written = 0, None
        while chunk := next_chunk():
            names, images = [c[0] for c in chunk], [c[1] for c in chunk]
            with summary.timed("detect"):
                faces = locator.locate(images, n)
            if cfg.face_index is not None:
                faces = [f[cfg.face_index:cfg.face_index + 1] for f in faces]
            swapped = swapper.swap(images, faces, summary)
            summary.frames += len(chunk)
            summary.faces_swapped += sum(len(f) for f in faces)
            summary.frames_without_face += sum(not f for f in faces)
            _wait(written)
            written = writer.submit(write, n, names, images, swapped)
            n += len(chunk)
        _wait(written)
        with summary.timed("encode"):
            sink.close()
    summary.seconds = time.perf_counter() - start
    return summary
