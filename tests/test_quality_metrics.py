"""Sharpness, blend seam and dlib 5-point expression error of `intracoder evaluate`, on the
bundled real portraits, and the HTML report that shows them."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from intracoder.metrics import image_quality as iq
from intracoder.metrics.scores import FrameScore, mesh_box, score_frames, summarise
from intracoder.samples import portrait


@pytest.fixture(scope="module")
def faces(finder):
    """(grace_hopper BGR, its 468x2 landmarks, astronaut BGR, its landmarks)."""
    g, a = portrait("grace_hopper"), portrait("astronaut")
    fg, fa = finder.find([g, a])
    assert fg and fa
    return g, fg[0].landmarks[:, :2], a, fa[0].landmarks[:, :2]


def _paste(frame: np.ndarray, content: np.ndarray, mask: np.ndarray) -> np.ndarray:
    m = mask.astype(np.float32)[..., None]
    return np.clip(content.astype(np.float32) * m + frame.astype(np.float32) * (1 - m), 0, 255
                   ).astype(np.uint8)


@pytest.fixture(scope="module")
def pastes(faces):
    """The astronaut's face, aligned on Grace Hopper's and colour-shifted, pasted over hers
    inside her (slightly eroded) face hull: with a binary mask, and with the same mask
    feathered over 15% of the face size. Returns (frame, landmarks, hard, soft, mask)."""
    g, lg, a, la = faces
    m, _ = cv2.estimateAffinePartial2D(la.astype(np.float32), lg.astype(np.float32))
    other = cv2.warpAffine(a, m, (g.shape[1], g.shape[0])).astype(np.float32)
    other = np.clip(other * (0.85, 1.0, 1.2), 0, 255)
    size = iq.face_size(lg)
    k = int(size * 0.03) * 2 + 1
    mask = cv2.erode(iq.hull_region(lg, g.shape).astype(np.uint8),
                     cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k))).astype(np.float32)
    soft = cv2.GaussianBlur(mask, (0, 0), 0.15 * size / 3)
    return g, lg, _paste(g, other, mask), _paste(g, other, soft), mask > 0.5


def _jpeg(img: np.ndarray, quality: int = 90) -> np.ndarray:
    return cv2.imdecode(cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, quality])[1], 1)


def test_sharpness_ranks_sharp_above_blurred(faces):
    g, lg, _, _ = faces
    box = mesh_box(lg)
    x, y, w, h = (int(round(v)) for v in box)
    blurred = g.copy()
    blurred[y:y + h, x:x + w] = cv2.GaussianBlur(g[y:y + h, x:x + w], (0, 0), 2.5)
    lightly = g.copy()
    lightly[y:y + h, x:x + w] = cv2.GaussianBlur(g[y:y + h, x:x + w], (0, 0), 0.8)
    sharp = iq.sharpness(g, box)
    assert sharp > 0
    assert iq.sharpness(g.copy(), box) / sharp == pytest.approx(1.0)
    ratio_light, ratio_blur = iq.sharpness(lightly, box) / sharp, iq.sharpness(blurred, box) / sharp
    assert ratio_blur < ratio_light < 0.9
    assert ratio_blur < 0.2
    # Only the box counts: blurring outside the face leaves the ratio at 1.
    outside = cv2.GaussianBlur(g, (0, 0), 3)
    outside[y:y + h, x:x + w] = g[y:y + h, x:x + w]
    assert iq.sharpness(outside, box) == pytest.approx(sharp)
    assert iq.sharpness(g, (-50, -50, 10, 10)) is None


def test_seam_finds_the_pasted_region(pastes):
    g, lg, hard, _, mask = pastes
    region = iq.paste_region(g, hard, lg)
    iou = (region & mask).sum() / (region | mask).sum()
    assert iou > 0.85
    # Nothing pasted: the face hull is the boundary.
    assert (iq.paste_region(g, g.copy(), lg) == iq.hull_region(lg, g.shape)).all()


def test_seam_ranks_hard_edge_above_feathered(pastes):
    g, lg, hard, soft, _ = pastes
    s_hard, s_soft = iq.seam_score(g, hard, lg), iq.seam_score(g, soft, lg)
    assert s_hard > 1.4
    assert s_soft < 1.15
    assert s_hard > s_soft + 0.3
    # The same holds after a codec pass over the swapped frame.
    assert iq.seam_score(g, _jpeg(hard), lg) > iq.seam_score(g, _jpeg(soft), lg) + 0.3


def test_seam_of_an_untouched_frame_is_one(faces):
    g, lg, a, la = faces
    assert iq.seam_score(g, g.copy(), lg) == pytest.approx(1.0)
    assert iq.seam_score(a, a.copy(), la) == pytest.approx(1.0)
    # Codec noise alone adds no seam.
    assert iq.seam_score(g, _jpeg(g, 80), lg) == pytest.approx(1.0, abs=0.05)
    noisy = np.clip(g + np.random.default_rng(0).normal(0, 2, g.shape), 0, 255).astype(np.uint8)
    assert iq.seam_score(g, noisy, lg) == pytest.approx(1.0, abs=0.05)


def test_five_point_error_is_relative_to_the_eye_distance():
    src = np.array([[0, 0], [10, 0], [40, 0], [50, 0], [25, 20]], float)  # eye centres 40 apart
    assert iq.inter_ocular_5(src) == pytest.approx(40.0)
    assert iq.five_point_error(src, src) == 0.0
    assert iq.five_point_error(src, src + (4, 0)) == pytest.approx(0.1)


def _warp(img: np.ndarray, centre, angle: float, shift) -> np.ndarray:
    m = cv2.getRotationMatrix2D(tuple(float(c) for c in centre), angle, 1.0)
    m[:, 2] += shift
    return cv2.warpAffine(img, m, (img.shape[1], img.shape[0]), borderMode=cv2.BORDER_REFLECT)


def test_dlib5_error_grows_when_the_face_moves(faces, finder):
    g, lg, _, _ = faces
    box = mesh_box(lg)
    assert iq.dlib5_error(g, g.copy(), box, box) == pytest.approx(0.0, abs=1e-9)
    centre = lg.mean(0)
    moved = [_warp(g, centre, 0, (6, 4)), _warp(g, centre, 0, (18, 12)), _warp(g, centre, 12, (0, 0))]
    boxes = [mesh_box(f[0].landmarks[:, :2]) for f in finder.find(moved)]
    small, large, rotated = (iq.dlib5_error(g, m, box, b) for m, b in zip(moved, boxes))
    assert 0.03 < small < large
    assert large > 0.2
    assert rotated > 0.05


def test_score_frames_and_summary_carry_the_new_figures(pastes, finder):
    g, _, hard, _, _ = pastes
    box = mesh_box(finder.find([g])[0][0].landmarks[:, :2])
    x, y, w, h = (int(round(v)) for v in box)
    blurred = g.copy()
    blurred[y:y + h, x:x + w] = cv2.GaussianBlur(g[y:y + h, x:x + w], (0, 0), 2.5)
    zeros = np.zeros(128)
    frame_scores, _ = score_frames(finder, [g, g, g], [g.copy(), hard, blurred], [0, 1, 2], zeros, zeros)
    same, pasted, blur = frame_scores
    assert same.sharpness_ratio == pytest.approx(1.0) and same.seam_score == pytest.approx(1.0)
    assert same.dlib5_error == pytest.approx(0.0, abs=1e-9)
    assert pasted.seam_score > 1.4 and pasted.dlib5_error is not None
    assert blur.sharpness_ratio < 0.2
    assert same.sharpness_dlib_swapped == pytest.approx(same.sharpness_dlib_source)
    assert blur.sharpness_dlib_swapped < 0.5 * blur.sharpness_dlib_source  # box reaches past the blur
    summary = summarise(frame_scores, 1.0)
    total = sum(s.sharpness_swapped for s in frame_scores) / sum(s.sharpness_source for s in frame_scores)
    assert summary["sharpness_ratio"] == pytest.approx(total)
    inner = summary["sharpness_ratio_dlib_box"]
    assert inner is not None and inner < 1.0
    assert summary["seam_score"] == pytest.approx(np.mean([s.seam_score for s in frame_scores]))
    # Blurring keeps the mean colour; a pasted face of another colour does not.
    assert same.colour_error == pytest.approx(0.0, abs=1e-6) and blur.colour_error < 0.5
    assert pasted.colour_error > 5 and summary["colour_error_lab"] == pytest.approx(
        np.mean([s.colour_error for s in frame_scores]))
    assert summary["expression"]["dlib5_error_iod"] == pytest.approx(
        np.mean([s.dlib5_error for s in frame_scores]))
    assert summarise([FrameScore(frame=0, swapped_found=False)], 1.0)["sharpness_ratio"] is None


def _result(n: int) -> dict:
    frames = [{"frame": i, "swapped_found": True, "dist_b": 0.5, "dist_a": 0.7, "source_dist_b": 0.8,
               "source_dist_a": 0.3, "landmark_error": 0.05, "yaw_diff": 1.0, "pitch_diff": 2.0,
               "roll_diff": 0.5, "dlib5_error": 0.04 + 0.01 * i, "sharpness_source": 100.0,
               "sharpness_swapped": 40.0, "sharpness_ratio": 0.4, "seam_score": 1.1 if i else None}
              for i in range(n)]
    ident = {"frames": n, "mean_distance_to_target": 0.5, "mean_distance_to_source": 0.7,
             "share_under_threshold": 1.0, "retrieval": 1.0}
    return {"schema": 1, "direction": "a2b",
            "model": {"path": "/models/<x>", "iteration": 1000, "config": {}, "model_config": {}},
            "inputs": {"source": "src.mp4", "swapped": "out.mp4", "frames": n, "frames_scored": n},
            "summary": {"frames_scored": n, "frames_with_swapped_face": n,
                        "identity": {"swapped": ident, "source_baseline": dict(ident, retrieval=0.0)},
                        "expression": {"landmark_error_iod": 0.05, "yaw_diff_deg": 1.0,
                                       "pitch_diff_deg": 2.0, "roll_diff_deg": 0.5,
                                       "dlib5_error_iod": 0.043},
                        "sharpness_ratio": 0.4, "seam_score": 1.07, "temporal_stability": 1.3,
                        "reconstruction": {"a": {"faces": 3, "ssim": 0.61, "psnr": 21.5},
                                           "b": {"faces": 0}}},
            "frames": frames}


def test_report_reads_as_a_report(tmp_path, faces):
    from PIL import Image

    from intracoder.metrics.evaluate import summary_lines
    from intracoder.metrics.report import write_report

    g = cv2.resize(faces[0], (128, 150))
    source = [np.roll(g, 3 * i, axis=1) for i in range(5)]
    swapped = [cv2.GaussianBlur(f, (0, 0), 2) for f in source]
    result = _result(5)
    page = write_report(tmp_path / "report", result, source, swapped).read_text()
    assert "<table>" in page and "side_by_side.gif" in page
    for name in ("identity distance to target", "identity distance to source", "share under 0.6",
                 "retrieval", "468-pt expression error", "dlib 5-pt expression error",
                 "yaw / pitch / roll diffs", "sharpness ratio", "seam score", "flicker ratio",
                 "held-out reconstruction, decoder A", "frames scored"):
        assert f"<tr><td>{name}</td>" in page, name
    assert "<td>lower is better; under 0.6 = same person</td>" in page
    assert "<td>0.40</td>" in page and "<td>1.07</td>" in page  # sharpness, seam
    assert "decoder B" not in page  # no held-out faces: no row
    assert "synthetic (face-swapped) media" in page
    assert "<details>" in page and page.index("<details>") > page.index("<table>")
    assert "/models/&lt;x&gt;" in page and "http" not in page
    raw = page[page.index("<pre>") + 5:page.index("</pre>")]
    assert json.loads(raw.replace("&quot;", '"'))["seam_score"] == 1.07
    with Image.open(tmp_path / "report" / "side_by_side.gif") as gif:
        assert gif.n_frames == 5 and gif.size[1] == 256 and gif.size[0] > 256
    for name in ("identity.png", "landmarks.png", "quality.png", "frames.png"):
        assert (tmp_path / "report" / name).stat().st_size > 0
    assert not [p for p in (tmp_path / "report").iterdir() if ".tmp-" in p.name]
    lines = "\n".join(summary_lines(result))
    assert "sharpness (swapped/source Laplacian variance): 0.40" in lines
    assert "seam (edge added at the blend boundary, 1 = none): 1.07" in lines
    assert "0.043 IOD (dlib 5-pt)" in lines


def test_side_by_side_gif_keeps_at_most_40_frames(tmp_path):
    from PIL import Image

    from intracoder.metrics.report import side_by_side_gif

    frames = [np.full((90, 120, 3), i * 4, np.uint8) for i in range(60)]
    side_by_side_gif(frames, frames, tmp_path / "a.gif")
    with Image.open(tmp_path / "a.gif") as gif:
        assert gif.n_frames == 40 and gif.size == (2 * round(120 * 256 / 90), 256)
