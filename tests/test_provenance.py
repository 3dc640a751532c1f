"""Provenance: the watermark survives the attacks it promises to, never fires on real
footage, costs under 40 dB of PSNR, and `intracoder verify` keeps its exit codes."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest

from intracoder import samples
from intracoder.cli import main
from intracoder.provenance import describe_payload, mark_frame, metadata, payload_for, watermark
from intracoder.provenance.label import burn_label, label_box

FACEDATA = Path(__file__).resolve().parents[1].parent / "shared" / "facedata"
MODEL = "test-model"
PAYLOAD = payload_for(MODEL)


def _ffmpeg() -> str:
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def write_video(frames, path: Path, crf: int = 18, model_id: str | None = None) -> Path:
    h, w = frames[0].shape[:2]
    tags = metadata.ffmpeg_metadata_args(model_id) if model_id else []
    subprocess.run([_ffmpeg(), "-y", "-loglevel", "error", "-f", "rawvideo", "-pix_fmt", "bgr24",
                    "-s", f"{w}x{h}", "-r", "25", "-i", "-", "-c:v", "libx264", "-crf", str(crf),
                    "-pix_fmt", "yuv420p", *tags, str(path)],
                   input=b"".join(f.tobytes() for f in frames), check=True)
    return path


def reencode(src: Path, dst: Path, crf: int, scale: float | None = None) -> Path:
    vf = ["-vf", f"scale=trunc(iw*{scale}/2)*2:trunc(ih*{scale}/2)*2"] if scale else []
    subprocess.run([_ffmpeg(), "-y", "-loglevel", "error", "-i", str(src), *vf, "-c:v", "libx264",
                    "-crf", str(crf), "-pix_fmt", "yuv420p", str(dst)], check=True)
    return dst


def read_video(path: Path) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            return frames
        frames.append(frame)


def jpeg(frame: np.ndarray, quality: int = 75) -> np.ndarray:
    return cv2.imdecode(cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, quality])[1], 1)


def scale(frame: np.ndarray, factor: float = 0.75) -> np.ndarray:
    h, w = frame.shape[:2]
    return cv2.resize(frame, (round(w * factor), round(h * factor)), interpolation=cv2.INTER_AREA)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    return 10 * np.log10(255.0 ** 2 / np.mean((a.astype(float) - b.astype(float)) ** 2))


def ours(frame: np.ndarray) -> bool:
    d = watermark.detect(frame)
    return d.found and d.payload == PAYLOAD


@pytest.fixture(scope="module")
def portraits() -> dict[str, np.ndarray]:
    return {name: samples.portrait(name) for name in samples.PORTRAITS}


@pytest.fixture(scope="module")
def marked_portraits(portraits) -> dict[str, np.ndarray]:
    return {name: mark_frame(img, MODEL) for name, img in portraits.items()}


@pytest.fixture(scope="module")
def clip_384() -> tuple[list[np.ndarray], list[np.ndarray]]:
    frames = samples.render_clip("grace_hopper", 8, 384).frames
    return frames, [mark_frame(f, MODEL) for f in frames]


@pytest.fixture(scope="module")
def marked_mp4(tmp_path_factory) -> Path:
    frames = [mark_frame(f, MODEL) for f in samples.render_clip("astronaut", 10, 256).frames]
    return write_video(frames, tmp_path_factory.mktemp("mp4") / "marked.mp4", model_id=MODEL)


# --- exit codes ---------------------------------------------------------------------------

def test_verify_marked_png_exits_0(tmp_path, marked_portraits, capsys):
    path = tmp_path / "out.png"
    metadata.write_image(path, marked_portraits["grace_hopper"], MODEL)
    assert main(["verify", str(path)]) == 0
    out = capsys.readouterr().out
    assert "MARKED AS SYNTHETIC" in out and PAYLOAD[3:].hex() in out


def test_verify_marked_mp4_exits_0_and_reports_share(marked_mp4, capsys):
    assert main(["verify", "--json", str(marked_mp4)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["kind"] == "video" and report["metadata_found"]
    assert report["watermark_found"] and report["payload"] == PAYLOAD.hex()
    assert report["share_found"] >= 0.9 and report["frames_sampled"] == 10
    assert report["payload_fields"] == describe_payload(PAYLOAD)


def test_watermark_alone_is_enough(tmp_path, marked_portraits):
    path = tmp_path / "stripped.png"
    cv2.imwrite(str(path), marked_portraits["astronaut"])  # cv2 writes no text chunks
    assert main(["verify", str(path)]) == 0


def test_metadata_alone_is_enough(tmp_path, portraits):
    path = tmp_path / "tagged.jpg"
    metadata.write_image(path, portraits["astronaut"], MODEL)
    assert main(["verify", str(path)]) == 0


def test_verify_unmarked_portrait_exits_1(tmp_path, portraits, capsys):
    path = tmp_path / "real.png"
    cv2.imwrite(str(path), portraits["grace_hopper"])
    assert main(["verify", str(path)]) == 1
    assert "no intracoder mark found" in capsys.readouterr().out


def test_verify_unreadable_exits_2(tmp_path, capsys):
    text = tmp_path / "notes.txt"
    text.write_text("not a picture\n")
    assert main(["verify", str(text)]) == 2
    assert main(["verify", str(tmp_path / "missing.mp4")]) == 2
    err = capsys.readouterr().err
    assert err.count("intracoder: error:") == 2


# --- robustness ---------------------------------------------------------------------------

@pytest.mark.parametrize("attack", [jpeg, scale, lambda f: jpeg(scale(f))],
                         ids=["jpeg75", "scale75", "scale75+jpeg75"])
def test_stills_survive(marked_portraits, attack):
    for frame in marked_portraits.values():
        assert ours(attack(frame))


def test_rendered_frames_survive_jpeg_and_scale(clip_384):
    _, marked = clip_384
    assert all(ours(jpeg(f)) for f in marked)
    assert all(ours(scale(f)) for f in marked)


def test_video_survives_crf28(tmp_path, clip_384):
    _, marked = clip_384
    src = write_video(marked, tmp_path / "a.mp4")
    attacked = reencode(src, tmp_path / "b.mp4", crf=28)
    rate = np.mean([ours(f) for f in read_video(attacked)])
    assert rate >= 0.75, rate
    assert main(["verify", str(attacked)]) == 0


def test_video_survives_scale_and_crf28(tmp_path, clip_384):
    _, marked = clip_384
    src = write_video(marked, tmp_path / "a.mp4")
    attacked = reencode(src, tmp_path / "b.mp4", crf=28, scale=0.75)
    assert read_video(attacked)[0].shape[:2] == (288, 288)
    assert main(["verify", str(attacked)]) == 0


def test_small_video_survives_crf28_on_average(marked_mp4, tmp_path, capsys):
    # 256x256 is small for CRF 28: single frames may fail, the averaged decode must not.
    attacked = reencode(marked_mp4, tmp_path / "b.mp4", crf=28)
    assert main(["verify", "--json", str(attacked)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["watermark_found"] and report["payload"] == PAYLOAD.hex()


# --- no false alarms ----------------------------------------------------------------------

def test_no_false_positive_on_portraits(portraits):
    for frame in portraits.values():
        for variant in (frame, jpeg(frame), scale(frame), scale(frame, 0.5)):
            assert not watermark.detect(variant).found


def test_no_false_positive_on_rendered_clip():
    for frame in samples.render_clip("astronaut", 12, 256, seed=5).frames:
        assert not watermark.detect(frame).found


@pytest.mark.parametrize("value", [0, 17, 128, 255])
def test_no_false_positive_on_flat_frames(value):
    flat = np.full((240, 320, 3), value, np.uint8)
    assert not watermark.detect(flat).found
    ramp = np.tile(np.linspace(0, 255, 320, dtype=np.uint8), (240, 1))
    assert not watermark.detect(cv2.merge([ramp, ramp, ramp])).found


def _facedata() -> Path:
    if not (FACEDATA / "person_a.mp4").exists():
        pytest.skip("../shared/facedata is not present")
    return FACEDATA


@pytest.mark.parametrize("clip", ["person_a.mp4", "person_b.mp4", "crowd_clip.mp4"])
def test_no_false_positive_on_facedata_clips(clip):
    assert main(["verify", str(_facedata() / clip)]) == 1


def test_no_false_positive_on_facedata_stills():
    stills = sorted((_facedata() / "stills").glob("*.jpg"))
    assert stills
    for path in stills:
        assert main(["verify", str(path)]) == 1


# --- cost, label, payload, metadata ------------------------------------------------------

def test_psnr_above_40db(portraits, marked_portraits, clip_384):
    pairs = [(portraits[k], marked_portraits[k]) for k in portraits] + list(zip(*clip_384))
    assert min(psnr(a, b) for a, b in pairs) > 40.0


def test_embed_leaves_input_alone_and_handles_gray_and_alpha(portraits):
    frame = portraits["astronaut"]
    before = frame.copy()
    watermark.embed(frame, PAYLOAD)
    assert np.array_equal(frame, before)
    gray = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
    assert watermark.detect(watermark.embed(gray, PAYLOAD)).payload == PAYLOAD
    bgra = cv2.cvtColor(frame, cv2.COLOR_BGR2BGRA)
    marked = watermark.embed(bgra, PAYLOAD)
    assert np.array_equal(marked[..., 3], bgra[..., 3])
    assert watermark.detect(marked).payload == PAYLOAD


def test_label_changes_corner_pixels_only(portraits):
    frame = portraits["grace_hopper"]
    text = "SYNTHETIC - intracoder"
    labelled = burn_label(frame, text)
    x0, y0, x1, y1 = label_box(frame.shape, text)
    changed = np.argwhere(np.any(labelled != frame, axis=2))
    assert changed.size
    assert changed[:, 0].min() >= y0 and changed[:, 0].max() < y1
    assert changed[:, 1].min() >= x0 and changed[:, 1].max() < x1
    h, w = frame.shape[:2]
    assert y0 > h * 0.8 and x0 > w * 0.3  # bottom-right, a small share of the frame


def test_mark_frame_with_label_keeps_the_watermark(portraits):
    frame = portraits["astronaut"]
    with_label = mark_frame(frame, MODEL, label="SYNTHETIC")
    without = mark_frame(frame, MODEL)
    x0, y0, x1, y1 = label_box(frame.shape, "SYNTHETIC")
    outside = np.ones(frame.shape[:2], bool)
    outside[y0:y1, x0:x1] = False
    assert np.abs(with_label.astype(int) - without.astype(int))[outside].max() <= 12
    assert ours(with_label) and ours(jpeg(with_label))


def test_payload_layout():
    assert len(PAYLOAD) == watermark.PAYLOAD_BYTES and PAYLOAD.startswith(b"IC")
    assert payload_for(MODEL) == PAYLOAD and payload_for("other") != PAYLOAD
    assert describe_payload(PAYLOAD)["tool"] == "intracoder"


def test_metadata_round_trip(tmp_path, portraits, marked_mp4):
    for suffix in (".png", ".jpg"):
        path = tmp_path / f"x{suffix}"
        metadata.write_image(path, portraits["astronaut"], MODEL)
        assert metadata.find_notice(metadata.read_image_metadata(path))
    tags = metadata.read_video_metadata(marked_mp4)
    assert metadata.find_notice(tags)[0] in metadata.video_metadata(MODEL)
    assert metadata.SYNTHETIC_NOTICE in tags["comment"]


def test_parse_ffmpeg_banner_handles_continuations_and_streams():
    banner = ("Input #0, matroska,webm, from 'x.mkv':\n"
              "  Metadata:\n"
              "    COMMENT         : first line\n"
              "                    : second line\n"
              "    ENCODER         : Lavf\n"
              "  Duration: 00:00:01.00, start: 0.000000\n"
              "  Stream #0:0: Video: h264\n"
              "    Metadata:\n"
              "      ENCODER         : Lavc libx264\n")
    tags = metadata.parse_ffmpeg_banner(banner)
    assert tags == {"comment": "first line\nsecond line", "encoder": "Lavf"}
