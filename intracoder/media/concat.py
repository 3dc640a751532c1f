"""Join video parts encoded separately into one file, without re-encoding them.

Each part is an H.264 file written by VideoWriter from consecutive frames of one source,
with the same size, pixel format, settings and time base, so their packets can follow one
another in one stream (what ffmpeg's concat demuxer requires too). Every part starts at time
0; it is shifted by its ``offset`` (seconds from the first frame of the whole), and the
source's audio is muxed once over the joined video, on the same clock: per-part audio would
drift by a fraction of a frame at every join. The file appears under its name only once
complete.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import av

from intracoder.atomic import durable_replace, temp_name
from intracoder.errors import UserError
from intracoder.media.pyav import AudioCopy, reason
from intracoder.media.video import _FORMATS, VIDEO_SUFFIXES


@dataclass(frozen=True)
class Part:
    path: Path
    offset: float  # seconds from the first frame of the joined video to this part's first


def _check_alike(first, other, path: Path) -> None:
    a, b = first.codec_context, other.codec_context
    if (a.name, a.width, a.height, a.pix_fmt) != (b.name, b.width, b.height, b.pix_fmt):
        raise UserError(f"{path}: cannot be joined to the other parts (codec, size or pixel "
                        f"format differs)")


def join_parts(parts: list[Part], output: str | os.PathLike,
               audio_from: str | os.PathLike | None = None, audio_start: float = 0.0,
               audio_end: float | None = None, metadata: dict | None = None,
               xmp: bytes | None = None) -> int:
    """Write ``parts`` one after another into ``output`` with the first audio track of
    ``audio_from`` from source time ``audio_start`` (the first frame's) on, up to
    ``audio_end`` (None: to its end); returns the number of video packets written."""
    out_path = Path(output)
    suffix = out_path.suffix.lower()
    if suffix not in VIDEO_SUFFIXES or not parts:
        raise UserError(f"cannot join into {out_path}: use one of {', '.join(VIDEO_SUFFIXES)}")
    fmt = _FORMATS[suffix]
    tmp = temp_name(out_path)
    options = {} if fmt == "matroska" else {"movflags": "+faststart+use_metadata_tags"}
    out, audio, written = None, None, 0
    try:
        out = av.open(str(tmp), "w", format=fmt, options=options)
        with av.open(str(parts[0].path)) as first:
            template = first.streams.video[0]
            stream = out.add_stream_from_template(template)
            stream.time_base = template.time_base
        if audio_from is not None:
            audio = AudioCopy.open(Path(audio_from), out, fmt)
        out.metadata.update({str(k): str(v) for k, v in (metadata or {}).items()})
        for part in parts:
            with av.open(str(part.path)) as container:
                src = container.streams.video[0]
                _check_alike(template, src, part.path)
                shift = round(part.offset / src.time_base)
                for packet in container.demux(src):
                    if not packet.size:
                        continue
                    packet.pts += shift
                    if packet.dts is not None:
                        packet.dts += shift
                    seconds = float(packet.pts * src.time_base)
                    packet.stream = stream
                    out.mux(packet)
                    written += 1
                    if audio is not None:
                        audio.mux_until(audio_start + seconds, audio_start)
        if audio is not None:
            end = float("inf") if audio_end is None else audio_end
            audio.mux_until(end, audio_start, last=True)
            audio.close()
            audio = None
        out.close()
        out = None
        if xmp is not None and fmt != "matroska":
            from intracoder.media.xmp_box import append_mp4_xmp

            append_mp4_xmp(tmp, xmp)
        durable_replace(tmp, out_path)
    except (av.FFmpegError, OSError) as exc:
        raise UserError(f"cannot write video {out_path}: {reason(exc)}") from None
    finally:
        if audio is not None:
            audio.close()
        if out is not None:
            try:
                out.close()
            except (av.FFmpegError, OSError):
                pass
        if tmp.is_file():
            tmp.unlink()
    return written
