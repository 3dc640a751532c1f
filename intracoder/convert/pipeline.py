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

import numpy as np

from intracoder.convert.media import Sink, Source, check_output, open_source
from intracoder.convert.settings import (BLENDS, COLOURS, MASK_MODES, REFINER, Settings,
                                         SettingsFile, check_config, schedule, with_settings)
from intracoder.convert.smoothing import FaceLocator, FaceTracks
from intracoder.convert.learned import load_segment
from intracoder.convert.swap import FaceSwapper
from intracoder.errors import UserError
from intracoder.media.image import write_image
from intracoder.progress import progress
from intracoder.provenance import mark_frame
from intracoder.provenance.label import clean_label
from intracoder.provenance.metadata import image_text

if TYPE_CHECKING:
    from intracoder.faces.extract import FaceFinder
    from intracoder.models.autoencoder import SwapModel
    from intracoder.segment.predict import MaskPredictor

STAGES = ("decode", "detect", "model", "mask", "colour", "blend", "mark", "encode")
PREVIEWS = 8  # side-by-side previews, spread evenly over the frames
WORKER_CORES = 4  # cores per worker process when --workers is not given
_DEFAULT = Settings()  # the per-frame options' defaults live in one place


@dataclass(frozen=True)
class ConvertConfig:
    input: str = field(metadata={"positional": True, "help": "video, image or image folder"})
    output: str = field(metadata={"positional": True, "help": "video, image or folder, as INPUT"})
    model: str | None = field(default=None, metadata={"help": "trained model folder (required)"})
    direction: str = field(default="a2b", metadata={
        "choices": ["a2b", "b2a"], "help": "a2b: faces of person A become B; b2a: the reverse"})
    color: str = field(default=_DEFAULT.color, metadata={
        "choices": list(COLOURS),
        "help": f"colour transfer onto the destination face; {REFINER}: the model's trained "
                "colour/super-resolution net (intracoder train-refiner)"})
    blend: str = field(default=_DEFAULT.blend, metadata={
        "choices": list(BLENDS), "help": "Poisson (seamless) or plain alpha blending"})
    # 1.0: on person_b -> person_a (15-minute quick model) identity distance 0.369 -> 0.355
    # and face-box sharpness 0.40 -> 0.42; 1.5 and 2.0 sharpen more but draw bright halos
    # along the brows and eyes (docs/quality.md).
    sharpen: float = field(default=_DEFAULT.sharpen, metadata={
        "help": "unsharp-mask amount on the generated face before pasting, at one pixel of "
                "the model's output (0: off)"})
    erode: float = field(default=_DEFAULT.erode, metadata={
        "help": "shrink the mask by this many pixels of a 256-px face (negative grows it)"})
    blur: float = field(default=_DEFAULT.blur, metadata={
        "help": "feather the mask edge over this many pixels of a 256-px face"})
    face_scale: float = field(default=_DEFAULT.face_scale, metadata={
        "help": "scale the pasted face (and its mask) about the centre of its aligned crop, "
                "e.g. 0.9..1.1 to fit a narrower or wider head"})
    mask: str = field(default=_DEFAULT.mask, metadata={
        "choices": list(MASK_MODES),
        "help": "blend mask: learned = the mask net's view of the face in the frame (keeps "
                "a hand or a cup in front of it), learned-predicted = that times the model's "
                "mask, predicted = the model's mask within the landmark hull, hull = the hull "
                "only, predicted-only = the model's mask only; auto = learned when a mask "
                "model is found, else predicted"})
    mask_model: str | None = field(default=None, metadata={
        "help": "mask model folder (intracoder mask train); default: MODEL/mask when there"})
    start: int = field(default=0, metadata={"help": "first frame (video) or image (folder)"})
    end: int | None = field(default=None, metadata={
        "help": "frame or image to stop before; none: to the end"})
    face_index: int | None = field(default=_DEFAULT.face_index, metadata={
        "help": "swap only the Nth largest face of each frame, 0 = largest; none: all"})
    label: str | None = field(default=None, metadata={
        "help": "also burn this visible label into every frame (the invisible mark is always on)"})
    preview: str | None = field(default=None, metadata={
        "help": "folder for side-by-side before/after PNGs of sampled frames"})
    smooth: bool = field(default=_DEFAULT.smooth, metadata={"help": "smooth landmarks over time (video)"})
    detect_every: int = field(default=8, metadata={
        "help": "run the face detector on every Nth video frame and track faces with the "
                "face mesh in between (1: detect on every frame)"})
    batch: int = field(default=16, metadata={
        "help": "frames handled together: one detector call, one model batch"})
    min_size: int = field(default=40, metadata={"help": "smallest face to swap, in pixels"})
    min_confidence: float = field(default=0.9, metadata={"help": "smallest MTCNN confidence"})
    crf: int = field(default=18, metadata={"help": "H.264 quality, lower is better, 0..51"})
    workers: int | None = field(default=None, metadata={
        "help": "convert a video in parts on N worker processes (default: one per "
                f"{WORKER_CORES} cores and at most one per part, so 1 on a small machine "
                "or a short video)"})
    cluster: str | None = field(default=None, metadata={
        "help": "run the parts as Ray tasks: ray://HOST:PORT, auto (inside a running Ray "
                "cluster) or local (a Ray cluster on this machine); needs intracoder[cluster]"})
    segment_frames: int = field(default=600, metadata={
        "help": "frames per part when converting in parts (each part is resumed whole)"})
    settings: str | None = field(default=None, metadata={
        "help": "keyframed per-scene settings (JSON, as the studio saves it in "
                "MODEL/convert_settings.json); its keyframes win over the flags above"})
    # The settings file's content (convert.settings.with_settings): it travels inside the
    # config to worker processes and Ray tasks, and into a resume's plan.
    settings_json: str | None = field(default=None, metadata={"cli": False})


