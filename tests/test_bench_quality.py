"""bench/quality.py's pure parts: cache key, row formatting, argument splitting, sheet frames.
No training, no video: fast."""

from __future__ import annotations

import importlib
import os

import pytest
from conftest import load_bench


@pytest.fixture(scope="module")
def q():
    """The script, loaded by path as the tests do not run it."""
    return load_bench("quality")


@pytest.fixture(scope="module")
def stages(q):
    """bench/quality_stages.py, importable once the script put bench/ on sys.path."""
    return importlib.import_module("quality_stages")


@pytest.fixture(scope="module")
def rows(q):
    return importlib.import_module("quality_row")


@pytest.fixture(scope="module")
def sheet(q):
    return importlib.import_module("quality_sheet")


def test_cache_key_follows_options_and_file(stages, tmp_path):
    clip = tmp_path / "person_x.mp4"
    clip.write_bytes(b"0" * 100)
    os.utime(clip, ns=(1_000_000_000, 1_000_000_000))
    key = stages.cache_key(clip, 256, True, [])
    assert key == stages.cache_key(clip, 256, True, [])  # stable
    assert key.startswith("person-x-s256-largest-")
    others = {stages.cache_key(clip, 128, True, []), stages.cache_key(clip, 256, False, []),
              stages.cache_key(clip, 256, True, ["--face-type", "whole"])}
    assert key not in others and len(others) == 3
    os.utime(clip, ns=(2_000_000_000, 2_000_000_000))  # touched: new folder
    assert stages.cache_key(clip, 256, True, []) != key
    os.utime(clip, ns=(1_000_000_000, 1_000_000_000))
    assert stages.cache_key(clip, 256, True, []) == key
    clip.write_bytes(b"0" * 101)  # another size, same mtime
    os.utime(clip, ns=(1_000_000_000, 1_000_000_000))
    assert stages.cache_key(clip, 256, True, []) != key


def test_cache_ready_needs_index_and_mark(stages, tmp_path):
    assert not stages.cache_ready(tmp_path)
    (tmp_path / "faces.json").write_text("{}")
    assert not stages.cache_ready(tmp_path)  # an interrupted extraction also has faces.json
    (tmp_path / stages.CACHE_MARK).write_text("{}")
    assert stages.cache_ready(tmp_path)


def test_row_dashes_for_missing_keys_numbers_for_present(rows):
    summary = {"identity": {"swapped": {"mean_distance_to_target": 0.51234,
                                        "share_under_threshold": 0.75, "retrieval": 1.0}},
               "expression": {"landmark_error_iod": 0.0812},
               "temporal_stability": 1.234}
    state = {"iteration": 1234, "train_seconds": 899.6}
    cells = rows.row_values("quick-lr", "--minutes 15 --preset quick", state, summary)
    row = dict(zip(rows.row_header(), cells))
    assert row["iterations"] == "1234" and row["train s"] == "900"
    assert row["id dist"] == "0.512" and row["<0.6"] == "75%" and row["retrieval"] == "100%"
    assert row["expr 468"] == "0.081" and row["flicker"] == "1.23"
    assert row["expr dlib5"] == row["sharpness"] == row["seam"] == "-"
    # the keys another engineer is adding show up as soon as evaluate writes them
    summary["expression"]["dlib5_error_iod"] = 0.0456
    summary["sharpness_ratio"] = 0.876
    summary["seam_score"] = 3.21
    row = dict(zip(rows.row_header(), rows.row_values("n", "", state, summary)))
    assert (row["expr dlib5"], row["sharpness"], row["seam"]) == ("0.046", "0.88", "3.21")
    assert row["train args"] == "(defaults)"
    # nothing at all: every number is '-'
    empty = rows.row_values("n", "x", None, None)
    assert empty[2:] == ["-"] * (len(rows.row_header()) - 2)
    assert rows.fmt(float("nan"), "{:.2f}") == "nan"


def test_markdown_and_human_row(rows):
    cells = rows.row_values("a|b", "--preset quick", {"iteration": 7}, {})
    md = rows.markdown_row(cells)
    assert md.startswith("| a\\|b | --preset quick | 7 |") and md.endswith(" |")
    assert md.count(" | ") == len(cells) - 1  # the escaped pipe has no spaces around it
    assert rows.markdown_row(rows.row_header()).count("|") == len(cells) + 1
    line = rows.human_row(cells)
    assert line.startswith("a|b [--preset quick]: iterations 7,") and "seam -" in line


