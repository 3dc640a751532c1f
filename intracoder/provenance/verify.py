"""Check a file for intracoder's synthetic-content marks: metadata notice, XMP (the IPTC
digital source type) and watermark.

A video is judged on up to N frames sampled evenly across it. Each sampled frame is
decoded on its own (the share found is reported), and the soft bits of all of them are also
averaged and decoded once: heavy compression can leave no single frame decodable while the
average still is, because the mark is the same in every frame and the codec's damage is not.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np

from intracoder.errors import UserError
from intracoder.media.video import DecodeError, iter_video, probe
from intracoder.media.xmp_box import read_mp4_xmp
from intracoder.provenance import describe_payload, metadata, watermark, xmp

DEFAULT_FRAMES = 32


class UnreadableInput(Exception):
    """The file is missing or is neither an image nor a video this build can decode."""


@dataclass
class VerifyResult:
    path: str
    kind: str  # "image" or "video"
    width: int
    height: int
    metadata_found: bool
    metadata_key: str | None
    metadata_text: str | None
    xmp_found: bool  # an XMP packet says trainedAlgorithmicMedia, made by intracoder
    digital_source_type: str | None  # whatever IPTC source type the XMP states, if any
    watermark_found: bool
    payload: str | None  # hex
    payload_fields: dict[str, str] | None
    confidence: float
    frames_sampled: int
    frames_found: int
    frames_total: int | None  # videos only; as reported by the container
    combined_found: bool  # videos: the averaged soft bits decoded
    details: list[dict] = field(default_factory=list)

    @property
    def share_found(self) -> float:
        return self.frames_found / self.frames_sampled if self.frames_sampled else 0.0

    @property
    def marked(self) -> bool:
        return self.watermark_found or self.metadata_found or self.xmp_found

    def to_dict(self) -> dict:
        out = asdict(self)
        out["share_found"] = round(self.share_found, 4)
        out["marked"] = self.marked
        return out


def _read_image(path: Path) -> np.ndarray | None:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            if getattr(image, "n_frames", 1) > 1:
                return None  # animated: read it as a video
            image.load()
            rgb = np.asarray(image.convert("RGB"))
    except (UnidentifiedImageError, OSError, ValueError):
        return None
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)


def _sample_indices(total: int, wanted: int) -> list[int]:
    if total <= 0:
        return []
    return sorted({int(round(i)) for i in np.linspace(0, total - 1, min(wanted, total))})


def _read_video(path: Path, wanted: int) -> tuple[list[np.ndarray], int | None]:
    """Up to ``wanted`` frames spread evenly over the video, and its frame count, through
    the media layer every stage uses; ([], None) when it is not a video at all. A file
    damaged part-way is judged on the frames before the damage."""
    try:
        total = probe(path).frame_count
    except UserError:
        return [], None
    frames: list[np.ndarray] = []
    keep = set(_sample_indices(total, wanted)).__contains__
    try:
        for frame in iter_video(path, keep=keep):
            frames.append(frame.image)
    except DecodeError:
        pass
    return frames, total


def _metadata(path: Path, kind: str) -> dict[str, str]:
    try:
        if kind == "image":
            return metadata.read_image_metadata(path)
        return metadata.read_video_metadata(path)
    except Exception:  # noqa: BLE001 - a damaged tag block must not hide the watermark result
        return {}


def _xmp(path: Path, kind: str) -> dict[str, str]:
    try:
        # Videos other than MP4/MOV have no XMP box; read_mp4_xmp says None for them.
        packet = metadata.read_image_xmp(path) if kind == "image" else read_mp4_xmp(path)
        return xmp.read_xmp_fields(packet)
    except Exception:  # noqa: BLE001 - as for _metadata: never hide the other marks
        return {}


def verify_file(path: str | Path, frames: int = DEFAULT_FRAMES) -> VerifyResult:
    """Read ``path`` as an image or a video and look for both marks.

    Raises UnreadableInput when the file is missing or cannot be decoded.
    """
    path = Path(path)
    if not path.is_file():
        raise UnreadableInput(f"{path}: no such file")
    image = _read_image(path)
    total: int | None = None
    if image is not None:
        kind, sampled = "image", [image]
    else:
        kind = "video"
        sampled, total = _read_video(path, max(1, frames))
        if not sampled:
            raise UnreadableInput(f"{path}: not an image or video that can be decoded")

    detections = [watermark.detect(frame) for frame in sampled]
    combined = (watermark.decode(np.mean([watermark.soft_bits(f) for f in sampled], axis=0))
                if kind == "video" else detections[0])
    found = [d for d in detections if d.found]
    if found:
        payload = Counter(d.payload for d in found).most_common(1)[0][0]
        confidence = (combined.confidence if combined.found and combined.payload == payload
                      else float(np.median([d.confidence for d in found if d.payload == payload])))
    elif combined.found:
        payload, confidence = combined.payload, combined.confidence
    else:
        payload, confidence = None, 0.0

    tags = _metadata(path, kind)
    hit = metadata.find_notice(tags)
    xmp_fields = _xmp(path, kind)
    height, width = sampled[0].shape[:2]
    return VerifyResult(
        path=str(path), kind=kind, width=width, height=height,
        metadata_found=hit is not None,
        metadata_key=hit[0] if hit else None, metadata_text=hit[1] if hit else None,
        xmp_found=xmp.is_intracoder_marker(xmp_fields),
        digital_source_type=xmp_fields.get("digital_source_type"),
        watermark_found=payload is not None,
        payload=payload.hex() if payload else None,
        payload_fields=describe_payload(payload) if payload else None,
        confidence=round(confidence, 4),
        frames_sampled=len(sampled), frames_found=len(found), frames_total=total,
        combined_found=combined.found,
        details=[{"found": d.found, "confidence": round(d.confidence, 4),
                  "score": round(d.score, 4), "corrected_bits": d.corrected_bits,
                  "gain": round(d.gain, 3)}
                 for d in detections])
