"""`intracoder evaluate`: score a converted video against its source and the model's data.

Decodes both videos in lockstep, one frame at a time, scores evenly spaced frames (all by
default), and writes every number (plus the model's iteration and config) as JSON, and
optionally an HTML report. Only a batch of frames, the previous one (flicker) and small
copies of the report's few frames are ever held, so memory does not grow with the clip's
length. Nothing is random, so the same inputs give the same numbers.
"""

from __future__ import annotations

import dataclasses
import math
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from intracoder.atomic import write_json
from intracoder.errors import UserError
from intracoder.faces.frames import IMAGE_SUFFIXES
from intracoder.metrics import scores

SCHEMA = 1


@dataclass(frozen=True)
class EvaluateConfig:
    model: str | None = field(default=None, metadata={"help": "trained model folder (required)"})
    source: str | None = field(default=None, metadata={
        "help": "the original video or image of the person being replaced (required)"})
    swapped: str | None = field(default=None, metadata={
        "help": "the converted video or image; omitted: convert SOURCE first"})
    json: str | None = field(default=None, metadata={"help": "write every number here as JSON"})
    report: str | None = field(default=None, metadata={
        "help": "folder for an HTML report: summary table, per-frame plots, a frame strip and "
        "a side-by-side GIF"})
    direction: str = field(default="a2b", metadata={"choices": ["a2b", "b2a"],
                                                     "help": "which way SWAPPED was converted"})
    max_frames: int = field(default=0, metadata={
        "help": "score at most N frames, evenly spaced (0: every frame)"})
    faceset_samples: int = field(default=32, metadata={
        "help": "faces per faceset averaged into its identity embedding"})


def _is_image(p: Path) -> bool:
    return p.suffix.lower() in IMAGE_SUFFIXES


def _frame_count(path: str) -> int:
    """Frames in ``path`` as its header says (an image is one); decodes nothing."""
    p = Path(path)
    if not p.exists():
        raise UserError(f"{p}: no such file")
    if _is_image(p):
        return 1
    from intracoder.media.video import probe

    return probe(p).frame_count


def _frames(path: str, start: int, end: int | None) -> Iterator[np.ndarray]:
    """Frames start..end-1 of a video, or the image itself, one at a time."""
    p = Path(path)
    if _is_image(p):
        img = cv2.imread(str(p))
        if img is None:
            raise UserError(f"{p}: not an image that can be decoded")
        if start == 0 and (end is None or end > 0):
            yield img
        return
    from intracoder.media.video import iter_frames

    yield from iter_frames(p, start, end)


@dataclass
class _Ends:
    """Where the lockstep decode stopped: ``decoded`` frames both inputs had, and which of
    them ran out before the other or before the last picked frame (None: neither did)."""
    decoded: int = 0
    short: str | None = None


def _pairs(source: str, swapped: str, indices: list[int] | None, ends: _Ends
           ) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """(frame number, source frame, swapped frame) for each of ``indices`` (None: every
    frame, to the end), both inputs decoded side by side. Stops when either runs out: frame
    counts from headers can be a little off, and the frames both have are still worth
    scoring."""
    start = indices[0] if indices else 0
    end = indices[-1] + 1 if indices else None
    wanted = set(indices) if indices else None
    src_it, sw_it = _frames(source, start, end), _frames(swapped, start, end)
    i = start
    try:
        while True:
            src, sw = next(src_it, None), next(sw_it, None)
            if src is None or sw is None:
                break
            if wanted is None or i in wanted:
                yield i, src, sw
            i += 1
        ends.decoded = i
        if src is None and sw is None:
            if end is not None and i < end:
                ends.short = "both inputs"
        else:
            ends.short = source if src is None else swapped
    finally:
        # A consumer that stops early must not leave the decoders running.
        src_it.close()
        sw_it.close()


