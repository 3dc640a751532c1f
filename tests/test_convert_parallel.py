"""A video converted in parts over worker processes (and Ray when it is installed): the same
frames, rate, size and audio as one worker, resumable part by part, and a folder of videos
converted with one broken among them."""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess

import av
import numpy as np
import pytest

from intracoder.cli import main
from intracoder.convert.pipeline import ConvertConfig, convert
from intracoder.convert.segments import WorkFolder, plan_segments
from intracoder.convert.workers import FAULT_ENV
from intracoder.errors import UserError
from intracoder.media import video
from intracoder.provenance import watermark
from intracoder.provenance.verify import verify_file
from intracoder.samples import render_clip

N, FPS = 30, 25


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """30 frames of a talking portrait, with a 2 s tone (longer than the video)."""
    folder = tmp_path_factory.mktemp("parallel_in")
    tone = folder / "tone.m4a"
    subprocess.run([video.ffmpeg_exe(), "-loglevel", "error", "-f", "lavfi", "-i",
                    "sine=frequency=440:duration=2", "-c:a", "aac", str(tone)], check=True)
    path = folder / "talking.mp4"
    with video.VideoWriter(path, 256, 256, FPS, audio_from=tone) as writer:
        for frame in render_clip("grace_hopper", n_frames=N, size=256, seed=5,
                                 max_angle=8).frames:
            writer.write(frame)
    return path


def _run(quick_model, src, out, **kw):
    return convert(ConvertConfig(input=str(src), output=str(out), model=str(quick_model),
                                 crf=0, segment_frames=10, **kw))


@pytest.fixture(scope="module")
def one_worker(quick_model, clip, tmp_path_factory):
    out = tmp_path_factory.mktemp("one") / "one.mp4"
    _run(quick_model, clip, out, workers=1)
    return out


def _audio_seconds(path) -> float:
    with av.open(str(path)) as c:
        s = c.streams.audio[0]
        return float(s.duration * s.time_base)


def test_the_plan_covers_every_frame_once_and_warms_up_on_detector_frames():
    keys = [(0, 0), (10, 5120), (20, 10240)]
    parts = plan_segments(3, 30, 10, 2, 8, keys)
    assert [(p.start, p.end) for p in parts] == [(3, 12), (12, 21), (21, 30)]
    for p in parts[1:]:
        assert p.warm_from <= p.start - 8 and (p.warm_from - 3) % 8 == 0
        assert p.seek[0] <= p.warm_from
    assert parts[0].warm_from == 3


@pytest.fixture(scope="module")
def two_workers(quick_model, clip, tmp_path_factory):
    out = tmp_path_factory.mktemp("two") / "two.mp4"
    return out, _run(quick_model, clip, out, workers=2)


def test_two_workers_give_the_one_worker_output(two_workers, one_worker):
    out, summary = two_workers
    assert (summary.parts, summary.parts_converted, summary.frames) == (3, 3, N)
    one, two = video.probe(one_worker), video.probe(out)
    assert (two.width, two.height, two.fps_fraction, two.frame_count) == \
        (one.width, one.height, one.fps_fraction, one.frame_count) == (256, 256, "25/1", N)
    assert two.has_audio and _audio_seconds(out) == pytest.approx(_audio_seconds(one_worker),
                                                                  abs=1e-3)
    # Losslessly encoded, the parts' frames are the single run's: each part is tracked from
    # two detector intervals before its first frame, on the same detector frames, so the
    # landmarks arrive where the single run has them (measured: identical on this clip).
    # The tolerance allows what a boundary may still move: a fraction of a pixel of
    # landmark smoothing (PSNR well above what any visible change would give).
    for a, b in zip(video.iter_frames(one_worker), video.iter_frames(out)):
        mse = np.mean((a.astype(float) - b.astype(float)) ** 2)
        assert mse == 0 or 10 * np.log10(255 ** 2 / mse) > 45
    assert not WorkFolder(out).path.exists(), "the work folder is removed once joined"


def test_every_frame_and_the_joined_file_carry_the_marks(two_workers):
    out, _ = two_workers
    found = [watermark.detect(f).found for f in video.iter_frames(out)]
    assert all(found), f"{found.count(False)} frames without the mark"
    result = verify_file(out)
    assert result.metadata_found and result.xmp_found and result.watermark_found


def test_a_killed_worker_is_resumed_with_only_the_missing_parts(quick_model, clip, one_worker,
                                                                tmp_path, monkeypatch):
    out = tmp_path / "resumed.mp4"
    # The worker converting the last part dies part-way; it starts only once one of the two
    # before it is done, so at least that one is kept (the other may be lost with the pool).
    monkeypatch.setenv(FAULT_ENV, "2")
    with pytest.raises(UserError, match="worker stopped"):
        _run(quick_model, clip, out, workers=2)
    assert not out.exists()
    work = WorkFolder(out)
    kept = sorted(p.name for p in work.path.glob("part_*.json"))
    assert "part_0002.json" not in kept and kept, kept
    monkeypatch.delenv(FAULT_ENV)
    summary = _run(quick_model, clip, out, workers=2)
    assert summary.parts_converted == 3 - len(kept)
    for a, b in zip(video.iter_frames(one_worker), video.iter_frames(out)):
        assert np.array_equal(a, b)


def test_a_changed_option_starts_the_parts_again(quick_model, clip, tmp_path, monkeypatch):
    out = tmp_path / "o.mp4"
    monkeypatch.setenv(FAULT_ENV, "2")
    with pytest.raises(UserError):
        _run(quick_model, clip, out, workers=2)
    monkeypatch.delenv(FAULT_ENV)
    summary = _run(quick_model, clip, out, workers=2, erode=4.0)  # another pixel result
    assert summary.parts_converted == 3


def test_a_folder_of_videos_with_a_broken_one(quick_model, clip, tmp_path, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(clip, folder / "first.mp4")
    shutil.copy(clip, folder / "second.mov")
    (folder / "broken.mp4").write_bytes(b"not a video at all")
    out = tmp_path / "out"
    code = main(["convert", "--model", str(quick_model), "--workers", "1", str(folder),
                 str(out)])
    err = capsys.readouterr().err
    assert code == 1  # not all succeeded
    assert sorted(p.name for p in out.iterdir()) == ["first.mp4", "second.mov"]
    lines = [ln for ln in err.splitlines() if ln.startswith("intracoder: error:")]
    assert len(lines) == 1 and "broken.mp4" in lines[0] and "Traceback" not in err
    for name in ("first.mp4", "second.mov"):
        assert video.probe(out / name).frame_count == N


def test_cluster_without_ray_is_one_line_before_any_work(quick_model, clip, tmp_path,
                                                         monkeypatch, capsys):
    import sys

    monkeypatch.setitem(sys.modules, "ray", None)  # import ray now raises ImportError
    out = tmp_path / "o.mp4"
    code = main(["convert", "--model", str(quick_model), "--cluster", "local", str(clip),
                 str(out)])
    err = capsys.readouterr().err
    assert code == 2 and "intracoder[cluster]" in err and len(err.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="ray is not installed")
def test_a_local_ray_cluster_gives_the_one_worker_output(quick_model, clip, one_worker,
                                                         tmp_path):
    out = tmp_path / "ray.mp4"
    summary = _run(quick_model, clip, out, cluster="local", workers=2)
    assert summary.parts_converted == 3
    assert video.probe(out).frame_count == N and video.probe(out).has_audio
    for a, b in zip(video.iter_frames(one_worker), video.iter_frames(out)):
        assert np.array_equal(a, b)
    assert json.loads(json.dumps(verify_file(out).to_dict()))["marked"]
