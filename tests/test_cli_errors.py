"""Bad input to extract/inspect: one clear line, a non-zero exit, nothing half-written."""

from __future__ import annotations

import subprocess
import sys

import cv2
import numpy as np
import pytest

from intracoder.cli import main


def run_cli(capsys, *argv) -> tuple[int, str]:
    code = main(list(argv))
    err = capsys.readouterr().err.strip()
    return code, err


def assert_one_line_error(code: int, err: str, *words: str) -> None:
    assert code != 0
    lines = [ln for ln in err.splitlines() if ln.startswith("intracoder: error:")]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    for w in words:
        assert w in lines[0], lines[0]


def test_missing_input(capsys, tmp_path):
    code, err = run_cli(capsys, "extract", str(tmp_path / "nope.mp4"), str(tmp_path / "out"))
    assert_one_line_error(code, err, "no such file")
    assert not (tmp_path / "out").exists()


def test_not_a_video(capsys, tmp_path):
    bad = tmp_path / "notes.mp4"
    bad.write_text("this is not a video")
    code, err = run_cli(capsys, "extract", str(bad), str(tmp_path / "out"))
    assert_one_line_error(code, err, "can be decoded")
    assert not (tmp_path / "out").exists()


def test_empty_folder(capsys, tmp_path):
    (tmp_path / "empty").mkdir()
    code, err = run_cli(capsys, "extract", str(tmp_path / "empty"), str(tmp_path / "out"))
    assert_one_line_error(code, err, "no images")


def test_out_dir_is_a_file(capsys, tmp_path, clips):
    target = tmp_path / "file.txt"
    target.write_text("x")
    code, err = run_cli(capsys, "extract", str(clips["astronaut"]), str(target))
    assert_one_line_error(code, err, "not a folder")
    assert target.read_text() == "x"


def test_video_without_faces(capsys, tmp_path):
    from intracoder.samples import write_clip

    rng = np.random.default_rng(0)
    sky = [cv2.GaussianBlur(rng.integers(0, 255, (128, 128, 3), dtype=np.uint8), (31, 31), 0)
           for _ in range(4)]
    path = tmp_path / "sky.mp4"
    write_clip(sky, path)
    code, err = run_cli(capsys, "extract", str(path), str(tmp_path / "out"))
    assert_one_line_error(code, err, "no face found")
    assert not (tmp_path / "out").exists()


def test_truncated_video(capsys, tmp_path, clips):
    data = clips["grace_hopper"].read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 2])  # faststart: the index survives, the frames don't
    code, err = run_cli(capsys, "extract", str(cut), str(tmp_path / "out"))
    assert_one_line_error(code, err, "truncated")
    leftovers = [p for p in (tmp_path / "out").iterdir() if p.name.startswith(".")]
    assert not leftovers


def test_corrupt_crop_for_inspect(capsys, tmp_path):
    bad = tmp_path / "face.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n broken")
    code, err = run_cli(capsys, "inspect", str(bad))
    assert_one_line_error(code, err, "not a readable image")


def test_inspect_json(capsys, facesets):
    import json

    code = main(["inspect", str(facesets[0])])
    summary = json.loads(capsys.readouterr().out)
    assert code == 0 and summary["count"] == 12 and summary["size"] == [128]
    assert set(summary["yaw"]) >= {"min", "median", "max"}


def test_subprocess_user_error_has_no_traceback(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "intracoder", "extract", str(tmp_path / "x.mp4"),
                           str(tmp_path / "o")], capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("intracoder: error:")
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("argv", [["--version"], ["extract", "--help"], ["inspect", "--help"]])
def test_help_and_version(argv):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 0


def test_blank_label_is_one_line_before_any_work(capsys, tmp_path, clips, quick_model):
    """Before: the label was first checked on the writer thread after the model had loaded,
    and its ValueError came out as a traceback."""
    out = tmp_path / "out.mp4"
    code, err = run_cli(capsys, "convert", "--model", str(quick_model), "--label", "  ",
                        str(clips["grace_hopper"]), str(out))
    assert_one_line_error(code, err, "--label")
    assert not out.exists()