def _keeping(pairs, positions: set[int], kept: list, shrink) -> Iterator:
    """Pass ``pairs`` on, keeping a small copy of the ones at ``positions`` (0-based)."""
    for k, (i, src, sw) in enumerate(pairs):
        if k in positions:
            kept.append((shrink(src), shrink(sw)))
        yield i, src, sw


def _pick(n: int, limit: int) -> list[int]:
    """``limit`` frames spread over ``n``, as evenly spaced PAIRS of neighbours: flicker is a
    frame-to-frame change, so a sample with no neighbours in it could not measure it."""
    if limit <= 0 or limit >= n:
        return list(range(n))
    pairs = max(1, limit // 2)
    firsts = np.linspace(0, n - 2, pairs).round().astype(int)
    return sorted({int(i) + k for i in firsts for k in (0, 1)} | (
        {n - 1} if limit % 2 else set()))


def _same_length(n_source: int, n_swapped: int) -> bool:
    if n_source == n_swapped:
        return True
    if min(n_source, n_swapped) <= 1:
        return False  # an image against a video
    # Some containers' headers give an estimate a frame or two off; a different or trimmed
    # clip is off by far more.
    return abs(n_source - n_swapped) <= max(2, 0.01 * max(n_source, n_swapped))


def json_safe(obj):
    """``obj`` with every NaN or infinity replaced by None: JSON has no such numbers (Python
    would write NaN, which other readers reject), and an undefined figure is null."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, np.generic):
        return json_safe(obj.item())
    return obj


def _convert_first(cfg: EvaluateConfig, workdir: Path) -> str:
    from intracoder.convert.pipeline import ConvertConfig, convert

    suffix = Path(cfg.source).suffix or ".mp4"
    out = workdir / f"swapped{suffix}"
    convert(ConvertConfig(input=cfg.source, output=str(out), model=cfg.model,
                          direction=cfg.direction))
    return str(out)


def _short_note(ends: _Ends, expected: int) -> str | None:
    if ends.short is None:
        return None
    if ends.short == "both inputs":
        return (f"both inputs ended after {ends.decoded} frames, not the {expected} their "
                f"headers give: scored the frames they have")
    return (f"{ends.short} ended after {ends.decoded} frames, before the other input: scored "
            f"the {ends.decoded} frames both have")


def evaluate(cfg: EvaluateConfig, finder=None) -> dict:
    if not cfg.model or not cfg.source:
        raise UserError("evaluate needs --model DIR and --source INPUT")
    from intracoder.training.inference import load_model

    model, state = load_model(cfg.model)
    target, origin = ("b", "a") if cfg.direction == "a2b" else ("a", "b")
    facesets = state.get("facesets", {})
    for side in (target, origin):
        if side not in facesets or not Path(facesets[side]["path"]).is_dir():
            raise UserError(f"{cfg.model}: the faceset of person {side.upper()} it was trained on "
                            f"is gone ({facesets.get(side, {}).get('path')}); identity needs it")
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(cfg.report) if cfg.report else Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        swapped_path = cfg.swapped or _convert_first(cfg, workdir)
        n_source, n_swapped = _frame_count(cfg.source), _frame_count(swapped_path)
        if not _same_length(n_source, n_swapped):
            raise UserError(f"{swapped_path} has {n_swapped} frames but {cfg.source} has "
                            f"{n_source}: not a conversion of it")
        n = min(n_source, n_swapped)
        # None: every frame, read to the end whatever the header says.
        indices = _pick(n, cfg.max_frames) if 0 < cfg.max_frames < n else None
        if finder is None:
            from intracoder.faces.extract import FaceFinder

            finder = FaceFinder(largest=True)
        target_mean = scores.faceset_embedding(facesets[target]["path"], cfg.faceset_samples)
        origin_mean = scores.faceset_embedding(facesets[origin]["path"], cfg.faceset_samples)
        ends = _Ends()
        pairs = _pairs(cfg.source, swapped_path, indices, ends)
        kept: list[tuple[np.ndarray, np.ndarray]] = []
        if cfg.report:
            from intracoder.metrics.report import report_picks, thumbnail

            pairs = _keeping(pairs, report_picks(len(indices) if indices else n), kept,
                             thumbnail)
        frame_scores, temporal = scores.score_pairs(finder, pairs, target_mean, origin_mean)
    if not frame_scores:
        empty = cfg.source if n_source == 0 or ends.short == cfg.source else swapped_path
        raise UserError(f"{empty}: no frame could be decoded")
    note = _short_note(ends, indices[-1] + 1 if indices else n)
    summary = scores.summarise(frame_scores, temporal)
    summary["reconstruction"] = {
        side: scores.reconstruction(model, facesets[side]["path"],
                                    facesets[side].get("held_out", []), side)
        for side in ("a", "b")}
    result = json_safe({
        "schema": SCHEMA,
        "direction": cfg.direction,
        "model": {"path": str(cfg.model), "iteration": state.get("iteration"),
                  "config": state.get("config"), "model_config": state.get("model_config")},
        "inputs": {"source": str(cfg.source), "swapped": str(swapped_path),
                   "frames": ends.decoded if indices is None or ends.short else n,
                   "frames_scored": len(frame_scores), "note": note},
        "summary": summary,
        "frames": [dataclasses.asdict(s) for s in frame_scores],
    })
    if cfg.json:
        write_json(cfg.json, result)
    if cfg.report:
        from intracoder.metrics.report import write_report

        write_json(Path(cfg.report) / "evaluation.json", result)
        write_report(Path(cfg.report), result, [k[0] for k in kept], [k[1] for k in kept])
    return result


def _fmt(v, fmt: str) -> str:
    return "n/a" if v is None else fmt.format(v)


def summary_lines(result: dict) -> list[str]:
    s = result["summary"]
    ident = s["identity"]
    note = result.get("inputs", {}).get("note")
    lines = [f"note: {note}"] if note else []
    lines.append(f"frames scored: {s['frames_scored']} (swapped face found in "
                 f"{s['frames_with_swapped_face']})")
    for row in ("swapped", "source_baseline"):
        r = ident[row]
        if r.get("frames"):
            lines.append(f"identity {row:15s}: to target "
                         f"{_fmt(r.get('mean_distance_to_target'), '{:.3f}')}, to source "
                         f"{_fmt(r.get('mean_distance_to_source'), '{:.3f}')}, under 0.6 "
                         f"{_fmt(r.get('share_under_threshold'), '{:.0%}')}, retrieval "
                         f"{_fmt(r.get('retrieval'), '{:.0%}')}")
    e = s["expression"]
    if e.get("landmark_error_iod") is not None:
        lines.append(f"expression kept: landmark error {e['landmark_error_iod']:.3f} IOD "
                     f"(468-pt), {_fmt(e.get('dlib5_error_iod'), '{:.3f}')} IOD (dlib 5-pt), "
                     f"yaw/pitch/roll diff " + "/".join(
                         _fmt(e.get(k), "{:.1f}")
                         for k in ("yaw_diff_deg", "pitch_diff_deg", "roll_diff_deg")) + " deg")
    if s.get("sharpness_ratio") is not None:
        inner = s.get("sharpness_ratio_dlib_box")
        lines.append(f"sharpness (swapped/source Laplacian variance): {s['sharpness_ratio']:.2f}"
                     + (f" (dlib box {inner:.2f})" if inner is not None else ""))
    if s.get("seam_score") is not None:
        lines.append(f"seam (edge added at the blend boundary, 1 = none): {s['seam_score']:.2f}")
    lines.append("temporal stability (output/source flicker): "
                 f"{_fmt(s.get('temporal_stability'), '{:.2f}')}")
    for side, r in s["reconstruction"].items():
        if r.get("faces"):
            lines.append(f"reconstruction {side}: SSIM {_fmt(r.get('ssim'), '{:.3f}')}, PSNR "
                         f"{_fmt(r.get('psnr'), '{:.1f}')} dB on {r['faces']} held-out faces")
    return lines
