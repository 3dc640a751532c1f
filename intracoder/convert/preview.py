"""One frame converted fast, for the studio: the frame as ``convert`` would write it with
the given settings, and the frame as it was.

A frame's swap depends on the frames before it: the face tracker follows the face from
the detector's last key frame and the One-Euro filter smooths the landmarks over time. So
the frame is converted the way a part of a video converted in parts (convert.segments)
starts: decoding is entered at the keyframe before the warm-up, the tracker and the filter
run over ``warm`` frames from one of the detector's key frames, and only the wanted frame
is swapped and marked, through the same run_frames as convert. Decoded frames are cached,
so moving a slider to a nearby frame decodes nothing again.
"""

from __future__ import annotations

import dataclasses
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from intracoder.convert.media import Source
from intracoder.convert.pipeline import Job, load_refiner, run_frames
from intracoder.convert.segments import warmup_frames
from intracoder.convert.settings import REFINER, Settings, SettingsFile
from intracoder.errors import UserError
from intracoder.media.video import DecodedFrame, VideoInfo, iter_video, keyframes, probe

# About 150 frames of 1080p: the warm-up of any frame within a few seconds of the last one.
CACHE_BYTES = 1 << 30
WARM = warmup_frames(8)  # a part's warm-up at the default --detect-every


class FrameCache:
    """Decoded frames by (video, index), least recently used dropped first past
    ``max_bytes``; a video's keyframes and header read once. Safe to share between the
    threads of a web server."""

    def __init__(self, max_bytes: int = CACHE_BYTES):
        self.max_bytes, self._bytes = max_bytes, 0
        self._frames: OrderedDict[tuple, DecodedFrame] = OrderedDict()
        self._videos: dict[tuple, tuple[VideoInfo, list[tuple[int, int]]]] = {}
        self._lock = threading.Lock()

    @staticmethod
    def _key(path: Path) -> tuple:
        # A file rewritten under the same name is another video.
        stat = path.stat()
        return str(path.resolve()), stat.st_size, stat.st_mtime_ns

    def video(self, path: Path) -> tuple[tuple, VideoInfo, list[tuple[int, int]]]:
        key = self._key(path)
        with self._lock:
            known = self._videos.get(key)
        if known is None:
            known = self._videos[key] = (probe(path), keyframes(path))
        return (key, *known)

    def frames(self, path: str | Path, start: int, end: int) -> list[DecodedFrame]:
        """Frames start..end-1 of the video, decoding only from the keyframe before the
        first frame not cached."""
        path = Path(path)
        key, _, keys = self.video(path)
        with self._lock:
            missing = [i for i in range(start, end) if (key, i) not in self._frames]
        if missing:
            seek = max((k for k in keys if k[0] <= missing[0]), default=None)
            for frame in iter_video(path, missing[0], end, seek=seek):
                self._put((key, frame.index), frame)
        with self._lock:
            out = [self._frames.get((key, i)) for i in range(start, end)]
            for i in range(start, end):
                if (key, i) in self._frames:
                    self._frames.move_to_end((key, i))
        if any(frame is None for frame in out):  # decoded, then pushed out by a larger request
            seek = max((k for k in keys if k[0] <= start), default=None)
            out = [*iter_video(path, start, end, seek=seek)]
        return out

    def _put(self, key: tuple, frame: DecodedFrame) -> None:
        with self._lock:
            if key in self._frames:
                return
            self._frames[key] = frame
            self._bytes += frame.image.nbytes
            while self._bytes > self.max_bytes and len(self._frames) > 1:
                _, old = self._frames.popitem(last=False)
                self._bytes -= old.image.nbytes


_CACHE = FrameCache()


@dataclass
class _Cached(Source):
    """A Source over frames already decoded."""

    decoded: list[DecodedFrame] = field(default_factory=list)

    def frames(self):
        for frame in self.decoded:
            yield f"frame_{frame.index:06d}", frame.image


class _Capture:
    """A Sink that keeps the one frame written."""

    frame: np.ndarray | None = None

    def write(self, name: str, frame: np.ndarray) -> None:
        self.frame = frame


def warm_start(frame_index: int, origin: int, detect_every: int, warm: int) -> int:
    """First frame tracked for ``frame_index``: ``warm`` frames before it, moved back onto
    one of the detector's key frames (multiples of ``detect_every`` from ``origin``), as a
    part of a parallel convert starts."""
    first = max(origin, frame_index - warm)
    return origin + (first - origin) // detect_every * detect_every


class _Green:
    """The job's model with every generated face pure green: pasted by alpha blending with
    no colour transfer or sharpening, the frame shows the blend mask and nothing else."""

    def __init__(self, model):
        self._model = model

    def __getattr__(self, name):
        return getattr(self._model, name)

    def decode(self, faces, decoder, batch_size=32):
        generated, masks = self._model.decode(faces, decoder, batch_size=batch_size)
        return np.broadcast_to(np.float32([0, 1, 0]), generated.shape), masks  # RGB


def preview_frame(job: Job, video_path: str | Path, frame_index: int, settings: Settings,
                  warm: int = WARM, cache: FrameCache | None = None, mask_view: bool = False
                  ) -> tuple[np.ndarray, np.ndarray]:
    """(before, after) BGR uint8 of frame ``frame_index`` (counted from the video's first)
    of ``video_path``: as decoded, and as ``convert`` with ``job``'s options and
    ``settings`` writes it, swapped and marked. ``job``: pipeline.load_job's, loaded once;
    its ``start`` and ``detect_every`` place the detector's key frames as convert would.
    A refiner colour mode loads the model folder's refiner into ``job`` on first use.
    ``mask_view``: "after" is the frame with the blend mask (mask mode, erode, blur, face
    scale as in ``settings``) tinted green at half strength instead of the swapped face."""
    if mask_view:
        settings = dataclasses.replace(settings, color="none", blend="alpha", sharpen=0.0)
        job = dataclasses.replace(job, model=_Green(job.model))
    if settings.problems():
        key, why = settings.problems()[0]
        raise UserError(f"{key} {why}")
    cache = cache or _CACHE
    path = Path(video_path)
    if not path.is_file():
        raise UserError(f"{path}: no such video")
    _, info, _ = cache.video(path)
    if not 0 <= frame_index < info.frame_count:
        raise UserError(f"{path}: frame {frame_index} is outside the video (0.."
                        f"{info.frame_count - 1})")
    if settings.color == REFINER:
        load_refiner(job)
    cfg = job.cfg
    origin = cfg.start if frame_index >= cfg.start else 0
    first = warm_start(frame_index, origin, cfg.detect_every, max(0, warm))
    decoded = cache.frames(path, first, frame_index + 1)
    if len(decoded) != frame_index + 1 - first:
        raise UserError(f"{path}: frame {frame_index} could not be decoded")
    source = _Cached("video", path, len(decoded), fps=info.fps, info=info, start=first,
                     decoded=decoded)
    # No preview PNGs, and frame numbers (settings, detector key frames) as in the convert.
    quiet = dataclasses.replace(job, cfg=dataclasses.replace(cfg, start=origin, preview=None))
    sink = _Capture()
    run_frames(quiet, source, sink, lambda n: None, warmup=frame_index - first,
               first=first - origin, plan=SettingsFile(settings))
    before = decoded[-1].image.copy()
    if mask_view:
        return before, cv2.addWeighted(before, 0.5, sink.frame, 0.5, 0.0)
    return before, sink.frame
