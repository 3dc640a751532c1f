"""The one-command demo, end to end with a small budget, and evaluate on its output."""

from __future__ import annotations

import json

import cv2
import pytest

from intracoder.cli import main
from intracoder.errors import UserError
from intracoder.media import video
from intracoder.metrics.evaluate import EvaluateConfig, evaluate


@pytest.fixture(scope="module")
def demo_out(tmp_path_factory, finder):
    from intracoder.demo import DemoConfig, run_demo

    out = tmp_path_factory.mktemp("demo") / "out"
    # A fixed amount of work, not of time: on a slow or busy machine 1.5 minutes left too
    # few iterations for the identity test below. 600 at quick's batch of 4 take the time
    # 300 at 8 took, and swap further (see below).
    # float32 on every CPU: the figures below were measured in float32, and a CPU with bf16
    # would train in bf16 under auto and land elsewhere (issue 30: 0.613 from B, not 0.546).
    run_demo(DemoConfig(out=str(out), iterations=600, frames=16, mixed_precision="off"))
    return out


def test_demo_writes_every_output(demo_out):
    for name in ("source.mp4", "swapped.mp4", "preview.png", "loss.png", "evaluation.json",
                 "report/index.html", "report/identity.png", "report/landmarks.png",
                 "report/frames.png", "report/side_by_side.gif"):
        assert (demo_out / name).stat().st_size > 0, name
    assert (demo_out / "report" / "side_by_side.gif").read_bytes()[:6] in (b"GIF87a", b"GIF89a")
    assert "<table>" in (demo_out / "report" / "index.html").read_text(encoding="utf-8")
    # Decoded and drawn, not just written: a blank image has a std of 0, the demo's measure
    # 30 (the loss plot) to 70 (preview, frames strip).
    for name in ("preview.png", "loss.png", "report/frames.png"):
        image = cv2.imread(str(demo_out / name))
        assert image is not None and image.std() > 8, (name, None if image is None
                                                       else image.std())
    source, swapped = video.probe(demo_out / "source.mp4"), video.probe(demo_out / "swapped.mp4")
    assert (swapped.width, swapped.height, swapped.frame_count) == \
        (source.width, source.height, source.frame_count) == (256, 256, 16)


def test_demo_output_is_marked_synthetic(demo_out, capsys):
    assert main(["verify", str(demo_out / "swapped.mp4")]) == 0
    assert main(["verify", str(demo_out / "source.mp4")]) == 1
    capsys.readouterr()


def test_swap_moves_identity_towards_b(demo_out):
    summary = json.loads((demo_out / "evaluation.json").read_text())["summary"]
    swapped = summary["identity"]["swapped"]
    source = summary["identity"]["source_baseline"]
    assert swapped["frames"] >= 8
    assert swapped["mean_distance_to_target"] < source["mean_distance_to_target"]
    # retrieval: the share of faces closer to B's faceset than to A's; under threshold: the
    # share within dlib's same-person distance (0.6) of B. The untouched source is A, so
    # 0.09 from A and 0.65-0.69 from B on every frame: 0 and 0. On a CPU without bf16, 600
    # iterations at batch 4 swapped to 0.546 from B: 0.94 and 1.0; 300 at batch 8 reached
    # only 0.59 (0.45-0.73 under 0.6: the watermark, which carries the model's creation
    # time, moves a frame's distance by about 0.01). Half the frames is the margin.
    assert swapped["retrieval"] > source["retrieval"] + 0.5, (swapped, source)
    assert swapped["share_under_threshold"] > source["share_under_threshold"] + 0.5, \
        (swapped, source)


def test_evaluation_schema_and_repeatability(demo_out, finder):
    first = json.loads((demo_out / "evaluation.json").read_text())
    assert first["schema"] == 1
    assert set(first) >= {"direction", "model", "inputs", "summary", "frames"}
    assert first["model"]["iteration"] > 0 and first["model"]["config"]["preset"] == "quick"
    assert set(first["summary"]) >= {"identity", "expression", "temporal_stability",
                                      "reconstruction", "frames_scored"}
    assert set(first["frames"][0]) >= {"frame", "dist_b", "dist_a", "landmark_error",
                                        "yaw_diff", "pitch_diff", "roll_diff"}
    assert first["summary"]["reconstruction"]["b"]["faces"] > 0
    again = evaluate(EvaluateConfig(model=str(demo_out / "model"), source=str(demo_out / "source.mp4"),
                                    swapped=str(demo_out / "swapped.mp4")), finder=finder)
    assert again["summary"] == first["summary"]
    assert again["frames"] == first["frames"]


def test_evaluate_rejects_a_video_that_is_not_a_conversion(demo_out, finder):
    with pytest.raises(UserError, match="not a conversion"):
        evaluate(EvaluateConfig(model=str(demo_out / "model"), source=str(demo_out / "source.mp4"),
                                swapped=str(demo_out / "report" / "frames.png")),
                 finder=finder)


def test_evaluate_without_model_is_one_line(capsys, tmp_path):
    code = main(["evaluate", "--model", str(tmp_path / "none"), "--source", str(tmp_path / "x.mp4")])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("intracoder: error:") and "Traceback" not in err
