"""`intracoder evaluate`: score a converted video against its source and the model's data.

Reads both videos in lockstep, scores evenly spaced frames (all by default), and writes
every number (plus the model's iteration and config) as JSON, and optionally an HTML
report. Nothing is random, so the same inputs give the same numbers.
"""

from __future__ import annotations

import dataclasses
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

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


def _read(path: str) -> list[np.ndarray]:
    p = Path(path)
    if not p.exists():
        raise UserError(f"{p}: no such file")
    if p.suffix.lower() in IMAGE_SUFFIXES:
        img = cv2.imread(str(p))
        if img is None:
            raise UserError(f"{p}: not an image that can be decoded")
        return [img]
    from intracoder.media.video import iter_frames

    frames = list(iter_frames(p))
    if not frames:
        raise UserError(f"{p}: no frame could be decoded")
    return frames


def _pick(n: int, limit: int) -> list[int]:
    """``limit`` frames spread over ``n``, as evenly spaced PAIRS of neighbours: flicker is a
    frame-to-frame change, so a sample with no neighbours in it could not measure it."""
    if limit <= 0 or limit >= n:
        return list(range(n))
    pairs = max(1, limit // 2)
    firsts = np.linspace(0, n - 2, pairs).round().astype(int)
    return sorted({int(i) + k for i in firsts for k in (0, 1)} | (
        {n - 1} if limit % 2 else set()))


def _convert_first(cfg: EvaluateConfig, workdir: Path) -> str:
    from intracoder.convert.pipeline import ConvertConfig, convert

    suffix = Path(cfg.source).suffix or ".mp4"
    out = workdir / f"swapped{suffix}"
    convert(ConvertConfig(input=cfg.source, output=str(out), model=cfg.model,
                          direction=cfg.direction))
    return str(out)


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
        source, swapped = _read(cfg.source), _read(swapped_path)
    if len(source) != len(swapped):
        raise UserError(f"{swapped_path} has {len(swapped)} frames but {cfg.source} has "
                        f"{len(source)}: not a conversion of it")
    indices = _pick(len(source), cfg.max_frames)
    if finder is None:
        from intracoder.faces.extract import FaceFinder

        finder = FaceFinder(largest=True)
    target_mean = scores.faceset_embedding(facesets[target]["path"], cfg.faceset_samples)
    origin_mean = scores.faceset_embedding(facesets[origin]["path"], cfg.faceset_samples)
    frame_scores, temporal = scores.score_frames(
        finder, [source[i] for i in indices], [swapped[i] for i in indices], indices,
        target_mean, origin_mean)
    summary = scores.summarise(frame_scores, temporal)
    summary["reconstruction"] = {
        side: scores.reconstruction(model, facesets[side]["path"],
                                    facesets[side].get("held_out", []), side)
        for side in ("a", "b")}
    result = {
        "schema": SCHEMA,
        "direction": cfg.direction,
        "model": {"path": str(cfg.model), "iteration": state.get("iteration"),
                  "config": state.get("config"), "model_config": state.get("model_config")},
        "inputs": {"source": str(cfg.source), "swapped": str(swapped_path),
                   "frames": len(source), "frames_scored": len(indices)},
        "summary": summary,
        "frames": [dataclasses.asdict(s) for s in frame_scores],
    }
    if cfg.json:
        write_json(cfg.json, result)
    if cfg.report:
        from intracoder.metrics.report import write_report

        write_json(Path(cfg.report) / "evaluation.json", result)
        write_report(Path(cfg.report), result, [source[i] for i in indices],
                     [swapped[i] for i in indices])
    return result


def summary_lines(result: dict) -> list[str]:
    s = result["summary"]
    ident = s["identity"]
    lines = [f"frames scored: {s['frames_scored']} (swapped face found in "
             f"{s['frames_with_swapped_face']})"]
    for row in ("swapped", "source_baseline"):
        r = ident[row]
        if r.get("frames"):
            lines.append(f"identity {row:15s}: to target {r['mean_distance_to_target']:.3f}, "
                         f"to source {r['mean_distance_to_source']:.3f}, under 0.6 "
                         f"{r['share_under_threshold']:.0%}, retrieval {r['retrieval']:.0%}")
    e = s["expression"]
    if e["landmark_error_iod"] is not None:
        dlib5 = e.get("dlib5_error_iod")
        lines.append(f"expression kept: landmark error {e['landmark_error_iod']:.3f} IOD "
                     f"(468-pt), {'n/a' if dlib5 is None else f'{dlib5:.3f}'} IOD (dlib 5-pt), "
                     f"yaw/pitch/roll diff {e['yaw_diff_deg']:.1f}/{e['pitch_diff_deg']:.1f}/"
                     f"{e['roll_diff_deg']:.1f} deg")
    if s.get("sharpness_ratio") is not None:
        inner = s.get("sharpness_ratio_dlib_box")
        lines.append(f"sharpness (swapped/source Laplacian variance): {s['sharpness_ratio']:.2f}"
                     + (f" (dlib box {inner:.2f})" if inner is not None else ""))
    if s.get("seam_score") is not None:
        lines.append(f"seam (edge added at the blend boundary, 1 = none): {s['seam_score']:.2f}")
    lines.append(f"temporal stability (output/source flicker): {s['temporal_stability']:.2f}")
    for side, r in s["reconstruction"].items():
        if r.get("faces"):
            lines.append(f"reconstruction {side}: SSIM {r['ssim']:.3f}, PSNR {r['psnr']:.1f} dB "
                         f"on {r['faces']} held-out faces")
    return lines
