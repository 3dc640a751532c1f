"""``intracoder convert --model M INPUT_DIR OUT_DIR``: every video in a folder.

Each video is converted as a single INPUT would be (in parts over the workers when there
are several), with the model and the detector loaded once for all of them. A video that
cannot be converted gets its one error line and the others go on; the exit code says
whether all succeeded.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

from intracoder.errors import UserError
from intracoder.media.image import IMAGE_SUFFIXES
from intracoder.media.video import VIDEO_SUFFIXES

# What is taken for a video in an input folder (anything FFmpeg reads; these are the usual).
READ_SUFFIXES = {*VIDEO_SUFFIXES, ".avi", ".webm", ".ts", ".mts", ".m2ts", ".mpg", ".mpeg",
                 ".flv", ".wmv", ".3gp", ".h264", ".h265", ".hevc"}


def video_inputs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir()
                  if p.is_file() and p.suffix.lower() in READ_SUFFIXES and not p.name.startswith("."))


def is_video_folder(path: str) -> bool:
    """A folder holding videos (a batch), as opposed to one of images (an image sequence);
    both kinds at once is ambiguous and one clear error."""
    folder = Path(path)
    if not folder.is_dir():
        return False
    videos = video_inputs(folder)
    if videos and any(p.suffix.lower() in IMAGE_SUFFIXES for p in folder.iterdir()):
        raise UserError(f"{folder}: holds both videos and images; give a folder of videos "
                        "(each is converted) or of images (converted as a sequence)")
    return bool(videos)


def output_name(video: Path) -> str:
    """The input's name where it can be written as it is, else NAME.mp4 (so ``a.avi`` and
    ``a.ts`` do not collide)."""
    return video.name if video.suffix.lower() in VIDEO_SUFFIXES else f"{video.name}.mp4"


def convert_folder(cfg, finder=None, loaded=None):
    from intracoder.convert.pipeline import ConvertSummary, check, convert, load_job

    folder, out_dir = Path(cfg.input), Path(cfg.output)
    if out_dir.exists() and not out_dir.is_dir():
        raise UserError(f"{out_dir}: for a folder of videos, OUTPUT must be a folder")
    if out_dir.resolve() == folder.resolve():
        raise UserError(f"{out_dir}: OUTPUT would overwrite INPUT; choose another folder")
    out_dir.mkdir(parents=True, exist_ok=True)
    videos = video_inputs(folder)
    total = ConvertSummary(inputs=len(videos))
    for video in videos:
        one = dataclasses.replace(cfg, input=str(video), output=str(out_dir / output_name(video)))
        try:
            if loaded is None and not cfg.cluster and cfg.workers in (None, 1):
                # After the first video's checks: loaded once for all (workers load their own).

                check(one)
                job = load_job(one, finder)
                finder, loaded = job.finder, (job.model, job.state)
            summary = convert(one, finder, loaded)
        except UserError as exc:
            print(f"intracoder: error: {exc}", file=sys.stderr)
            total.inputs_failed += 1
            continue
        print(f"{video.name}: {summary.line()}", file=sys.stderr)
        for name in ("frames", "faces_swapped", "frames_without_face", "seconds"):
            setattr(total, name, getattr(total, name) + getattr(summary, name))
    return total
