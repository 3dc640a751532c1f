"""Write files under a temporary name and rename, so an interrupted run never leaves a
half-written file under the real name; and fsync, so a power cut after the rename does not
leave the real name pointing at data the disk never received (a rename is durable only once
the file's data and its folder's entry are both on disk)."""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Iterator


def fsync_path(path: str | os.PathLike) -> None:
    """Flush a file, or a folder's entries, to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError:  # some filesystems refuse fsync on folders; the data is flushed anyway
        if not os.path.isdir(path):
            raise
    finally:
        os.close(fd)


def fsync_tree(path: str | os.PathLike) -> None:
    """fsync every file under ``path`` (or ``path`` itself), then the folders."""
    path = Path(path)
    if path.is_dir():
        for child in sorted(path.rglob("*")):
            if child.is_file():
                fsync_path(child)
        for folder in sorted((p for p in path.rglob("*") if p.is_dir()), reverse=True):
            fsync_path(folder)
    fsync_path(path)


def durable_replace(src: str | os.PathLike, dst: str | os.PathLike) -> None:
    """os.replace with the renamed entry flushed: the folders of both ends are fsynced."""
    os.replace(src, dst)
    fsync_path(Path(dst).parent)
    if Path(src).parent != Path(dst).parent:
        fsync_path(Path(src).parent)


def temp_name(path: Path) -> Path:
    # The suffix is kept so that tools which pick a format from it (cv2, ffmpeg) still work.
    return path.with_name(f".{path.stem}.tmp-{os.getpid()}{path.suffix}")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; fsync it and rename it to ``path`` on
    success, delete it on any failure (including KeyboardInterrupt)."""
    path = Path(path)
    tmp = temp_name(path)
    try:
        yield tmp
        if tmp.exists():
            fsync_tree(tmp)
        durable_replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            if tmp.is_dir():
                import shutil

                shutil.rmtree(tmp)
            else:
                tmp.unlink()
        raise


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_json(path: str | os.PathLike, obj) -> None:
    write_bytes(path, json.dumps(obj, indent=1, sort_keys=True).encode())
