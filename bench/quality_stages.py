"""bench/quality.py's stages: one `python -m intracoder ...` subprocess each, and the
extraction cache (one folder of faces per clip and extract options, reused once complete).
Standard library only: importable without intracoder, and without bench/ being a package."""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import json
import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]
CACHE_MARK = "quality_cache.json"  # written once an extraction finished


class QualityError(Exception):
    """One line for the user, exit code ``code``; never a traceback."""

    def __init__(self, message: str, code: int = 2):
        super().__init__(message)
        self.code = code


def run_main(prog: str, run: Callable[[list[str]], int], argv: list[str],
             interrupted: str = "interrupted") -> int:
    """``run(argv)``, with every error a user can cause as one line on stderr and its exit
    code: the scripts' QualityError, intracoder's UserError (imported here, not at the top,
    so this module stays importable without intracoder), an OSError and Ctrl-C."""
    from intracoder.errors import UserError

    try:
        return run(argv)
    except QualityError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return exc.code
    except UserError as exc:  # intracoder's own one-line errors (probe, reading videos)
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except OSError as exc:
        print(f"{prog}: error: {exc.strerror or exc}: {exc.filename or ''}".rstrip(": "),
              file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{prog}: {interrupted}", file=sys.stderr)
        return 130


def clean(text: str) -> str:
    """``text`` usable in a folder name: runs of anything else become one '-'."""
    return re.sub(r"[^A-Za-z0-9.+]+", "-", text).strip("-")


def run_stage(stage: str, args: list[str], log: Path) -> None:
    """``python -m intracoder ARGS``: output shown live and kept in ``log``; a failure is
    one line naming the stage and the log."""
    cmd = [sys.executable, "-m", "intracoder", *args]
    print(f"\n== {stage}: {shlex.join(['intracoder', *args])}", flush=True)
    log.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with open(log, "wb") as f:
        f.write(f"$ {shlex.join(cmd)}\n".encode())
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                env=env)
        try:
            while chunk := os.read(proc.stdout.fileno(), 65536):
                sys.stdout.buffer.write(chunk)
                sys.stdout.buffer.flush()
                f.write(chunk)
            rc = proc.wait()
        except KeyboardInterrupt:
            proc.wait()  # the child got the Ctrl-C too and saves/cleans up
            raise
    if rc:
        raise QualityError(f"{stage} failed (exit {rc}); its output is above and in {log}",
                           code=rc if rc > 0 else 1)


def read_state(model: Path) -> dict | None:
    """The model's checkpoint/state.json (iteration, train_seconds, backend); None if absent."""
    path = model / "checkpoint" / "state.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


# --------------------------------------------------------------------------- cache

def cache_key(clip: Path, size: int, largest: bool, extra: list[str]) -> str:
    """Folder name of a clip's faces: readable prefix + hash of name, size in bytes,
    mtime and every extract option, so a changed clip or option gets a new folder."""
    st = clip.stat()
    ident = json.dumps([clip.name, st.st_size, st.st_mtime_ns, size, bool(largest), extra])
    digest = hashlib.sha1(ident.encode()).hexdigest()[:10]
    return f"{clean(clip.stem)}-s{size}{'-largest' if largest else ''}-{digest}"


def cache_folder(clip: Path, args, extra: list[str]) -> Path:
    """Where ``clip``'s faces go for --cache, --size, --largest and the extract options."""
    return Path(args.cache).resolve() / cache_key(clip, args.size, args.largest, extra)


def cache_ready(folder: Path) -> bool:
    """Complete: faces.json and the mark written after the extraction finished."""
    return (folder / "faces.json").is_file() and (folder / CACHE_MARK).is_file()


@contextlib.contextmanager
def locked(path: Path):
    """An exclusive lock file, so two runs never extract into one folder at once."""
    import fcntl

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def extract_clip(clip: Path, args, extra: list[str], timings: dict, logs: Path) -> Path:
    """The folder of ``clip``'s faces: from the cache, else `intracoder extract` into it
    (its time added to ``timings['extract']``) and the mark written."""
    folder = cache_folder(clip, args, extra)
    if cache_ready(folder):
        print(f"faces of {clip.name}: cached in {folder}")
        return folder
    start = time.perf_counter()
    with locked(folder.with_name(folder.name + ".lock")):
        if not cache_ready(folder):  # another run may have finished it while we waited
            run_stage(f"extract {clip.name}",
                      ["extract", str(clip), str(folder), "--size", str(args.size),
                       "--largest" if args.largest else "--no-largest", *extra],
                      logs / f"extract_{clip.stem}.log")
            (folder / CACHE_MARK).write_text(json.dumps({
                "clip": str(clip), "bytes": clip.stat().st_size,
                "mtime_ns": clip.stat().st_mtime_ns, "size": args.size, "largest": args.largest,
                "extract_args": extra,
                "finished": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
            }, indent=1))
    timings["extract"] = timings.get("extract", 0.0) + time.perf_counter() - start
    return folder
