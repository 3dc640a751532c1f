"""`intracoder evaluate` decodes both inputs in lockstep, a frame at a time: memory does not
grow with the clip, --max-frames keeps neighbours for the flicker figure, inputs of slightly
different lengths are scored over the frames both have, and an undefined figure is null.

The model and its facesets are stubbed (they do not change how frames are read); the
scoring itself is real, with a stub face finder where a real one would cost minutes."""

from __future__ import annotations

import json
import tracemalloc
from pathlib import Path

import cv2
import numpy as np
import pytest

from intracoder.errors import UserError
from intracoder.media.video import VideoWriter
from intracoder.metrics import image_quality, scores
from intracoder.metrics.evaluate import EvaluateConfig, evaluate, summary_lines

W, H = 640, 360


def _no_nan(text: str):
    def refuse(name):
        raise ValueError(f"{name} in the JSON")

    return json.loads(text, parse_constant=refuse)


@pytest.fixture
def model(tmp_path, monkeypatch) -> Path:
    """A model folder whose loading, faceset embeddings and reconstruction are stubbed."""
    folder = tmp_path / "model"
    sides = {}
    for side in ("a", "b"):
        (tmp_path / f"faces_{side}").mkdir()
        sides[side] = {"path": str(tmp_path / f"faces_{side}"), "held_out": []}
    state = {"iteration": 7, "facesets": sides, "config": {}, "model_config": {}}
    from intracoder.training import inference

    monkeypatch.setattr(inference, "load_model", lambda path: (None, state))
    monkeypatch.setattr(scores, "faceset_embedding",
                        lambda folder, samples: np.full(128, 0.1 if "_b" in str(folder) else 0.0))
    monkeypatch.setattr(scores, "reconstruction", lambda *a: {"faces": 0})
    return folder


class _Face:
    def __init__(self, landmarks):
        self.landmarks = landmarks


class FixedFaceFinder:
    """The same 468 points in every frame: an ellipse-shaped face in the middle."""

    def __init__(self, faces: bool = True):
        rng = np.random.default_rng(0)
        angle, radius = rng.uniform(0, 2 * np.pi, 468), np.sqrt(rng.uniform(0, 1, 468))
        self.landmarks = np.stack([W / 2 + 70 * radius * np.cos(angle),
                                   H / 2 + 90 * radius * np.sin(angle),
                                   rng.uniform(-5, 5, 468)], 1)
        self.faces = faces
        self.frames_seen = 0

    def find(self, images):
        self.frames_seen += len(images)
        return [[_Face(self.landmarks)] if self.faces else [] for _ in images]


@pytest.fixture
def no_dlib(monkeypatch):
    """The dlib parts of scoring stubbed: they only add numbers, never hold frames, and
    would take most of the test's time."""
    monkeypatch.setattr(scores, "embed", lambda image, box=None: np.full(128, 0.05))
    monkeypatch.setattr(scores, "dlib_face_box", lambda image: (260, 110, 120, 140))
    monkeypatch.setattr(image_quality, "dlib5_error", lambda *a: 0.01)


def _frames(n: int, seed: int = 0):
    """Texture sliding a few pixels a frame, so neighbouring frames differ."""
    base = np.random.default_rng(seed).integers(0, 256, (H, W + 4 * n, 3), np.uint8)
    base = cv2.GaussianBlur(base, (0, 0), 2)
    for i in range(n):
        yield np.ascontiguousarray(base[:, 4 * i:4 * i + W])


def _clip(path: Path, n: int, blur: float = 0.0) -> Path:
    with VideoWriter(path, W, H, 30, preset="ultrafast", crf=23) as out:
        for f in _frames(n):
            out.write(cv2.GaussianBlur(f, (0, 0), blur) if blur else f)
    return path


def test_peak_memory_does_not_grow_with_the_clip(tmp_path, model, no_dlib):
    n = 300
    clip = _clip(tmp_path / "clip.mp4", n)
    swapped = _clip(tmp_path / "swapped.mp4", n, blur=1.5)
    frame_bytes = W * H * 3
    finder = FixedFaceFinder()
    tracemalloc.start()
    try:
        result = evaluate(EvaluateConfig(model=str(model), source=str(clip), swapped=str(swapped),
                                         json=str(tmp_path / "e.json")), finder=finder)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    print(f"peak {peak / 2**20:.1f} MiB = {peak / frame_bytes:.1f} frames over {n} frames")
    # A batch of both inputs (16 frames) and the previous pair, not the clip (600 frames).
    assert peak < 40 * frame_bytes
    assert finder.frames_seen == 2 * n and result["summary"]["frames_scored"] == n
    assert result["inputs"]["frames"] == n and result["inputs"]["note"] is None
    assert 0.0 < result["summary"]["temporal_stability"] < 1.0  # the blur smooths changes


