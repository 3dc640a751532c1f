"""What convert reads and writes: a video, one image, or a folder of images, in and out.

Every check on INPUT and OUTPUT runs before the model loads, so a typo costs a second, not
a model load; and OUTPUT appears under its name only once it is complete (a video through
VideoWriter's temporary file, a new folder by renaming a temporary one), so a failed or
interrupted convert leaves nothing that looks finished.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np

from intracoder.atomic import temp_name
from intracoder.errors import UserError
from intracoder.media.image import IMAGE_SUFFIXES, WRITE_SUFFIXES, read_image, write_image
from intracoder.media.video import VIDEO_SUFFIXES, VideoInfo, VideoWriter, iter_video, probe
from intracoder.provenance.metadata import image_text, video_metadata
from intracoder.provenance.xmp import xmp_packet


@dataclass
class Source:
    kind: str  # "video", "image" or "folder"
    path: Path
    count: int  # frames or images that will be converted
    fps: float = 0.0  # video only
    info: VideoInfo | None = None
    start: int = 0
    images: list[Path] = field(default_factory=list)
    # Each decoded frame's time (VideoInfo.time_base units) by name, until the Sink takes
    # it: a variable-frame-rate clip is written back with its own timing.
    times: dict[str, int | None] = field(default_factory=dict)
    # A keyframe (index, pts) at or before ``start`` to begin decoding at (a part of a long
    # video), instead of decoding from its first frame.
    seek: tuple[int, int] | None = None

    def frames(self) -> Iterator[tuple[str, np.ndarray]]:
        """(name, BGR frame): names are frame_NNNNNN for video, file names otherwise."""
        if self.kind == "video":
            for frame in iter_video(self.path, self.start, self.start + self.count,
                                    seek=self.seek):
                name = f"frame_{frame.index:06d}"
                self.times[name] = frame.pts
                yield name, frame.image
        else:
            for p in self.images:
                yield p.name, read_image(p)


def open_source(path: str, start: int = 0, end: int | None = None) -> Source:
    p = Path(path)
    if start < 0 or (end is not None and end <= start):
        raise UserError(f"--start must be >= 0 and --end greater than --start "
                        f"(got {start} and {end})")
    if not p.exists():
        raise UserError(f"{p}: no such file or folder")
    if p.is_dir():
        images = sorted(q for q in p.iterdir()
                        if q.is_file() and q.suffix.lower() in IMAGE_SUFFIXES)
        if not images:
            raise UserError(f"{p}: folder holds no images ({', '.join(IMAGE_SUFFIXES)})")
        images = images[start:end]
        if not images:
            raise UserError(f"{p}: --start {start} is past the last image")
        return Source("folder", p, len(images), images=images)
    if p.suffix.lower() in IMAGE_SUFFIXES:
        read_image(p)  # fails here, before the model loads, if it is not an image
        return Source("image", p, 1, images=[p])
    try:
        info = probe(p)
    except UserError as exc:
        raise UserError(f"{p}: not a video or image that can be decoded ({exc})") from None
    stop = info.frame_count if end is None else min(end, info.frame_count)
    if start >= stop:
        raise UserError(f"{p}: --start {start} is past the last frame ({info.frame_count} frames)")
    return Source("video", p, stop - start, fps=info.fps, info=info, start=start)


def _check_writable(folder: Path, output: Path) -> None:
    if not folder.is_dir():
        raise UserError(f"cannot write {output}: folder {folder} does not exist")
    try:  # permissions alone do not say (root, read-only mounts): try it
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        raise UserError(f"cannot write {output}: {exc.strerror or exc}") from None


def check_output(source: Source, output: str) -> None:
    """OUTPUT must be of INPUT's kind, must not be INPUT, and its folder must be writable."""
    out = Path(output)
    if out.resolve() == source.path.resolve():
        raise UserError(f"{out}: OUTPUT would overwrite INPUT; choose another name")
    suffix = out.suffix.lower()
    if source.kind == "video" and suffix not in VIDEO_SUFFIXES:
        raise UserError(f"{out}: for a video INPUT, OUTPUT must be a video file "
                        f"({', '.join(VIDEO_SUFFIXES)})")
    if source.kind == "image" and suffix not in WRITE_SUFFIXES:
        raise UserError(f"{out}: for an image INPUT, OUTPUT must be {', '.join(WRITE_SUFFIXES)}")
    if source.kind == "folder":
        if out.exists() and not out.is_dir():
            raise UserError(f"{out}: for a folder INPUT, OUTPUT must be a folder")
        _check_writable(out if out.is_dir() else out.parent, out)
        return
    if out.is_dir():
        raise UserError(f"{out}: is a folder; OUTPUT must be a {source.kind} file")
    _check_writable(out.parent, out)


class Sink:
    """Takes marked frames in order; ``close`` publishes OUTPUT, ``abort`` removes all trace.
    Provenance text goes into the container (video metadata, PNG/JPEG text). A ``part`` is
    one piece of a video converted in parts: video only, no container tags, to be joined
    (media.concat) into a file that gets the audio and the tags once."""

    def __init__(self, source: Source, output: str, model_id: str, crf: int = 18,
                 part: bool = False, threads: int | None = None):
        self.kind, self.path, self._source = source.kind, Path(output), source
        self._text = image_text(model_id)
        self._writer: VideoWriter | None = None
        self._times: tuple[int | None, int | None] = (None, None)
        self._folder: Path | None = None
        self._staging: Path | None = None
        if self.kind == "video":
            info = source.info
            audio = source.path if info.has_audio and not part else None
            clipped = source.start > 0 or source.count < info.frame_count
            self._writer = VideoWriter(self.path, info.width, info.height, info.fps_fraction,
                                       audio_from=audio,
                                       metadata=None if part else video_metadata(model_id),
                                       crf=crf, time_base=info.time_base, clip_audio=clipped,
                                       xmp=None if part else xmp_packet(model_id),
                                       threads=threads)
            self._writer.open()
        elif self.kind == "folder":
            if self.path.is_dir():
                self._folder = self.path
            else:
                self._staging = self._folder = temp_name(self.path)
                self._folder.mkdir()

    def write(self, name: str, frame: np.ndarray) -> None:
        if self._writer is not None:
            self._writer.write(frame, self._source.times.pop(name, None))
        elif self._folder is not None:
            stem, suffix = Path(name).stem, Path(name).suffix.lower()
            write_image(self._folder / (stem + (suffix if suffix in WRITE_SUFFIXES else ".png")),
                        frame, self._text)
        else:
            write_image(self.path, frame, self._text)

    @property
    def first_pts(self) -> int | None:
        """Source time of the first video frame written (VideoInfo.time_base units)."""
        return self._times[0]

    @property
    def end_pts(self) -> int | None:
        """Source time of the end of the last video frame written."""
        return self._times[1]

    def close(self) -> None:
        if self._writer is not None:
            self._times = (self._writer.first_pts, self._writer.end_pts)
            self._writer.close()
            self._writer = None
        if self._staging is not None:
            os.replace(self._staging, self.path)
            self._staging = None

    def abort(self) -> None:
        if self._writer is not None:
            self._writer.abort()
            self._writer = None
        if self._staging is not None:
            shutil.rmtree(self._staging, ignore_errors=True)
            self._staging = None

    def __enter__(self) -> Sink:
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc_type is None:
            self.close()
        else:
            self.abort()
        return False
