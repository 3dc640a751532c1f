"""XMP in MP4/MOV: the top-level ``uuid`` box that exiftool and Adobe tools read and write.

The box goes at the end of a finished file. Nothing in an MP4 points at the end of the file
(chunk offsets in moov point into mdat, which stays where it is), so appending a top-level box
shifts no offset and the file stays valid and playable, whether moov is before mdat
(faststart) or after it. Rewriting moov to hold XMP in ``udta`` would mean moving mdat or
patching every chunk offset.

Boxes are ``size(4) type(4) [largesize(8) if size == 1] payload``; size 0 means "to the end of
the file", which is only legal for the last box.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path
from typing import Iterator

from intracoder.errors import UserError

XMP_UUID = bytes.fromhex("BE7ACFCB97A942E89C71999491E3AFAC")
# A packet larger than this is not a label; reading stops rather than load it.
_MAX_PACKET = 1 << 24


class _Box:
    __slots__ = ("offset", "header", "size", "kind", "to_end")

    def __init__(self, offset: int, header: int, size: int, kind: bytes, to_end: bool):
        self.offset, self.header, self.size, self.kind, self.to_end = (
            offset, header, size, kind, to_end)


def _boxes(f, file_size: int) -> Iterator[_Box | None]:
    """The top-level boxes in order; a final None when the walk hits something that is not a
    complete box (truncation, garbage), so callers can tell a clean end from a broken one."""
    pos = 0
    while pos < file_size:
        f.seek(pos)
        head = f.read(8)
        if len(head) < 8:
            yield None
            return
        size, kind = struct.unpack(">I4s", head)
        # Top-level box types are four printable ASCII characters; anything else means this
        # is not an ISO media file (or a size was wrong), and the rest cannot be trusted.
        if not all(0x20 <= c < 0x7F for c in kind):
            yield None
            return
        header, to_end = 8, False
        if size == 1:
            large = f.read(8)
            if len(large) < 8:
                yield None
                return
            size, header = struct.unpack(">Q", large)[0], 16
        elif size == 0:
            size, to_end = file_size - pos, True
        if size < header or pos + size > file_size:
            yield None
            return
        yield _Box(pos, header, size, kind, to_end)
        pos += size


def _is_xmp(f, box: _Box) -> bool:
    if box.kind != b"uuid" or box.size < box.header + 16:
        return False
    f.seek(box.offset + box.header)
    return f.read(16) == XMP_UUID


def read_mp4_xmp(path: str | os.PathLike) -> bytes | None:
    """The XMP packet of an MP4/MOV file's first complete XMP uuid box, or None (no box, not
    an MP4, or the file ends inside a box before one is found)."""
    try:
        with open(path, "rb") as f:
            file_size = os.fstat(f.fileno()).st_size
            for box in _boxes(f, file_size):
                if box is None:
                    return None
                if _is_xmp(f, box):
                    length = box.size - box.header - 16
                    if length > _MAX_PACKET:
                        return None
                    packet = f.read(length)
                    return packet if len(packet) == length else None
    except OSError:
        return None
    return None


def append_mp4_xmp(path: str | os.PathLike, packet: bytes) -> None:
    """Add ``packet`` as a top-level XMP uuid box at the end of the finished MP4/MOV file
    ``path``, in place, and fsync it. Meant for the writer's temporary file, before it is
    renamed: the rename is what makes the whole output appear at once.

    A trailing XMP box from an earlier call is replaced, so calling twice leaves one box. A
    last box of size 0 ("to end of file") gets its real size first, or the new box would be
    read as part of it."""
    path = Path(path)
    if len(packet) > _MAX_PACKET:
        raise ValueError(f"XMP packet of {len(packet)} bytes is too large")
    box = struct.pack(">I4s", 8 + 16 + len(packet), b"uuid") + XMP_UUID + packet
    with open(path, "r+b") as f:
        file_size = os.fstat(f.fileno()).st_size
        boxes = list(_boxes(f, file_size))
        # No moov means the muxer never finished; a box added then would label a broken file.
        if not boxes or boxes[-1] is None or not any(b.kind == b"moov" for b in boxes):
            raise UserError(f"cannot add XMP to {path}: not a complete MP4/MOV file")
        last = boxes[-1]
        end = file_size
        if _is_xmp(f, last):
            end = last.offset
        elif last.to_end:
            if last.size > 0xFFFFFFFF:
                # A 64-bit size needs 8 more header bytes, which would shift mdat's data.
                raise UserError(f"cannot add XMP to {path}: its last box runs to the end of "
                                "the file and is too large to close in place")
            f.seek(last.offset)
            f.write(struct.pack(">I", last.size))
        f.truncate(end)
        f.seek(end)
        f.write(box)
        f.flush()
        os.fsync(f.fileno())
