"""Video as users have it: variable frame rate with audio, containers without a frame count,
files damaged part-way, odd frame sizes, and inputs whose names collide. Each goes through
the one media layer, extract and convert."""

from __future__ import annotations

import json
import shutil
import subprocess

import numpy as np
import pytest

from intracoder.convert.pipeline import ConvertConfig, convert
from intracoder.errors import UserError
from intracoder.faces.extract import ExtractConfig, extract
from intracoder.media import video
from intracoder.samples import render_clip

N = 24


def _ffmpeg(*args) -> None:
    subprocess.run([video.ffmpeg_exe(), "-loglevel", "error", "-y", *args], check=True)


@pytest.fixture(scope="module")
def frames():
    return render_clip("grace_hopper", n_frames=N, size=256, seed=3, max_angle=6).frames


@pytest.fixture(scope="module")
def plain(tmp_path_factory, frames):
    path = tmp_path_factory.mktemp("plain") / "plain.mp4"
    with video.VideoWriter(path, 256, 256, 25) as w:
        for f in frames:
            w.write(f)
    return path


@pytest.fixture(scope="module")
def vfr(tmp_path_factory, plain):
    """A phone-like clip: 12 frames at 30 fps, then 12 at 12.5 fps, and a 2 s tone."""
    path = tmp_path_factory.mktemp("vfr") / "phone.mp4"
    times = "(if(lt(N,12),N/30,0.4+(N-12)*0.08))/TB"  # seconds, in the filter's time base
    _ffmpeg("-i", str(plain), "-f", "lavfi", "-i", "sine=frequency=440:duration=2",
            "-map", "0:v", "-map", "1:a", "-vf", f"settb=1/90000,setpts='{times}'",
            "-fps_mode", "passthrough", "-enc_time_base", "1/90000",
            "-video_track_timescale", "90000", "-c:v", "libx264", "-crf", "12",
            "-c:a", "aac", str(path))
    return path


def _times(path) -> list[float]:
    tb = video.probe(path).time_base
    return [float(f.pts * tb) for f in video.iter_video(path)]


def test_a_vfr_clip_is_read_with_every_frame_time(vfr):
    times = _times(vfr)
    assert len(times) == N
    gaps = np.diff(times)
    assert np.allclose(gaps[:11], 1 / 30, atol=1e-3) and np.allclose(gaps[12:], 0.08, atol=1e-3)


def test_the_writer_keeps_vfr_timing_and_audio(vfr, tmp_path):
    info = video.probe(vfr)
    out = tmp_path / "copy.mp4"
    with video.VideoWriter(out, info.width, info.height, info.fps_fraction, audio_from=vfr,
                           time_base=info.time_base) as w:
        for f in video.iter_video(vfr):
            w.write(f.image, f.pts)
    assert np.allclose(_times(out), _times(vfr), atol=1e-3)
    assert video.probe(out).has_audio


@pytest.fixture(scope="module")
def loaded(quick_model):
    from intracoder.training.inference import load_model

    return load_model(quick_model)


def _convert(quick_model, finder, loaded, **kw):
    return convert(ConvertConfig(model=str(quick_model), **kw), finder, loaded)


def test_convert_keeps_every_frame_time_and_the_audio_in_sync(vfr, quick_model, finder,
                                                              loaded, tmp_path):
    out = tmp_path / "swapped.mp4"
    _convert(quick_model, finder, loaded, input=str(vfr), output=str(out))
    # Sync within one frame over the whole clip: every frame keeps its time, and the audio
    # track keeps its start and length.
    assert np.allclose(_times(out), _times(vfr), atol=1e-3)
    import av

    with av.open(str(vfr)) as a, av.open(str(out)) as b:
        sa, sb = a.streams.audio[0], b.streams.audio[0]
        assert float(sb.duration * sb.time_base) == pytest.approx(
            float(sa.duration * sa.time_base), abs=0.03)
        assert float((sb.start_time or 0) * sb.time_base) == pytest.approx(
            float((sa.start_time or 0) * sa.time_base), abs=0.03)


def test_a_part_of_a_vfr_clip_keeps_its_times_and_its_audio(vfr, quick_model, finder, loaded,
                                                            tmp_path):
    out = tmp_path / "part.mp4"
    _convert(quick_model, finder, loaded, input=str(vfr), output=str(out), start=10, end=16)
    source = _times(vfr)
    assert np.allclose(_times(out), np.array(source[10:16]) - source[10], atol=1e-3)
    import av

    with av.open(str(out)) as b:
        sb = b.streams.audio[0]
        length = source[16] - source[10]
        # The audio under those six frames, to within one AAC frame (23 ms).
        assert float(sb.duration * sb.time_base) == pytest.approx(length, abs=0.03)


@pytest.mark.parametrize("kind", ["h264", "ts", "frag", "mkv"])
def test_containers_without_a_frame_count(plain, tmp_path, kind, finder):
    args = {"h264": ["-c", "copy", "-bsf:v", "h264_mp4toannexb", "-f", "h264"],
            "ts": ["-c", "copy", "-f", "mpegts"],
            "frag": ["-c", "copy", "-movflags", "frag_keyframe+empty_moov"],
            "mkv": ["-c", "copy"]}[kind]
    path = tmp_path / {"h264": "raw.h264", "ts": "clip.ts", "frag": "frag.mp4",
                       "mkv": "clip.mkv"}[kind]
    _ffmpeg("-i", str(plain), *args, str(path))
    assert video.probe(path).frame_count == N
    assert len(list(video.iter_frames(path))) == N
    summary = extract(ExtractConfig(input=str(path), out_dir=str(tmp_path / "faces"), size=64,
                                    every=6), finder=finder)
    assert summary.frames_read == N // 6 and summary.faces_written == N // 6


