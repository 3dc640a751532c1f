"""A video converted in parts: split into frame ranges, each converted on its own by a worker
(a local process or a Ray task: convert.workers), joined without re-encoding, the audio muxed
once at the end.

Each part decodes from the keyframe before it and starts converting a little early (the
warm-up, at least two detector intervals), so the face tracker and the One-Euro smoothing
arrive at the part's first frame in the state a single run would have: only the few frames
right after a boundary can differ, by a fraction of a pixel of landmark motion. Finished
parts are kept in a work folder beside OUTPUT (``.NAME.parts/``) with a plan that names the
input, the model and every option that changes a pixel, so a crashed or interrupted run
resumes with only the missing parts; OUTPUT appears only when all are joined.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from intracoder.atomic import write_json
from intracoder.convert.media import Sink, Source, open_source
from intracoder.media.concat import Part, join_parts
from intracoder.media.video import keyframes
from intracoder.provenance.metadata import video_metadata
from intracoder.provenance.xmp import xmp_packet

PLAN = "plan.json"
# Options that do not change a converted pixel: a resume may change them freely.
_NOT_IN_PLAN = {"input", "output", "preview", "workers", "cluster", "settings"}
# ("settings" is the file's path; its content, settings_json, is in the plan.)


@dataclass(frozen=True)
class Segment:
    number: int
    start: int  # first frame written
    end: int  # frame to stop before
    warm_from: int  # first frame decoded and tracked, <= start
    seek: tuple[int, int] | None  # keyframe (index, pts) at or before warm_from

    @property
    def frames(self) -> int:
        return self.end - self.start


def warmup_frames(detect_every: int) -> int:
    """Frames a part is tracked for before its first: two detector intervals, so at least
    one detection and a settled One-Euro filter, and never under 8."""
    return max(8, 2 * detect_every)


def plan_segments(start: int, end: int, segment_frames: int, workers: int, detect_every: int,
                  keys: list[tuple[int, int]]) -> list[Segment]:
    """Frames start..end-1 in parts of about ``segment_frames`` (at least one per worker).
    A part's warm-up begins on one of the single run's detector frames (a multiple of
    ``detect_every`` from ``start``), so both detect on the same frames."""
    total = end - start
    count = max(1, min(total, max(workers, math.ceil(total / segment_frames))))
    bounds = [start + round(k * total / count) for k in range(count + 1)]
    out = []
    for number, (s, e) in enumerate(zip(bounds, bounds[1:])):
        warm = max(start, s - warmup_frames(detect_every))
        warm = start + (warm - start) // detect_every * detect_every
        seek = max((k for k in keys if k[0] <= warm), default=None)
        out.append(Segment(number, s, e, warm, seek))
    return out


def _fingerprint(path: Path) -> dict:
    stat = path.stat()
    return {"path": str(path.resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


class WorkFolder:
    """``.NAME.parts/`` beside OUTPUT: plan.json, and part_NNNN.mp4 with part_NNNN.json, the
    json written only once its video is complete (its presence means done)."""

    def __init__(self, output: str | Path):
        out = Path(output)
        self.path = out.with_name(f".{out.name}.parts")
        self.suffix = out.suffix

    def video(self, number: int) -> Path:
        return self.path / f"part_{number:04d}{self.suffix}"

    def record(self, number: int) -> Path:
        return self.path / f"part_{number:04d}.json"

    def prepare(self, plan: dict) -> set[int]:
        """Numbers of the parts already done under the same plan; a folder left by another
        plan (other input, model or options) is started again, with one line saying so."""
        old = None
        if (self.path / PLAN).is_file():
            try:
                old = json.loads((self.path / PLAN).read_text())
            except (ValueError, OSError):
                old = None
        if old != plan and self.path.exists():
            if old is not None:
                print(f"{self.path}: parts of an earlier convert with other input, model or "
                      "options; starting again", file=sys.stderr)
            shutil.rmtree(self.path)
        self.path.mkdir(exist_ok=True)
        write_json(self.path / PLAN, plan)
        return {n for n in range(len(plan["segments"])) if self.record(n).is_file()}

    def done(self, number: int) -> dict:
        return json.loads(self.record(number).read_text())

    def remove(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


def make_plan(cfg, source: Source, mid: str, segments: list[Segment]) -> dict:
    options = {k: v for k, v in dataclasses.asdict(cfg).items() if k not in _NOT_IN_PLAN}
    return {"input": _fingerprint(source.path), "model": mid,
            "options": hashlib.sha256(json.dumps(options, sort_keys=True).encode()).hexdigest(),
            "segments": [[s.start, s.end] for s in segments]}


def convert_part(job, cfg, seg: Segment, work: WorkFolder, total: int, advance,
                 threads: int | None = None) -> dict:
    """Convert one part into the work folder (in a worker); its record, also written there."""
    from intracoder.convert.pipeline import preview_positions, run_frames

    source = open_source(cfg.input, seg.warm_from, seg.end)
    source.seek = seg.seek
    started = time.perf_counter()
    with Sink(source, str(work.video(seg.number)), job.mid, cfg.crf, part=True,
              threads=threads) as sink:
        summary = run_frames(job, source, sink, advance, warmup=seg.start - seg.warm_from,
                             first=seg.warm_from - cfg.start, sampled=preview_positions(total))
        sink.close()
    record = {"number": seg.number, "frames": summary.frames, "first_pts": sink.first_pts,
              "end_pts": sink.end_pts,
              "faces_swapped": summary.faces_swapped,
              "frames_without_face": summary.frames_without_face,
              "seconds": round(time.perf_counter() - started, 3)}
    write_json(work.record(seg.number), record)
    return record


def join(cfg, source: Source, work: WorkFolder, segments: list[Segment], mid: str) -> None:
    """All parts into OUTPUT, with the source's audio under exactly the converted frames."""
    info = source.info
    records = [work.done(s.number) for s in segments]
    origin = records[0]["first_pts"] or 0
    tb = info.time_base or 1 / info.fps
    parts = [Part(work.video(r["number"]), float(((r["first_pts"] or 0) - origin) * tb))
             for r in records]
    clipped = source.start > 0 or source.count < info.frame_count
    # A part of the source: its audio up to the end of the last frame, as a single run clips.
    audio_end = float(records[-1]["end_pts"] * tb) if clipped else None
    join_parts(parts, cfg.output, audio_from=source.path if info.has_audio else None,
               audio_start=float(origin * tb), audio_end=audio_end,
               metadata=video_metadata(mid), xmp=xmp_packet(mid))


