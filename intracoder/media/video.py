"""Frames in and out: probe and decode videos, encode H.264 with the source audio.

The one reader and the one writer every stage uses, on PyAV (FFmpeg's libraries in a wheel):
exact timestamps, so a variable-frame-rate phone clip keeps each frame's time and its audio
stays in sync; frame counts for containers whose header has none (raw H.264, MPEG-TS, MKV);
display rotation; audio streams copied packet by packet; and a decode error that names its
frame instead of a silently shorter video. Everything is written to a temporary name next to
the target and renamed only when complete: an interrupted convert never leaves a truncated
file that looks finished.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Callable, Iterator

import av
import imageio_ffmpeg
import numpy as np

from intracoder.atomic import durable_replace, temp_name
from intracoder.errors import UserError
from intracoder.media.pyav import AudioCopy, Converter, SWS_DECODE, SWS_ENCODE, reason

VIDEO_SUFFIXES = (".mp4", ".m4v", ".mov", ".mkv")
_FORMATS = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska"}
# Containers whose header holds an exact frame count (the sample table); other counts are
# estimates from the duration, so the packets are counted instead.
_INDEXED = {"mov", "mp4"}
# A container's count can be off by a frame or two for some codecs (edit lists, a dropped
# leading B-frame); a shortfall beyond this means the file ends early.
_COUNT_SLACK = 2


@dataclass(frozen=True)
class VideoInfo:
    width: int  # as iter_frames yields them, i.e. after rotation
    height: int
    fps: float  # the average rate; a variable-rate clip's frames carry their own times
    fps_fraction: str  # exact rate, e.g. "30000/1001"; pass it on to VideoWriter
    frame_count: int
    has_audio: bool
    rotation: int  # display rotation in the container (degrees counter-clockwise), 0 if none
    duration: float  # seconds, 0.0 if the container does not say
    audio_codec: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    time_base: Fraction = Fraction(0)  # unit of DecodedFrame.pts; pass it on to VideoWriter


@dataclass
class DecodedFrame:
    index: int  # frame number, counted from the first decoded frame
    pts: int | None  # presentation time in VideoInfo.time_base units (None: the file has none)
    image: np.ndarray  # BGR uint8, upright, writable


class DecodeError(UserError):
    """The file stops decoding before its end; ``frame`` is the first frame not delivered."""

    def __init__(self, path: Path, frame: int, why: str):
        super().__init__(f"{path}: decoding failed at frame {frame}: {why}")
        self.frame = frame


def ffmpeg_exe() -> str:
    """The ffmpeg binary of imageio-ffmpeg, for tests and benchmarks that make test clips."""
    return imageio_ffmpeg.get_ffmpeg_exe()


def _require_file(path: str | os.PathLike) -> Path:
    p = Path(path)
    if not p.is_file():
        raise UserError(f"video not found: {p}")
    return p


def _open(p: Path) -> av.container.InputContainer:
    try:
        container = av.open(str(p), "r")
    except av.InvalidDataError:
        raise UserError(f"{p}: no video stream could be read (not a video file, or a damaged "
                        "one)") from None
    except (av.FFmpegError, OSError) as exc:
        raise UserError(f"cannot read video {p}: {reason(exc)}") from None
    if not container.streams.video:
        container.close()
        raise UserError(f"{p} has no video stream (is it a video file?)")
    return container


def _fps_fraction(fps) -> Fraction:
    # Containers store NTSC rates as 30000/1001 etc.; a denominator of at most 1001 recovers
    # them exactly from a float.
    return Fraction(fps).limit_denominator(1001)


def _indexed(container) -> bool:
    return bool(_INDEXED & set(container.format.name.split(",")))


def _count_packets(container, stream) -> int:
    """Frames in the video stream by reading its packets, decoding none."""
    return sum(1 for packet in container.demux(stream) if packet.size)


def _upright(image: np.ndarray, rotation: int) -> np.ndarray:
    k = (rotation // 90) % 4
    return np.ascontiguousarray(np.rot90(image, k)) if k else image


def probe(path: str | os.PathLike) -> VideoInfo:
    """Size, exact frame rate, frame count, audio, rotation and tags of a video file.

    The frame count comes from the MP4/MOV sample table where there is one; for other
    containers (whose headers allow only an estimate from the duration, or nothing) the
    packets are counted, which reads the file but decodes nothing."""
    p = _require_file(path)
    container = _open(p)
    try:
        stream = container.streams.video[0]
        try:
            first = next(container.decode(stream), None)
        except av.FFmpegError as exc:
            raise UserError(f"cannot decode video {p}: {reason(exc)}") from None
        if first is None:
            raise UserError(f"cannot decode video {p}: no frame in its video stream")
        rotation = int(first.rotation or 0) % 360
        width, height = first.width, first.height
        if rotation in (90, 270):
            width, height = height, width
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        if not rate:
            raise UserError(f"{p}: frame rate unknown")
        frac = _fps_fraction(rate)
        count = stream.frames if _indexed(container) else 0
        if count <= 0:  # raw streams cannot seek back: count on a second opening
            counting = _open(p)
            try:
                count = _count_packets(counting, counting.streams.video[0])
            finally:
                counting.close()
        audio = container.streams.audio[0] if container.streams.audio else None
        duration = container.duration / av.time_base if container.duration else 0.0
        return VideoInfo(width=width, height=height, fps=float(frac),
                         fps_fraction=f"{frac.numerator}/{frac.denominator}",
                         frame_count=count, has_audio=audio is not None, rotation=rotation,
                         duration=duration,
                         audio_codec=audio.codec_context.name if audio is not None else None,
                         metadata={k.lower(): v for k, v in container.metadata.items()},
                         time_base=Fraction(stream.time_base or 0))
    finally:
        container.close()


def keyframes(path: str | os.PathLike) -> list[tuple[int, int]]:
    """(frame index, pts) of every keyframe, by reading the packets (no decoding): where
    iter_video can start without decoding from the beginning. Empty when the stream has no
    timestamps (a raw H.264 stream), which cannot be entered part-way."""
    p = _require_file(path)
    container = _open(p)
    try:
        stream = container.streams.video[0]
        times, keys = [], []
        for packet in container.demux(stream):
            if not packet.size:
                continue
            if packet.pts is None:
                return []
            times.append(packet.pts)
            if packet.is_keyframe:
                keys.append(packet.pts)
    finally:
        container.close()
    # Packets come in decoding order; a frame's index is its rank in presentation order.
    rank = {pts: i for i, pts in enumerate(sorted(times))}
    return sorted((rank[pts], pts) for pts in keys)


def iter_video(path: str | os.PathLike, start: int = 0, end: int | None = None,
               keep: Callable[[int], bool] | None = None,
               seek: tuple[int, int] | None = None) -> Iterator[DecodedFrame]:
    """Frames start..end-1 (end exclusive, None = to the end) with their timestamps, one per
    decoded frame (no rate conversion); with ``keep``, only the frames whose index it
    accepts (the others are decoded, as they must be, but never converted to BGR).

    Frames are counted from the first, never found by seeking to a time, which lands on the
    wrong frame in variable-frame-rate phone videos and would shift every pasted face; the
    one exception is ``seek``, a (frame index, pts) of keyframes() at or before ``start``:
    decoding starts at that keyframe, whose index is known, and frames shown before it (an
    open GOP's leading frames) are dropped. A file that stops decoding early raises
    DecodeError (a UserError) naming the frame, after every frame before it was yielded."""
    if start < 0:
        raise ValueError(f"start must be >= 0, got {start}")
    p = _require_file(path)
    if end is not None and end <= start:
        return
    container = _open(p)
    try:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        expected = stream.frames if _indexed(container) else 0
        to_bgr = Converter("bgr24", SWS_DECODE)
        index, first_pts = 0, None
        if seek is not None and 0 < seek[0] <= start:
            container.seek(seek[1], stream=stream, backward=True, any_frame=False)
            index, first_pts = seek
        try:
            for packet in container.demux(stream):
                for frame in packet.decode():
                    if first_pts is not None and frame.pts is not None and frame.pts < first_pts:
                        continue
                    if index >= start and (keep is None or keep(index)):
                        image = _upright(to_bgr(frame), int(frame.rotation or 0))
                        yield DecodedFrame(index, frame.pts, image)
                    index += 1
                    if end is not None and index >= end:
                        return
        except av.FFmpegError as exc:
            raise DecodeError(p, index, reason(exc)) from None
        if expected and index < expected - _COUNT_SLACK:
            raise DecodeError(p, index, f"the file ends early ({expected} frames in its index)")
    finally:
        container.close()


def iter_frames(path: str | os.PathLike, start: int = 0,
                end: int | None = None) -> Iterator[np.ndarray]:
    """The images of iter_video: BGR uint8, upright, writable."""
    for frame in iter_video(path, start, end):
        yield frame.image


def read_frames_at(path: str | os.PathLike, indices) -> dict[int, np.ndarray]:
    """The frames numbered ``indices``, decoding up to the last of them (only those wanted
    are converted to BGR)."""
    wanted = sorted(set(int(i) for i in indices))
    if not wanted:
        return {}
    keep = set(wanted).__contains__
    return {f.index: f.image for f in iter_video(path, wanted[0], wanted[-1] + 1, keep)}


class VideoWriter:
    """H.264 (libx264) encoder fed with BGR frames, used as a context manager.

    ``fps`` may be a fraction string ("30000/1001", as VideoInfo.fps_fraction gives), a
    Fraction or a number. Frames are written at that rate, or at the times given to
    ``write`` in units of ``time_base`` (VideoInfo.time_base of the source, whose
    DecodedFrame.pts they are): a variable-rate source stays variable, frame for frame.
    ``audio_from``: a file whose first audio track (if any) is muxed in on the same clock,
    copied when the container accepts the codec, else re-encoded to AAC; ``clip_audio``
    keeps only the audio under the frames written (a convert of part of a clip), otherwise
    it runs to its own end. yuv420p needs even sides, so an odd-sized frame is encoded as
    yuv444p, which keeps its exact size (some players, browsers among them, cannot show
    4:4:4 H.264). ``xmp``: a packet written into an MP4/MOV as its XMP box. The file
    appears under ``path`` only when ``close`` succeeds.
    """

    def __init__(self, path: str | os.PathLike, width: int, height: int,
                 fps: str | float | Fraction, audio_from: str | os.PathLike | None = None,
                 metadata: dict | None = None, crf: int = 18, preset: str = "medium",
                 time_base: Fraction | str | None = None, clip_audio: bool = False,
                 xmp: bytes | None = None, threads: int | None = None):
        self.path = Path(path)
        suffix = self.path.suffix.lower()
        if suffix not in VIDEO_SUFFIXES:
            raise UserError(f"cannot write video {self.path}: "
                            f"use one of {', '.join(VIDEO_SUFFIXES)}")
        if not self.path.parent.is_dir():
            raise UserError(f"cannot write video {self.path}: "
                            f"folder {self.path.parent} does not exist")
        if width <= 0 or height <= 0:
            raise ValueError(f"bad video size {width}x{height}")
        self.width, self.height = int(width), int(height)
        try:
            rate = _fps_fraction(fps) if isinstance(fps, float) else Fraction(fps)
        except (ValueError, ZeroDivisionError):
            rate = Fraction(0)
        if rate <= 0:
            raise UserError(f"bad frame rate {fps!r}: give e.g. 25, 29.97 or 30000/1001")
        self.fps = rate
        self.time_base = Fraction(time_base) if time_base else 1 / rate
        self.pix_fmt = "yuv420p" if self.width % 2 == 0 and self.height % 2 == 0 else "yuv444p"
        self.frames_written = 0
        self._format = _FORMATS[suffix]
        self._audio_from = _require_file(audio_from) if audio_from is not None else None
        self._clip_audio = clip_audio
        self._metadata = {str(k): str(v) for k, v in (metadata or {}).items()}
        self._options = {"crf": str(int(crf)), "preset": preset}
        if threads:  # a share of the cores, when several writers run at once
            self._options["threads"] = str(int(threads))
        self._xmp = xmp
        self._tmp = temp_name(self.path)
        self._out = None
        self._stream = None
        self._audio: AudioCopy | None = None
        self._to_yuv: Converter | None = None
        self._first_pts: int | None = None
        self._last_pts = -1
        self._last_step: int | None = None  # the last frame lasts as long as the one before

    def open(self) -> "VideoWriter":
        options = {} if self._format == "matroska" else {
            # use_metadata_tags keeps keys MP4 has no atom for (provenance labels).
            "movflags": "+faststart+use_metadata_tags"}
        try:
            self._out = av.open(str(self._tmp), "w", format=self._format, options=options)
            stream = self._out.add_stream("libx264", rate=self.fps)
            stream.width, stream.height, stream.pix_fmt = self.width, self.height, self.pix_fmt
            stream.codec_context.time_base = self.time_base
            stream.time_base = self.time_base
            stream.options = self._options
            self._stream = stream
            if self._audio_from is not None:
                self._audio = AudioCopy.open(self._audio_from, self._out, self._format)
            self._out.metadata.update(self._metadata)
        except (av.FFmpegError, OSError) as exc:
            self.abort()
            raise UserError(f"cannot write video {self.path}: {reason(exc)}") from None
        self._to_yuv = Converter(self.pix_fmt, SWS_ENCODE)
        return self

    def __enter__(self) -> "VideoWriter":
        return self.open()

    def write(self, frame: np.ndarray, pts: int | None = None) -> None:
        """Encode one BGR frame, at ``pts`` (time_base units) or one frame after the last."""
        if self._out is None:
            raise RuntimeError("VideoWriter is not open")
        if frame.shape != (self.height, self.width, 3) or frame.dtype != np.uint8:
            raise ValueError(f"frame {frame.shape} {frame.dtype} is not "
                             f"{self.height}x{self.width}x3 uint8")
        step = max(1, round(1 / (self.fps * self.time_base)))
        if self._first_pts is None:
            self._first_pts = 0 if pts is None else pts
        at = (self._last_pts + step if pts is None else pts - self._first_pts)
        if at <= self._last_pts:  # a repeated or backwards time: keep the order, nudge it on
            at = self._last_pts + 1
        picture = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="bgr24")
        picture.pts, picture.time_base = at, self.time_base
        try:
            for packet in self._stream.encode(self._to_yuv(picture)):
                self._out.mux(packet)
            if self._audio is not None:
                self._audio.mux_until(self._source_time(at), self._offset())
        except (av.FFmpegError, OSError) as exc:
            self.abort()
            raise UserError(f"cannot write video {self.path}: {reason(exc)}") from None
        if self.frames_written:
            self._last_step = at - self._last_pts
        self._last_pts = at
        self.frames_written += 1

    @property
    def first_pts(self) -> int | None:
        """The time given to the first frame written (the output starts there)."""
        return self._first_pts

    @property
    def end_pts(self) -> int | None:
        """Where the last frame written ends, on the same clock as first_pts: it lasts as
        long as the one before it (or one frame at ``fps``)."""
        if self._first_pts is None:
            return None
        step = self._last_step or round(1 / (self.fps * self.time_base))
        return self._first_pts + self._last_pts + step

    def _source_time(self, pts: int) -> float:
        """Seconds on the source's clock of output time ``pts``."""
        return float((pts + (self._first_pts or 0)) * self.time_base)

    def _offset(self) -> float:
        """Source time of the first frame: the output starts there, and the audio is
        shifted by it too, so both keep the relation they had whatever part this is."""
        return self._source_time(0)

    def close(self) -> None:
        """Finish the file and move it to its real name; raises UserError if encoding failed."""
        if self._out is None:
            return
        if self.frames_written == 0:
            self.abort()
            raise UserError(f"cannot write video {self.path}: no frames were written")
        try:
            for packet in self._stream.encode(None):
                self._out.mux(packet)
            if self._audio is not None:
                end = float(self.end_pts * self.time_base)
                self._audio.mux_until(end if self._clip_audio else float("inf"),
                                      self._offset(), last=True)
                self._audio.close()
                self._audio = None
            self._out.close()
            self._out = None
            if self._xmp is not None and self._format != "matroska":
                from intracoder.media.xmp_box import append_mp4_xmp

                append_mp4_xmp(self._tmp, self._xmp)
            durable_replace(self._tmp, self.path)
        except (av.FFmpegError, OSError) as exc:
            self.abort()
            raise UserError(f"cannot write video {self.path}: {reason(exc)}") from None
        except BaseException:  # Ctrl-C while finishing, or the XMP box refused
            self.abort()
            raise

    def abort(self) -> None:
        """Stop encoding and delete the partial file; nothing appears under ``path``."""
        if self._audio is not None:
            self._audio.close()
            self._audio = None
        if self._out is not None:
            try:
                self._out.close()
            except (av.FFmpegError, OSError):
                pass
            self._out = None
        if not self._tmp.is_dir():  # a folder there is not ours (it is why opening failed)
            self._tmp.unlink(missing_ok=True)

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc_type is None:
            self.close()
        else:
            self.abort()
        return False