@dataclass
class ConvertSummary:
    frames: int = 0
    faces_swapped: int = 0
    frames_without_face: int = 0
    seconds: float = 0.0
    stages: dict[str, float] = field(default_factory=lambda: dict.fromkeys(STAGES, 0.0))
    parts: int = 0  # a video converted in parts: how many, and how many this run converted
    parts_converted: int = 0
    join_seconds: float = 0.0
    inputs: int = 0  # a folder of videos: how many, and how many could not be converted
    inputs_failed: int = 0

    def line(self) -> str:
        rate = self.frames / self.seconds if self.seconds else 0.0
        parts = (f", {self.parts} parts ({self.parts - self.parts_converted} resumed)"
                 if self.parts else "")
        if self.inputs:
            parts += f", {self.inputs - self.inputs_failed} of {self.inputs} videos"
        return (f"{self.frames} frames ({rate:.1f}/s), {self.faces_swapped} faces swapped, "
                f"{self.frames_without_face} frames without a face, {self.seconds:.1f} s{parts}")

    @contextmanager
    def timed(self, stage: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.stages[stage] += time.perf_counter() - start


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


def check(cfg: ConvertConfig) -> Source:
    """Every check on the options, INPUT, OUTPUT and the model folder, before anything heavy
    loads; the opened INPUT."""
    if cfg.detect_every < 1 or cfg.batch < 1:
        raise UserError("--detect-every and --batch must be at least 1")
    if cfg.face_index is not None and cfg.face_index < 0:
        raise UserError("--face-index counts from 0 (the largest face)")
    if not 0 <= cfg.crf <= 51:
        raise UserError(f"--crf must be within 0..51 (H.264), got {cfg.crf}")
    if (cfg.workers is not None and cfg.workers < 1) or cfg.segment_frames < 1:
        raise UserError("--workers and --segment-frames must be at least 1")
    if cfg.label is not None:
        try:  # burnt in on the writer thread, after the model loaded: checked here first
            clean_label(cfg.label)
        except ValueError:
            raise UserError(f"--label {cfg.label!r}: nothing to draw (printable ASCII "
                            "characters are needed)") from None
    if cfg.cluster:
        from intracoder.convert.cluster import require_ray

        require_ray()
    check_config(cfg)
    plan = schedule(cfg)  # a bad settings file fails here, before anything loads
    _model_folder(cfg.model)
    source = open_source(cfg.input, cfg.start, cfg.end)
    check_output(source, cfg.output)
    check_model(cfg.model, decoder_of(cfg), cfg.direction)
    if uses_refiner(plan, cfg.start):  # Keras comes in with it, so only when asked for
        from intracoder.refiner.apply import require_refiner

        require_refiner(cfg.model, decoder_of(cfg))
    return source


def decoder_of(cfg: ConvertConfig) -> str:
    return "b" if cfg.direction == "a2b" else "a"


def uses_refiner(plan: SettingsFile, start: int = 0) -> bool:
    return any(s.color == REFINER for s in plan.in_use(start))


@dataclass
class Job:
    """What converting loads once and then uses for every frame: the model and its id, the
    face finder, the refiner if asked for."""

    cfg: ConvertConfig
    model: SwapModel
    state: dict
    mid: str
    finder: FaceFinder
    refine: Callable[..., np.ndarray] | None = None
    segment: MaskPredictor | None = None  # the mask net, when a mask mode uses one


def load_job(cfg: ConvertConfig, finder: FaceFinder | None = None,
             loaded: tuple[SwapModel, dict] | None = None) -> Job:
    from intracoder.faces.extract import FaceFinder
    from intracoder.training.inference import load_model

    model, state = loaded or load_model(cfg.model)
    job = Job(cfg, model, state, model_id(state),
              finder or FaceFinder(cfg.min_size, cfg.min_confidence))
    plan = schedule(cfg)
    if uses_refiner(plan, cfg.start):
        load_refiner(job)
    job.segment = load_segment(cfg.model, cfg.mask_model, plan.in_use(cfg.start))
    return job


def load_refiner(job: Job) -> None:
    """Give ``job`` the model folder's refiner, once (a UserError if it has none)."""
    if job.refine is None:
        from intracoder.refiner.apply import refine_faces, require_refiner

        job.refine = functools.partial(refine_faces, require_refiner(job.cfg.model,
                                                                     decoder_of(job.cfg)))


def preview_positions(count: int) -> set[int]:
    """Which frames (counted from the first converted) get a before/after preview."""
    return set(np.linspace(0, count - 1, min(PREVIEWS, count)).round().astype(int).tolist())


def convert(cfg: ConvertConfig, finder: FaceFinder | None = None,
            loaded: tuple[SwapModel, dict] | None = None) -> ConvertSummary:
    """Run the whole conversion: every check on input, output and model runs before the first
    frame is read; OUTPUT appears only once complete. ``finder`` and ``loaded`` (load_model's
    result for ``cfg.model``) let a caller that converts several times load them once. A
    video with more than one worker (``--workers``, ``--cluster``) is converted in parts
    (convert.segments)."""
    from intracoder.convert.batch import convert_folder, is_video_folder

    cfg = with_settings(cfg)
    if is_video_folder(cfg.input):
        return convert_folder(cfg, finder, loaded)
    source = check(cfg)
    if source.kind == "video" and (cfg.cluster or resolve_workers(cfg, source.count) > 1):
        from intracoder.convert.segments import convert_in_parts

        return convert_in_parts(cfg, source, finder, loaded)
    job = load_job(cfg, finder, loaded)
    start = time.perf_counter()
    with Sink(source, cfg.output, job.mid, cfg.crf) as sink, \
            progress(source.count, "frame", "convert") as bar:
        summary = run_frames(job, source, sink, bar.update, sampled=preview_positions(source.count))
        with summary.timed("encode"):
            sink.close()
    summary.seconds = time.perf_counter() - start
    return summary


def resolve_workers(cfg: ConvertConfig, frames: int) -> int:
    """--workers, or what the machine has: one worker per WORKER_CORES cores, each with its
    share of threads (TensorFlow, OpenCV and x264 all use several), but no more than there
    are parts of ``frames``: a worker's start-up (a model load) only pays on a long video."""
    if cfg.workers is not None:
        return cfg.workers
    parts = -(-frames // cfg.segment_frames)
    return max(1, min((os.cpu_count() or 1) // WORKER_CORES, parts))


def run_frames(job: Job, source: Source, sink: Sink, advance: Callable[[int], object],
               warmup: int = 0, first: int = 0, sampled: set[int] = frozenset(),
               plan: SettingsFile | None = None) -> ConvertSummary:
    """Convert ``source`` into ``sink`` frame by frame. The first ``warmup`` frames only warm
    the face tracker and the landmark smoothing up (a part of a video starts a little
    before its first frame, so its faces move as in a run over the whole); ``first`` is the
    position of the source's first frame in the whole conversion, which keeps the detector
    on the same key frames and names the previews. ``advance(n)`` reports frames done.
    Each frame gets ``plan.settings_at`` its frame number (default: the config's settings
    file, or its options)."""
    cfg = job.cfg
    plan = plan or schedule(cfg)
    preview_dir = Path(cfg.preview) if cfg.preview else None
    if preview_dir:
        preview_dir.mkdir(parents=True, exist_ok=True)
    video = source.kind == "video"
    # The One-Euro filter runs over every video frame whether or not a frame's settings
    # smooth, so a scene that turns smoothing on gets the landmarks an always-smoothed run
    # has there; a scene with it off gets the raw ones.
    tracks = FaceTracks(source.fps) if video else None
    locator = FaceLocator(job.finder, cfg.detect_every if video else 1)
    swapper = FaceSwapper(job.model, decoder_of(cfg), job.state["face_type"], cfg, job.refine,
                          job.segment)
    summary = ConvertSummary()
    frames = source.frames()

    def next_chunk() -> list[tuple[str, np.ndarray]]:
        with summary.timed("decode"):
            return list(itertools.islice(frames, cfg.batch))

    def write(at: int, names: list[str], before: list[np.ndarray],
              after: list[np.ndarray]) -> None:
        for i, (name, frame, swapped) in enumerate(zip(names, before, after)):
            with summary.timed("mark"):
                marked = mark_frame(swapped, job.mid, cfg.label)
            with summary.timed("encode"):
                sink.write(name, marked)
            if preview_dir and at + i in sampled:
                _preview(preview_dir, Path(name).stem, frame, marked, job.mid, cfg.label)
        advance(len(names))

    # One chunk is marked and written on a second thread while the next is decoded, detected
    # and swapped: marking and encoding take a third of a frame's time. The writer's pool is
    # left (waiting for the chunk in hand) before the caller closes the sink, so an error or
    # Ctrl-C never discards a file that is still being written.
    with ThreadPoolExecutor(1) as writer:
        n, written = 0, None
        while chunk := next_chunk():
            names, images = [c[0] for c in chunk], [c[1] for c in chunk]
            # Settings by frame number (the video's, not counted from --start): a chunk
            # that spans a keyframe is swapped with each frame's own, in one model batch.
            settings = [plan.settings_at(cfg.start + first + n + i) for i in range(len(chunk))]
            with summary.timed("detect"):
                faces = locator.locate(images, first + n)
                if tracks is not None:
                    smoothed = [tracks.update(f, first + n + i) for i, f in enumerate(faces)]
                    faces = [s if own.smooth else f
                             for f, s, own in zip(faces, smoothed, settings)]
            warm = max(0, min(len(chunk), warmup - n))
            at = first + n + warm  # position of the first frame written from this chunk
            n += len(chunk)
            for name in names[:warm]:  # warm-up frames are not written: forget their times
                source.times.pop(name, None)
            names, images, faces = names[warm:], images[warm:], faces[warm:]
            settings = settings[warm:]
            if not names:
                continue
            faces = [f if s.face_index is None else f[s.face_index:s.face_index + 1]
                     for f, s in zip(faces, settings)]
            swapped = swapper.swap(images, faces, summary, settings)
            summary.frames += len(names)
            summary.faces_swapped += sum(len(f) for f in faces)
            summary.frames_without_face += sum(not f for f in faces)
            _wait(written)
            written = writer.submit(write, at, names, images, swapped)
        _wait(written)
    return summary

