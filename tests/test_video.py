"""Video in and out through the bundled ffmpeg: exact frame count and rate, audio carried
over, quality, atomic writes; labelled still images."""

import subprocess

import cv2
import numpy as np
import pytest

from intracoder.atomic import temp_name
from intracoder.errors import UserError
from intracoder.media import image, video
from intracoder.samples import render_clip

N_FRAMES, FPS = 24, "30000/1001"


def _psnr(a, b):
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return 10 * np.log10(255.0 ** 2 / mse)


@pytest.fixture(scope="module")
def clip():
    # Not square (256 wide, 160 high), so a swapped width/height cannot pass unnoticed.
    frames = render_clip("grace_hopper", n_frames=N_FRAMES, size=256).frames
    return [np.ascontiguousarray(f[48:208]) for f in frames]


@pytest.fixture(scope="module")
def source(tmp_path_factory, clip):
    """A rendered talking-head clip with a 1 s, 440 Hz sine track (longer than the video)."""
    folder = tmp_path_factory.mktemp("video")
    silent, with_audio = folder / "silent.mp4", folder / "source.mp4"
    with video.VideoWriter(silent, 256, 160, FPS, metadata={"intracoder": "made by a test"}) as w:
        for f in clip:
            w.write(f)
    subprocess.run([video.ffmpeg_exe(), "-loglevel", "error", "-y", "-i", str(silent),
                    "-f", "lavfi", "-i", "sine=frequency=440:duration=1", "-map", "0:v",
                    "-map", "1:a", "-c:v", "copy", "-c:a", "aac", str(with_audio)], check=True)
    return silent, with_audio


def test_probe_reports_what_was_written(source):
    info = video.probe(source[0])
    assert (info.width, info.height) == (256, 160)
    assert info.fps_fraction == FPS and info.fps == pytest.approx(30000 / 1001)
    assert info.frame_count == N_FRAMES
    assert not info.has_audio and info.rotation == 0
    assert info.metadata.get("intracoder") == "made by a test"
    assert video.probe(source[1]).has_audio


def test_round_trip_keeps_frames_rate_size_and_audio(source, tmp_path):
    src_info = video.probe(source[1])
    frames = list(video.iter_frames(source[1]))
    assert len(frames) == src_info.frame_count == N_FRAMES
    out = tmp_path / "swapped.mp4"
    with video.VideoWriter(out, src_info.width, src_info.height, src_info.fps_fraction,
                           audio_from=source[1], metadata={"comment": "swap"}) as w:
        for f in frames:
            w.write(f)
    info = video.probe(out)
    assert (info.width, info.height, info.fps_fraction) == (256, 160, FPS)
    assert info.has_audio and info.audio_codec == "aac"  # copied, not re-encoded
    assert info.duration == pytest.approx(1.0, abs=0.05)  # no -shortest cutting the audio
    again = list(video.iter_frames(out))
    assert len(again) == info.frame_count == N_FRAMES
    # One more generation costs little: measured about 36.7 dB.
    assert np.mean([_psnr(a, b) for a, b in zip(frames, again)]) > 35
    assert list(tmp_path.iterdir()) == [out]


def test_quality_and_no_colour_shift(source, clip, tmp_path):
    decoded = list(video.iter_frames(source[0]))
    # crf 18 on yuv420p measures 32.7 dB on these small, busy renders (flag stripes, braid),
    # and 4:2:0 chroma alone caps them at 39.3 dB (crf 0 below): 40 dB at crf 18 is not
    # realistic for them. x264 output varies a little with the thread count, hence margins.
    assert np.mean([_psnr(a, b) for a, b in zip(decoded, clip)]) > 31.5
    # Every channel's mean survives: the default swscale rounding would shift it 1-2 levels.
    bias = np.mean([a.astype(float).mean((0, 1)) - b.astype(float).mean((0, 1))
                    for a, b in zip(decoded, clip)], axis=0)
    assert np.abs(bias).max() < 0.4
    lossless = tmp_path / "crf0.mp4"
    with video.VideoWriter(lossless, 256, 160, 25, crf=0) as w:
        for f in clip[:6]:
            w.write(f)
    assert np.mean([_psnr(a, b) for a, b in zip(video.iter_frames(lossless), clip)]) > 38


def test_iter_frames_range(source):
    every = list(video.iter_frames(source[0]))
    part = list(video.iter_frames(source[0], start=5, end=9))
    assert len(part) == 4 and all(np.array_equal(a, b) for a, b in zip(part, every[5:9]))
    assert len(list(video.iter_frames(source[0], start=20))) == N_FRAMES - 20
    assert list(video.iter_frames(source[0], start=7, end=7)) == []
    part[0][:] = 0  # frames are writable


def test_rotation_is_reported_and_applied(source, tmp_path):
    rotated = tmp_path / "phone.mp4"
    subprocess.run([video.ffmpeg_exe(), "-loglevel", "error", "-y", "-display_rotation", "90",
                    "-i", str(source[0]), "-c", "copy", str(rotated)], check=True)
    info = video.probe(rotated)
    assert (info.width, info.height, info.rotation) == (160, 256, 90)
    upright = next(video.iter_frames(rotated))
    plain = next(video.iter_frames(source[0]))
    assert upright.shape == (256, 160, 3)
    assert np.abs(upright.astype(int) - np.rot90(plain, 1)).mean() < 1.0
    assert np.abs(upright.astype(int) - np.rot90(plain, -1)).mean() > 20


def test_interrupted_writer_leaves_nothing(clip, tmp_path):
    out = tmp_path / "out.mp4"
    with pytest.raises(KeyboardInterrupt):
        with video.VideoWriter(out, 256, 160, FPS) as w:
            for f in clip * 3:  # past x264's lookahead, so packets reach the file
                w.write(f)
            assert temp_name(out).exists()
            raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []


def test_unwritable_output_is_a_user_error(clip, tmp_path):
    blocker = tmp_path / "file.txt"
    blocker.write_text("not a folder")
    with pytest.raises(UserError, match="does not exist"):
        video.VideoWriter(blocker / "out.mp4", 256, 160, FPS)
    with pytest.raises(UserError, match="use one of"):
        video.VideoWriter(tmp_path / "out.avi", 256, 160, FPS)
    # ffmpeg itself cannot open its output: a directory sits where the temporary file goes.
    out = tmp_path / "out.mp4"
    temp_name(out).mkdir()
    with pytest.raises(UserError, match="cannot write video") as err:
        with video.VideoWriter(out, 256, 160, FPS) as w:
            for f in clip:
                w.write(f)
    assert "\n" not in str(err.value)
    assert not out.exists()
    with pytest.raises(UserError, match="not found"):
        video.probe(tmp_path / "missing.mp4")
    with pytest.raises(UserError, match="no video stream"):
        video.probe(blocker)


def test_write_image_png_and_jpeg_carry_text(clip, tmp_path):
    text = {"intracoder": "swapped face", "frame": 7, "note": "Grüße"}
    png, jpg = tmp_path / "f.png", tmp_path / "f.jpg"
    image.write_image(png, clip[0], text)
    image.write_image(jpg, clip[0], text)
    assert np.array_equal(cv2.imread(str(png)), clip[0])
    assert _psnr(cv2.imread(str(jpg)), clip[0]) > 30
    expected = {"intracoder": "swapped face", "frame": "7", "note": "Grüße"}
    assert image.read_image_text(png) == expected
    assert image.read_image_text(jpg) == expected
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.jpg", "f.png"]
    with pytest.raises(UserError):
        image.write_image(tmp_path / "f.bmp", clip[0])
