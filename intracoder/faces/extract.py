"""The extraction stage: frames -> MTCNN -> face mesh -> aligned crops with metadata + masks.

``FaceFinder`` (detect + dense landmarks + align) is shared with convert, so a converted
face is cut exactly the way the training faces were.
"""

from __future__ import annotations

import contextlib
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from intracoder import __version__
from intracoder.errors import UserError
from intracoder.faces import debug as debug_draw
from intracoder.faces.align import (FACE_TYPES, DegenerateLandmarks, alignment_matrix,
                                    transform_points)
from intracoder.faces.detect import Detection, FaceDetector
from intracoder.faces.faceset import FaceMeta, FacesetIndex, face_filename, write_face
from intracoder.faces.frames import FrameSource
from intracoder.faces.landmarks import FaceMesh
from intracoder.faces.masks import blur_score, head_pose, hull_mask
from intracoder.media.video import DecodeError
from intracoder.progress import progress


@dataclass(frozen=True)
class ExtractConfig:
    input: str = field(metadata={"positional": True, "help": "video file, image, or folder of images"})
    out_dir: str = field(metadata={"positional": True, "help": "folder for the aligned face crops"})
    every: int = field(default=1, metadata={"help": "take every Nth video frame"})
    min_size: int = field(default=40, metadata={"help": "smallest face to keep, in pixels"})
    min_confidence: float = field(default=0.9, metadata={"help": "smallest MTCNN confidence to keep"})
    largest: bool = field(default=False, metadata={"help": "keep only the largest face of each frame"})
    face_type: str = field(default="full", metadata={"choices": sorted(FACE_TYPES),
                                                      "help": "crop padding around the face"})
    size: int = field(default=256, metadata={"help": "crop size in pixels"})
    format: str = field(default="png", metadata={"choices": ["png", "jpg"],
                                                  "help": "crop image format"})
    batch_size: int = field(default=8, metadata={"help": "frames per MTCNN batch"})
    debug: str | None = field(default=None, metadata={
        "help": "folder for frames drawn with boxes, landmarks and crop outlines"})
    reference: list[str] | None = field(default=None, metadata={
        "help": "image of the person to keep (dlib identity embedding); others are dropped"})
    threshold: float = field(default=0.6, metadata={
        "help": "largest identity distance to a --reference face that counts as the same person"})


@dataclass
class FoundFace:
    detection: Detection
    landmarks: np.ndarray  # 468x3, source pixels
    mesh_score: float


@dataclass
class ExtractSummary:
    frames_read: int = 0
    faces_written: int = 0
    frames_without_face: int = 0
    frames_skipped: int = 0
    faces_rejected: int = 0  # found, but not the --reference person
    seconds: float = 0.0

    def line(self) -> str:
        rate = self.frames_read / self.seconds if self.seconds else 0.0
        return (f"{self.frames_read} frames read ({rate:.1f}/s), {self.faces_written} faces written, "
                f"{self.frames_without_face} frames without a face, "
                f"{self.frames_skipped} frames already done"
                + (f", {self.faces_rejected} faces of other people dropped"
                   if self.faces_rejected else ""))


class FaceFinder:
    """MTCNN + face mesh, loaded once."""

    def __init__(self, min_size: int = 40, min_confidence: float = 0.9, largest: bool = False):
        self.detector = FaceDetector(min_size=min_size, min_confidence=min_confidence)
        self.mesh = FaceMesh()
        self.largest = largest

    def find(self, images: list[np.ndarray]) -> list[list[FoundFace]]:
        found = []
        for image, dets in zip(images, self.detector.detect(images)):
            if self.largest:
                dets = dets[:1]
            faces = []
            for det in dets:
                landmarks, score = self.mesh.landmarks(image, det.points5, det.box)
                faces.append(FoundFace(det, landmarks, score))
            found.append(faces)
        return found