def convert_in_parts(cfg, source: Source, finder=None, loaded=None):
    """Split, convert every missing part on the workers, join; a ConvertSummary of it all."""
    from intracoder.convert.pipeline import ConvertSummary, check_model, decoder_of, model_id
    from intracoder.convert.pipeline import resolve_workers
    from intracoder.convert.workers import run_parts

    started = time.perf_counter()
    keys = keyframes(source.path)
    if not keys:  # a raw stream: no timestamps to place the parts by, nor to enter them at
        from intracoder.convert.pipeline import convert

        print(f"{source.path}: has no timestamps, so it cannot be split: converting it with "
              "one worker", file=sys.stderr)
        return convert(dataclasses.replace(cfg, workers=1, cluster=None), finder, loaded)
    workers = resolve_workers(cfg, source.count)
    state = check_model(cfg.model, decoder_of(cfg), cfg.direction)
    mid = model_id(state)
    segments = plan_segments(source.start, source.start + source.count, cfg.segment_frames,
                             workers, cfg.detect_every, keys)
    work = WorkFolder(cfg.output)
    done = work.prepare(make_plan(cfg, source, mid, segments))
    todo = [s for s in segments if s.number not in done]
    if done:
        print(f"resuming: {len(done)} of {len(segments)} parts already converted",
              file=sys.stderr)
    run_parts(cfg, todo, work, source.count, sum(segments[n].frames for n in done), workers,
              finder, loaded)
    joining = time.perf_counter()
    join(cfg, source, work, segments, mid)
    joined = time.perf_counter() - joining
    records = [work.done(s.number) for s in segments]
    work.remove()
    summary = ConvertSummary(frames=sum(r["frames"] for r in records),
                             faces_swapped=sum(r["faces_swapped"] for r in records),
                             frames_without_face=sum(r["frames_without_face"] for r in records),
                             seconds=time.perf_counter() - started)
    summary.parts, summary.parts_converted = len(segments), len(todo)
    summary.join_seconds = joined
    return summary
