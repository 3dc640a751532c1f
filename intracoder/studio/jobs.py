"""Long work the studio starts: the same ``intracoder`` commands the CLI runs, as background
processes whose state lives in files, not in the page.

A job is a folder of its own (``MODEL/.studio/train/``, ``OUTPUT.studio/``...) holding the
command, its pid and its log. A browser reload, or a new studio process, finds a running
job from its pid file and its progress from the log's last progress line, so nothing is
lost with the page. Stopping a job sends it SIGINT, which for ``train`` is Ctrl-C: the
loop saves a checkpoint and exits.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

# tqdm's line: "train:  12%|##  | 120/1000 [00:30<03:40, 4.00it/s, A 0.1 ...]"; with no total
# "train: 120it [00:30, 4.00it/s, ...]".
_PROGRESS = re.compile(r"(?P<done>\d+)(?:/(?P<total>\d+))?(?:it| \w+)?\s*"
                       r"\[(?P<elapsed>[\d:]+)(?:<(?P<left>[\d:?]+))?,\s*(?P<rate>[\d.?]+)\s*"
                       r"(?P<unit>[\w/]+)")
_ERROR = re.compile(r"^intracoder: (error|interrupted).*$", re.M)
_STARTED: dict[int, subprocess.Popen] = {}  # jobs this process started, to reap them


@dataclass
class JobStatus:
    running: bool
    returncode: int | None
    done: int | None = None
    total: int | None = None
    rate: str | None = None
    left: str | None = None
    message: str | None = None  # the command's one error line, when it failed
    log_tail: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


class Job:
    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self.pid_file = self.folder / "pid"
        self.log_file = self.folder / "log.txt"
        self.rc_file = self.folder / "returncode"
        self.child_file = self.folder / "command.pid"

    def start(self, args: list[str]) -> None:
        """Run ``intracoder ARGS`` in the background (one at a time per job folder)."""
        if self.status().running:
            raise RuntimeError("already running")
        self.folder.mkdir(parents=True, exist_ok=True)
        self.rc_file.unlink(missing_ok=True)
        self.child_file.unlink(missing_ok=True)
        (self.folder / "command.json").write_text(json.dumps(args))
        log = open(self.log_file, "wb")
        # A small wrapper records the command's pid (what stop signals) and its exit code, so
        # a finished job is told from a crashed one after the studio itself restarted.
        code = ("import subprocess, sys; p = subprocess.Popen([sys.executable, '-m', "
                f"'intracoder', *{args!r}]); open({str(self.child_file)!r}, 'w')"
                ".write(str(p.pid)); rc = p.wait(); "
                f"open({str(self.rc_file)!r}, 'w').write(str(rc))")
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        env.pop("INTRACODER_NO_PROGRESS", None)  # the log's progress line is the status
        proc = subprocess.Popen([sys.executable, "-c", code], stdout=log, stderr=log,
                                stdin=subprocess.DEVNULL, env=env, start_new_session=True)
        log.close()
        self.pid_file.write_text(str(proc.pid))
        _STARTED[proc.pid] = proc

    def _pid(self, file: Path | None = None) -> int | None:
        try:
            return int((file or self.pid_file).read_text())
        except (OSError, ValueError):
            return None

    def _alive(self, pid: int | None) -> bool:
        if pid is None:
            return False
        proc = _STARTED.get(pid)
        if proc is not None:  # started by this studio: poll() also reaps it
            return proc.poll() is None
        try:
            os.kill(pid, 0)
        except OSError:
            return False
        return True

    def stop(self, wait: float = 120.0) -> None:
        """SIGINT to the command (Ctrl-C: train saves first), then wait for it to end."""
        pid = self._pid()
        if not self._alive(pid):
            return
        deadline = time.monotonic() + 30
        while self._pid(self.child_file) is None and time.monotonic() < deadline:
            time.sleep(0.1)  # the wrapper has not started the command yet
        child = self._pid(self.child_file)
        if child is not None:
            try:
                os.kill(child, signal.SIGINT)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + wait
        while self._alive(pid) and time.monotonic() < deadline:
            time.sleep(0.2)

    def status(self) -> JobStatus:
        pid = self._pid()
        running = self._alive(pid)
        rc = None
        if self.rc_file.is_file():
            try:
                rc = int(self.rc_file.read_text())
            except ValueError:
                rc = None
        text = self.log_file.read_text(errors="replace") if self.log_file.is_file() else ""
        status = JobStatus(running=running, returncode=rc,
                           log_tail="\n".join(_lines(text)[-12:]))
        progress_line = next((ln for ln in reversed(_lines(text)) if _PROGRESS.search(ln)), None)
        if progress_line:
            m = _PROGRESS.search(progress_line)
            status.done = int(m["done"])
            status.total = int(m["total"]) if m["total"] else None
            status.rate = f"{m['rate']} {m['unit']}"
            status.left = m["left"]
        errors = [m.group(0) for m in _ERROR.finditer(text)]
        if rc not in (None, 0) and errors:
            status.message = errors[-1]  # the command's own one-line error
        return status


def _lines(text: str) -> list[str]:
    """Lines of a log written by tqdm, whose updates end in carriage returns."""
    return [part.strip() for line in text.splitlines() for part in line.split("\r")
            if part.strip()]
