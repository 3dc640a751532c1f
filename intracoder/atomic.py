"""Write files under a temporary name and rename, so an interrupted run never leaves a
half-written file under the real name."""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Iterator


def temp_name(path: Path) -> Path:
    # The suffix is kept so that tools which pick a format from it (cv2, ffmpeg) still work.
    return path.with_name(f".{path.stem}.tmp-{os.getpid()}{path.suffix}")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it to ``path`` on success, delete it
    on any failure (including KeyboardInterrupt)."""
    path = Path(path)
    tmp = temp_name(path)
    try:
        yield tmp
        os.replace(tmp, path)
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