def crop_face(image: np.ndarray, landmarks: np.ndarray, face_type: str, size: int
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Aligned crop, its face mask and the 2x3 source->crop matrix."""
    matrix = alignment_matrix(landmarks, face_type, size)
    crop = cv2.warpAffine(image, matrix, (size, size), flags=cv2.INTER_CUBIC,
                          borderMode=cv2.BORDER_REPLICATE)
    mask = hull_mask(transform_points(landmarks, matrix), size)
    return crop, mask, matrix


def face_meta(source: str, frame: int, face_index: int, face: FoundFace, matrix: np.ndarray,
              crop: np.ndarray, mask: np.ndarray, face_type: str, size: int) -> FaceMeta:
    yaw, pitch, roll = head_pose(face.landmarks)
    return FaceMeta(source=source, frame=frame, face_index=face_index,
                    confidence=face.detection.confidence, points5=face.detection.points5.tolist(),
                    landmarks=face.landmarks.tolist(), matrix=matrix.tolist(), face_type=face_type,
                    size=size, blur=round(blur_score(crop, mask), 2), yaw=round(yaw, 2),
                    pitch=round(pitch, 2), roll=round(roll, 2), version=__version__)


def _write_all(crops) -> None:
    for path, crop, mask, meta in crops:
        write_face(path, crop, mask, meta)


def _prepare_out_dir(out_dir: Path) -> bool:
    """Create OUT_DIR if needed; True when this run created it."""
    if out_dir.exists() and not out_dir.is_dir():
        raise UserError(f"{out_dir}: exists and is not a folder")
    created = not out_dir.exists()
    out_dir.mkdir(parents=True, exist_ok=True)
    return created


def extract(config: ExtractConfig, finder: FaceFinder | None = None) -> ExtractSummary:
    if config.size < 32 or config.size % 2:
        raise UserError(f"--size must be an even number of pixels >= 32, got {config.size}")
    source = FrameSource(config.input, config.every)
    out_dir = Path(config.out_dir)
    created = _prepare_out_dir(out_dir)
    index = FacesetIndex(out_dir)
    wanted = source.wanted()
    done = {(s, f) for s, f in wanted if f in index.frames_done(s)}
    summary = ExtractSummary(frames_skipped=len(done))
    debug_dir = Path(config.debug) if config.debug else None
    if debug_dir:
        debug_dir.mkdir(parents=True, exist_ok=True)
    identity = None
    if config.reference:
        from intracoder.identity.embedding import IdentityFilter

        identity = IdentityFilter.from_images(config.reference, config.threshold)
    start = time.perf_counter()
    bar = progress(total=len(wanted) - len(done), unit="frame", desc="extract")

    # Crops are encoded and written on a worker thread (PNG encoding releases the GIL)
    # while the next batch is detected; a frame enters the index only once its files exist.
    writer = ThreadPoolExecutor(max_workers=1)
    pending: list = []

    def commit_pending() -> None:
        for future, frame, files, rows, n_faces in pending:
            future.result()
            index.mark_frame(frame.source, frame.index, files, rows)
            summary.frames_read += 1
            summary.faces_written += n_faces
            summary.frames_without_face += not n_faces
        if pending:
            index.save()
            bar.update(len(pending))
        pending.clear()

    def flush(batch) -> None:
        nonlocal finder
        if finder is None:  # only once there is a frame to look at: a resume may have none
            finder = FaceFinder(config.min_size, config.min_confidence, config.largest)
        jobs = []
        for frame, faces in zip(batch, finder.find([f.image for f in batch])):
            files, rows, crops = [], [], []
            kept = []
            for i, face in enumerate(faces):
                # The face index stays the detector's, so it is stable with or without a filter.
                if identity is not None:
                    same, dist = identity.keeps(frame.image, face.detection.box)
                    summary.faces_rejected += not same
                    if not same:
                        continue
                try:
                    crop, mask, matrix = crop_face(frame.image, face.landmarks,
                                                   config.face_type, config.size)
                except DegenerateLandmarks:  # a broken mesh for this face: no crop of it
                    continue
                kept.append(face)
                meta = face_meta(frame.source, frame.index, i, face, matrix, crop, mask,
                                 config.face_type, config.size)
                if identity is not None:
                    meta.extra["identity_distance"] = round(dist, 4)
                name = face_filename(index.stem_for(frame.source), frame.index, i,
                                     config.format)
                crops.append((out_dir / name, crop, mask, meta))
                files.append(name)
                rows.append({"source": frame.source, "frame": frame.index, "face_index": i,
                             "confidence": round(meta.confidence, 4), "blur": meta.blur,
                             "yaw": meta.yaw, "pitch": meta.pitch, "roll": meta.roll,
                             "face_type": config.face_type, "size": config.size})
            if debug_dir:
                debug_draw.write_debug_frame(debug_dir, frame, kept, config.face_type, config.size)
            jobs.append((writer.submit(_write_all, crops), frame, files, rows, len(kept)))
        commit_pending()
        pending.extend(jobs)

    try:
        batch = []
        try:
            for frame in source.frames(skip=done):
                batch.append(frame)
                # A batch holds one image size only: MTCNN pads mixed sizes to the largest.
                if len(batch) >= config.batch_size or batch[0].image.shape != frame.image.shape:
                    last = batch.pop() if batch[0].image.shape != frame.image.shape else None
                    flush(batch)
                    batch = [last] if last is not None else []
        except DecodeError as exc:
            if batch:  # the frames decoded before the damage still count
                flush(batch)
            commit_pending()
            raise UserError(f"{exc} (the {len(index.faces)} faces found before it are kept)") \
                from None
        if batch:
            flush(batch)
        commit_pending()
    finally:
        # On an error or Ctrl-C, finished writes still enter the index so a rerun skips them.
        writer.shutdown(wait=True)
        with contextlib.suppress(BaseException):
            commit_pending()
        bar.close()
        summary.seconds = time.perf_counter() - start
    if not index.faces:
        if created:
            shutil.rmtree(out_dir, ignore_errors=True)
        if summary.faces_rejected:
            raise UserError(f"{config.input}: none of the {summary.faces_rejected} faces found "
                            f"matches --reference (try a higher --threshold than {config.threshold})")
        raise UserError(f"{config.input}: no face found in {summary.frames_read} frames "
                        f"(try a lower --min-size or --min-confidence)")
    return summary