def test_the_report_keeps_small_copies_of_a_few_frames(tmp_path, model, no_dlib):
    import intracoder.metrics.report  # noqa: F401  (importing matplotlib is not evaluating)

    n = 60
    clip = _clip(tmp_path / "clip.mp4", n)
    tracemalloc.start()
    try:
        evaluate(EvaluateConfig(model=str(model), source=str(clip), swapped=str(clip),
                                report=str(tmp_path / "report")), finder=FixedFaceFinder())
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    thumb = 256 * round(W * 256 / H) * 3
    print(f"peak {peak / 2**20:.1f} MiB with the report")
    # The working set above plus the GIF's 40 pairs at the report's size.
    assert peak < 40 * W * H * 3 + 2 * 40 * thumb
    from PIL import Image

    with Image.open(tmp_path / "report" / "side_by_side.gif") as gif:
        assert gif.n_frames == 40 and gif.size[1] == 256
    assert cv2.imread(str(tmp_path / "report" / "frames.png")).shape[0] == 512
    _no_nan((tmp_path / "report" / "evaluation.json").read_text())


def test_max_frames_scores_neighbouring_pairs_and_flicker_is_finite(tmp_path, model, finder,
                                                                     clips):
    source = clips["grace_hopper"]
    swapped = tmp_path / "swapped.mp4"
    from intracoder.media.video import iter_frames

    frames = list(iter_frames(source))  # 12 small frames
    with VideoWriter(swapped, frames[0].shape[1], frames[0].shape[0], 25, crf=18) as out:
        for f in frames:
            out.write(cv2.GaussianBlur(f, (0, 0), 1.0))
    out_json = tmp_path / "e.json"
    result = evaluate(EvaluateConfig(model=str(model), source=str(source), swapped=str(swapped),
                                     max_frames=10, json=str(out_json)), finder=finder)
    picked = [f["frame"] for f in result["frames"]]
    assert len(picked) == 10 and len(set(picked)) == 10 and picked == sorted(picked)
    assert all(f + 1 in picked or f - 1 in picked for f in picked)  # every one has a neighbour
    assert result["inputs"]["frames"] == len(frames)
    flicker = _no_nan(out_json.read_text())["summary"]["temporal_stability"]
    assert isinstance(flicker, float) and np.isfinite(flicker) and flicker > 0


def test_undefined_figures_are_null_not_nan(tmp_path, model, monkeypatch):
    """No face in any frame: identity and flicker are undefined; a held-out face rebuilt
    exactly has an infinite PSNR. None of it may reach the JSON as NaN or Infinity."""
    monkeypatch.setattr(scores, "reconstruction",
                        lambda model, folder, names, side: {"faces": 2, "ssim": 1.0,
                                                            "psnr": float("inf")})
    clip = _clip(tmp_path / "clip.mp4", 6)
    out_json = tmp_path / "e.json"
    result = evaluate(EvaluateConfig(model=str(model), source=str(clip), swapped=str(clip),
                                     json=str(out_json), report=str(tmp_path / "report")),
                      finder=FixedFaceFinder(faces=False))
    for text in (out_json.read_text(), (tmp_path / "report" / "evaluation.json").read_text()):
        summary = _no_nan(text)["summary"]
        assert summary["temporal_stability"] is None
        assert summary["identity"]["swapped"] == {"frames": 0}
        assert summary["reconstruction"]["a"]["psnr"] is None
    lines = "\n".join(summary_lines(result))
    assert "temporal stability (output/source flicker): n/a" in lines
    assert "PSNR n/a dB" in lines
    page = (tmp_path / "report" / "index.html").read_text()
    assert "<tr><td>flicker ratio</td><td>—</td>" in page and "NaN" not in page


def test_an_input_that_ends_early_is_scored_over_the_frames_both_have(tmp_path, model, no_dlib):
    source = _clip(tmp_path / "source.mp4", 12)
    swapped = _clip(tmp_path / "swapped.mp4", 11)
    result = evaluate(EvaluateConfig(model=str(model), source=str(source), swapped=str(swapped)),
                      finder=FixedFaceFinder())
    assert [f["frame"] for f in result["frames"]] == list(range(11))
    assert result["inputs"]["frames"] == 11
    note = result["inputs"]["note"]
    assert note.startswith(f"{swapped} ended after 11 frames") and "\n" not in note
    assert summary_lines(result)[0] == f"note: {note}"


def test_a_video_against_an_image_is_not_a_conversion(tmp_path, model):
    clip = _clip(tmp_path / "clip.mp4", 12)
    image = tmp_path / "frame.png"
    cv2.imwrite(str(image), next(_frames(1)))
    with pytest.raises(UserError, match="not a conversion"):
        evaluate(EvaluateConfig(model=str(model), source=str(clip), swapped=str(image)),
                 finder=FixedFaceFinder())


def test_an_image_is_one_frame(tmp_path, model, no_dlib):
    image, swapped = tmp_path / "frame.png", tmp_path / "swapped.png"
    frame = next(_frames(1))
    cv2.imwrite(str(image), frame)
    cv2.imwrite(str(swapped), cv2.GaussianBlur(frame, (0, 0), 1.0))
    result = evaluate(EvaluateConfig(model=str(model), source=str(image), swapped=str(swapped),
                                     max_frames=10), finder=FixedFaceFinder())
    assert [f["frame"] for f in result["frames"]] == [0] and result["inputs"]["frames"] == 1
    assert result["frames"][0]["sharpness_ratio"] < 1.0
    assert result["summary"]["temporal_stability"] is None  # one frame: no neighbour
