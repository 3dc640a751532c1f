"""Frames from a video file, one image, or a folder of images.

Video is decoded by the media layer (the same reader convert uses, so training faces and
converted faces are decoded alike); images are read with cv2.imread. Every source is checked before any work starts, so a bad input
fails in one line before anything is written.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from intracoder.errors import UserError
from intracoder.media.video import iter_video, probe

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}


@dataclass
class Frame:
    source: str  # path of the video or image, as given
    index: int  # frame number in the video (0 for an image)
    image: np.ndarray  # BGR uint8


class FrameSource:
    """Iterate the frames of INPUT, taking every ``every``-th video frame and skipping
    (without decoding) the ones in ``skip``."""

    def __init__(self, path: str | Path, every: int = 1):
        self.path = Path(path)
        self.every = max(1, int(every))
        if not self.path.exists():
            raise UserError(f"{self.path}: no such file or folder")
        if self.path.is_dir():
            self.kind = "folder"
            self.images = sorted(p for p in self.path.iterdir()
                                 if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
            if not self.images:
                raise UserError(f"{self.path}: folder holds no images "
                                f"({', '.join(sorted(IMAGE_SUFFIXES))})")
            self.frame_count = len(self.images)
        elif self.path.suffix.lower() in IMAGE_SUFFIXES:
            self.kind = "image"
            self.images = [self.path]
            self.frame_count = 1
        else:
            self.kind = "video"
            try:
                info = probe(self.path)
            except UserError as exc:
                raise UserError(f"{self.path}: not a video or image that can be decoded "
                                f"({exc})") from None
            # Exact even where the container has no count (raw H.264, MPEG-TS, MKV): probe
            # counts the packets.
            self.frame_count = info.frame_count
            self.fps = info.fps

    def wanted(self) -> list[tuple[str, int]]:
        """(source, frame index) of every frame this source will yield."""
        if self.kind == "video":
            return [(str(self.path), i) for i in range(0, self.frame_count, self.every)]
        return [(str(p), 0) for p in self.images]

    def frames(self, skip: set[tuple[str, int]] = frozenset()) -> Iterator[Frame]:
        if self.kind == "video":
            yield from self._video_frames(skip)
            return
        for p in self.images:
            if (str(p), 0) in skip:
                continue
            img = cv2.imread(str(p), cv2.IMREAD_COLOR)
            if img is None:
                raise UserError(f"{p}: not an image that can be decoded")
            yield Frame(str(p), 0, img)

    def _video_frames(self, skip) -> Iterator[Frame]:
        # A file that stops decoding early raises DecodeError after the frames before it.
        source = str(self.path)

        def keep(index: int) -> bool:
            return index % self.every == 0 and (source, index) not in skip

        for frame in iter_video(self.path, keep=keep):
            yield Frame(source, frame.index, frame.image)