@pytest.fixture(scope="module")
def truncated(tmp_path_factory, plain):
    """The clip cut off part-way through its data (the index, at the front, says 24)."""
    data = plain.read_bytes()
    path = tmp_path_factory.mktemp("damaged") / "cut.mp4"
    path.write_bytes(data[: int(len(data) * 0.6)])
    return path


def test_a_file_damaged_part_way_names_the_frame(truncated):
    got = []
    with pytest.raises(video.DecodeError) as err:
        for f in video.iter_frames(truncated):
            got.append(f)
    assert 0 < len(got) < N and err.value.frame == len(got)
    assert f"frame {len(got)}" in str(err.value) and "\n" not in str(err.value)


def test_extract_keeps_the_faces_before_the_damage(truncated, finder, tmp_path):
    out = tmp_path / "faces"
    with pytest.raises(UserError, match=r"decoding failed at frame \d+.*kept") as err:
        extract(ExtractConfig(input=str(truncated), out_dir=str(out), size=64, batch_size=4),
                finder=finder)
    decoded = int(str(err.value).split("frame ")[1].split(":")[0])
    index = json.loads((out / "faces.json").read_text())
    assert len(index["sources"][str(truncated)]["frames_done"]) == decoded
    assert len(index["faces"]) == decoded


def test_convert_of_a_damaged_file_leaves_no_output(truncated, quick_model, finder, loaded,
                                                    tmp_path):
    out = tmp_path / "swapped.mp4"
    with pytest.raises(UserError, match="decoding failed at frame"):
        _convert(quick_model, finder, loaded, input=str(truncated), output=str(out))
    assert list(tmp_path.iterdir()) == []


def test_odd_sizes_are_kept(frames, tmp_path, quick_model, finder, loaded):
    odd = [np.ascontiguousarray(f[:253, :251]) for f in frames[:6]]
    src = tmp_path / "odd.mp4"
    with video.VideoWriter(src, 251, 253, 25) as w:
        for f in odd:
            w.write(f)
    info = video.probe(src)
    assert (info.width, info.height) == (251, 253)
    back = next(video.iter_frames(src))
    assert back.shape == (253, 251, 3)
    assert np.abs(back.astype(int) - odd[0]).mean() < 3
    out = tmp_path / "swapped.mp4"
    _convert(quick_model, finder, loaded, input=str(src), output=str(out))
    assert (video.probe(out).width, video.probe(out).height) == (251, 253)
    from intracoder.provenance.verify import verify_file

    result = verify_file(out)
    assert result.marked and result.watermark_found and result.metadata_found
    # The converted video carries the IPTC source type in its XMP box, as images do.
    assert result.xmp_found and result.digital_source_type.endswith("trainedAlgorithmicMedia")
    # evaluate takes the odd-sized pair (it failed with an IndexError on a padded output).
    from intracoder.metrics.evaluate import EvaluateConfig, evaluate

    scored = evaluate(EvaluateConfig(model=str(quick_model), source=str(src), swapped=str(out),
                                     faceset_samples=4), finder=finder)
    assert scored["summary"]["frames_scored"] == 6


def test_inputs_with_the_same_name_do_not_overwrite_each_other(clips, finder, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    shutil.copy(clips["grace_hopper"], a / "clip.mp4")
    shutil.copy(clips["astronaut"], b / "clip.mp4")
    out = tmp_path / "faces"
    for src in (a / "clip.mp4", b / "clip.mp4"):
        extract(ExtractConfig(input=str(src), out_dir=str(out), size=64, every=4),
                finder=finder)
    index = json.loads((out / "faces.json").read_text())
    assert len(index["faces"]) == 6 and len(list(out.glob("*.png"))) == 6
    by_source = {row["source"] for row in index["faces"].values()}
    assert by_source == {str(a / "clip.mp4"), str(b / "clip.mp4")}
    # A resume of the first input keeps its name and adds nothing.
    again = extract(ExtractConfig(input=str(a / "clip.mp4"), out_dir=str(out), size=64,
                                  every=4), finder=finder)
    assert again.frames_read == 0 and len(list(out.glob("*.png"))) == 6


def test_images_with_the_same_stem_do_not_overwrite_each_other(finder, tmp_path):
    import cv2

    folder = tmp_path / "stills"
    folder.mkdir()
    frames = render_clip("astronaut", n_frames=2, size=256, seed=4).frames
    cv2.imwrite(str(folder / "x.png"), frames[0])
    cv2.imwrite(str(folder / "x.jpg"), frames[1])
    out = tmp_path / "faces"
    extract(ExtractConfig(input=str(folder), out_dir=str(out), size=64), finder=finder)
    index = json.loads((out / "faces.json").read_text())
    assert {row["source"] for row in index["faces"].values()} == {
        str(folder / "x.png"), str(folder / "x.jpg")}
    assert len(list(out.glob("*.png"))) == 2