def test_passthrough_splitting(q):
    args, train = q.parse_args(["--minutes", "15", "--", "--preset", "quick", "--lr", "5e-4"])
    assert args.minutes == 15 and train == ["--preset", "quick", "--lr", "5e-4"]
    # unknown arguments before -- pass through too, in order, and -- can carry our names
    args, train = q.parse_args(["--preset", "quick", "--frames", "6", "--", "--frames-x", "1"])
    assert args.frames == 6 and train == ["--preset", "quick", "--frames-x", "1"]
    args, train = q.parse_args(["--train-args=--preset quick --flip", "--lr", "1e-4"])
    assert train == ["--preset", "quick", "--flip", "--lr", "1e-4"]
    # no abbreviations: --min is train's business, not --minutes
    args, train = q.parse_args(["--min", "3"])
    assert args.minutes == 15.0 and train == ["--min", "3"]
    args, train = q.parse_args([])
    assert train == [] and args.pair == "b2a" and args.frames == 40 and args.size == 256
    assert args.largest is True
    assert q.split_passthrough(["--name", "x", "--", "--", "y"]) == (["--name", "x"], ["--", "y"])


def test_slug(rows):
    assert rows.slug(["--preset", "quick", "--lr", "5e-4"]) == "preset-quick_lr-5e-4"
    assert rows.slug(["--flip", "--rotation=-10", "--eyes-mouth-priority"]) == \
        "flip_rotation--10_eyes-mouth-priority"
    assert rows.slug(["--scale", "-0.05"]) == "scale--0.05"
    assert rows.slug([]) == "defaults"
    assert "/" not in rows.slug(["--a", "x/y"])


def test_sheet_frames(sheet):
    assert sheet.sheet_frames(200, None) == [0, 28, 57, 85, 114, 142, 171, 199]
    picks = sheet.sheet_frames(1000, None)
    assert len(picks) == 8 and picks[0] == 0 and picks[-1] == 999
    assert sheet.sheet_frames(5, None) == [0, 1, 2, 3, 4]
    assert sheet.sheet_frames(0, None) == []
    assert sheet.sheet_frames(200, "20,114, 3") == [20, 114, 3]  # honoured as given
    assert sheet.sheet_frames(200, "20,20,199,200,500") == [20, 199]  # past the end: left out
    assert sheet.sheet_frames(200, "300,400") == sheet.sheet_frames(200, None)  # none inside: default
    with pytest.raises(sheet.QualityError):
        sheet.sheet_frames(200, "1,x")
    with pytest.raises(sheet.QualityError):
        sheet.sheet_frames(200, "-1,5")


def test_box_for_clips_to_the_frame(sheet, rows):
    assert sheet.box_for({}, 3, (512, 512)) == (102, 102, 307)  # centre crop: 60% of the side
    x, y, s = sheet.box_for({3: (400.0, 10.0, 200.0, 100.0)}, 3, (512, 640))
    assert s == 230 and x + s <= 640 and y == 0
    assert rows.strict_json({"a": [float("nan"), 1.5], "b": float("inf")}) == {"a": [None, 1.5],
                                                                            "b": None}


def _cli_like():
    """intracoder's parser shape (subcommands with options) without importing its configs,
    which load Keras."""
    import argparse

    parser = argparse.ArgumentParser(prog="intracoder")
    sub = parser.add_subparsers(dest="command")
    train = sub.add_parser("train")
    for flag in ("--a", "--b", "--model"):
        train.add_argument(flag)
    train.add_argument("--preset", choices=["quick", "df128", "df256"])
    train.add_argument("--lr", type=float)
    train.add_argument("--preview-every", type=int)
    convert = sub.add_parser("convert")
    convert.add_argument("input")
    convert.add_argument("output")
    convert.add_argument("--color")
    return parser


def test_stage_args_checked_up_front(q):
    check = q.check_stage_args
    check("train", ["--preset", "quick", "--lr", "5e-4", "--preview-every", "0"],
          build_parser=_cli_like)
    check("train", [], build_parser=lambda: 1 / 0)  # nothing to check: no parser built
    with pytest.raises(q.QualityError, match="not an option of intracoder train: --presett"):
        check("train", ["--presett", "quick"], build_parser=_cli_like)
    with pytest.raises(q.QualityError, match="invalid float"):
        check("train", ["--lr", "fast"], build_parser=_cli_like)
    with pytest.raises(q.QualityError, match="set by this script"):
        check("train", ["--model=x"], ("--model",), build_parser=_cli_like)
    check("convert", ["--color", "lct"], build_parser=_cli_like)
