"""Frames from a video file, one image, or a folder of images.

OpenCV decodes video (FFmpeg inside, rotation metadata applied by default); images are
read with cv2.imread. Every source is checked before any work starts, so a bad input
fails in one line before anything is written.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from intracoder.errors import UserError
from intracoder.quiet import native_stderr_silenced

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
            with native_stderr_silenced():  # FFmpeg's own complaint is replaced by ours
                cap = cv2.VideoCapture(str(self.path))
                ok, first = cap.read() if cap.isOpened() else (False, None)
            self.frame_count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
            self.fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
            cap.release()
            if not ok or first is None:
                raise UserError(f"{self.path}: not a video or image that can be decoded")

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
        cap = cv2.VideoCapture(str(self.path))
        source = str(self.path)
        index = 0
        try:
            while True:
                wanted = index % self.every == 0 and (source, index) not in skip
                # grab() without retrieve() skips the colour conversion of unwanted frames.
                if not cap.grab():
                    break
                if wanted:
                    ok, img = cap.retrieve()
                    if not ok:
                        break
                    yield Frame(source, index, img)
                index += 1
        finally:
            cap.release()
        # The container's frame count can be off by a frame or two for some codecs; a
        # shortfall beyond that means the file ends early.
        if self.frame_count and index < self.frame_count - 2:
            raise UserError(f"{self.path}: video is truncated or corrupt: decoding stopped at "
                            f"frame {index} of {self.frame_count} (faces found so far are kept)")
