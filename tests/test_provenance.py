"""Provenance: the watermark survives the attacks it promises to, never fires on real
footage, costs under 40 dB of PSNR, outputs carry the IPTC digital source type where exiftool
reads it, and `intracoder verify` keeps its exit codes."""

from __future__ import annotations

import json
import re
import shutil
import struct
import subprocess
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np
import pytest

from intracoder import samples
from intracoder.cli import main
from intracoder.convert.media import Sink, Source
from intracoder.errors import UserError
from intracoder.media.image import XMP_TEXT_KEY, write_image
from intracoder.media.video import VideoWriter
from intracoder.media.xmp_box import XMP_UUID, append_mp4_xmp, read_mp4_xmp
from intracoder.provenance import describe_payload, mark_frame, metadata, payload_for, watermark
from intracoder.provenance import xmp
from intracoder.provenance.label import burn_label, label_box

MODEL = "test-model"
PAYLOAD = payload_for(MODEL)


def _ffmpeg() -> str:
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def write_video(frames, path: Path, crf: int = 18, model_id: str | None = None) -> Path:
    h, w = frames[0].shape[:2]
    tags = [arg for key, value in metadata.video_metadata(model_id).items()
            for arg in ("-metadata", f"{key}={value}")] if model_id else []
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
    write_image(path, marked_portraits["grace_hopper"], metadata.image_text(MODEL))
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
    write_image(path, portraits["astronaut"], metadata.image_text(MODEL))
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


@pytest.mark.parametrize("clip", ["person_a.mp4", "person_b.mp4", "crowd_clip.mp4"])
def test_no_false_positive_on_facedata_clips(facedata, clip):
    assert main(["verify", str(facedata / clip)]) == 1


def test_no_false_positive_on_facedata_stills(facedata):
    stills = sorted((facedata / "stills").glob("*.jpg"))
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
        write_image(path, portraits["astronaut"], metadata.image_text(MODEL))
        assert metadata.find_notice(metadata.read_image_metadata(path))
    tags = metadata.read_video_metadata(marked_mp4)
    assert metadata.find_notice(tags)[0] in metadata.video_metadata(MODEL)
    assert metadata.SYNTHETIC_NOTICE in tags["comment"]


# --- XMP: the IPTC digital source type ---------------------------------------------------

TRAINED = "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"


def _convert_still(tmp_path: Path, frame: np.ndarray, suffix: str) -> Path:
    # Through convert's Sink, so the test covers the writer production uses.
    src = tmp_path / "in.png"
    cv2.imwrite(str(src), frame)
    out = tmp_path / f"out{suffix}"
    with Sink(Source("image", src, 1, images=[src]), str(out), MODEL) as sink:
        sink.write(src.name, frame)
    return out


def test_xmp_packet_round_trip_and_other_spellings():
    packet = xmp.xmp_packet('model <&> "1"')
    assert packet.startswith(b'<?xpacket begin="\xef\xbb\xbf"') and packet.endswith(b"?>")
    fields = xmp.read_xmp_fields(packet)
    assert fields["digital_source_type"] == TRAINED
    assert fields["creator_tool"].startswith("intracoder ")
    assert 'model model <&> "1"' in fields["description"]
    assert xmp.is_intracoder_marker(fields)
    rdf = ('<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF '
           'xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"><rdf:Description '
           'xmlns:Iptc4xmpExt="http://iptc.org/std/Iptc4xmpExt/2008-02-29/" {}</rdf:Description>'
           '</rdf:RDF></x:xmpmeta>')
    attribute = rdf.format(f'Iptc4xmpExt:DigitalSourceType="{TRAINED}">')
    resource = rdf.format(f'><Iptc4xmpExt:DigitalSourceType rdf:resource="{TRAINED}"/>')
    assert xmp.read_digital_source_type(attribute) == TRAINED
    assert xmp.read_digital_source_type(resource + "\0\0  ") == TRAINED
    assert not xmp.is_intracoder_marker(xmp.read_xmp_fields(attribute))  # another tool's
    for bad in (b"", b"not xml", b"<a><b></a>", b'<!DOCTYPE a [<!ENTITY x "y">]><a>&x;</a>'):
        assert xmp.read_xmp_fields(bad) == {}


@pytest.mark.parametrize("suffix", [".png", ".jpg"])
def test_converted_still_carries_iptc_source_type(tmp_path, portraits, suffix):
    from PIL import Image

    out = _convert_still(tmp_path, mark_frame(portraits["astronaut"], MODEL), suffix)
    with Image.open(out) as image:
        packet = image.info["xmp"]
    assert xmp.read_digital_source_type(packet) == TRAINED
    raw = out.read_bytes()
    if suffix == ".png":
        # iTXt, keyword, then compression flag 0, method 0, empty language and translated key.
        assert b"iTXtXML:com.adobe.xmp\x00\x00\x00\x00\x00<?xpacket" in raw
    else:
        match = re.search(rb"\xff\xe1(..)http://ns.adobe.com/xap/1.0/\x00<\?xpacket", raw, re.S)
        assert match and struct.unpack(">H", match.group(1))[0] == 2 + 29 + len(packet)
    assert metadata.find_notice(metadata.read_image_metadata(out))  # the plain notice stays
    if shutil.which("exiftool"):
        shown = subprocess.run(["exiftool", "-s3", "-XMP-iptcExt:DigitalSourceType", str(out)],
                               capture_output=True, text=True, check=True).stdout.strip()
        assert shown == TRAINED


def _videowriter_mp4(path: Path, frames: list[np.ndarray]) -> Path:
    h, w = frames[0].shape[:2]
    writer = VideoWriter(path, w, h, Fraction(25), metadata=metadata.video_metadata(MODEL))
    writer.open()
    for frame in frames:
        writer.write(frame)
    writer.close()
    return path


@pytest.fixture(scope="module")
def xmp_clip() -> list[np.ndarray]:
    return [mark_frame(f, MODEL) for f in samples.render_clip("astronaut", 9, 256).frames]


@pytest.mark.parametrize("suffix", [".mp4", ".mov"])
def test_mp4_xmp_box_is_read_back_and_the_file_still_decodes(tmp_path, xmp_clip, suffix,
                                                             capsys):
    path = _videowriter_mp4(tmp_path / f"out{suffix}", xmp_clip)
    before, size = read_video(path), path.stat().st_size
    assert read_mp4_xmp(path) is None
    packet = xmp.xmp_packet(MODEL)
    append_mp4_xmp(path, packet)
    assert path.read_bytes()[size:] == (struct.pack(">I", 8 + 16 + len(packet)) + b"uuid"
                                        + XMP_UUID + packet)
    assert read_mp4_xmp(path) == packet
    after = read_video(path)
    assert len(after) == len(xmp_clip) == len(before)
    assert all(np.array_equal(a, b) for a, b in zip(before, after))
    append_mp4_xmp(path, packet)  # a second call replaces the trailing box
    assert path.stat().st_size == size + 8 + 16 + len(packet)
    assert main(["verify", "--json", str(path)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["xmp_found"] and report["digital_source_type"] == TRAINED
    if shutil.which("exiftool"):
        shown = subprocess.run(["exiftool", "-s3", "-XMP-iptcExt:DigitalSourceType", str(path)],
                               capture_output=True, text=True, check=True).stdout.strip()
        assert shown == TRAINED


def _box(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I4s", 8 + len(payload), kind) + payload


def test_read_mp4_xmp_survives_truncation_and_garbage(tmp_path):
    packet = xmp.xmp_packet(MODEL)
    whole = (_box(b"ftyp", b"isom\0\0\0\0") + _box(b"moov", b"\0" * 32)
             + _box(b"mdat", b"\1" * 100) + _box(b"uuid", XMP_UUID + packet))
    path = tmp_path / "x.mp4"
    path.write_bytes(whole)
    assert read_mp4_xmp(path) == packet
    for cut in (whole[:-5], whole[:60], b"", b"\0\0\0", b"\x1aE\xdf\xa3 mkv not mp4 " * 4):
        path.write_bytes(cut)
        assert read_mp4_xmp(path) is None
    path.write_bytes(whole[:-5])
    with pytest.raises(UserError):
        append_mp4_xmp(path, packet)
    assert read_mp4_xmp(tmp_path / "missing.mp4") is None


def test_append_mp4_xmp_handles_64bit_and_to_end_boxes(tmp_path):
    packet = xmp.xmp_packet(MODEL)
    head = _box(b"ftyp", b"isom\0\0\0\0") + _box(b"moov", b"\0" * 32)
    large = struct.pack(">I4sQ", 1, b"free", 16 + 40) + b"\2" * 40
    path = tmp_path / "x.mp4"
    path.write_bytes(head + large + struct.pack(">I4s", 0, b"mdat") + b"\1" * 100)
    append_mp4_xmp(path, packet)
    data = path.read_bytes()
    mdat = len(head) + len(large)
    assert struct.unpack(">I", data[mdat:mdat + 4])[0] == 108  # size 0 closed in place
    assert read_mp4_xmp(path) == packet


def test_verify_reports_the_digital_source_type(tmp_path, portraits, capsys):
    marked = _convert_still(tmp_path, mark_frame(portraits["grace_hopper"], MODEL), ".png")
    assert main(["verify", str(marked)]) == 0
    out = capsys.readouterr().out
    assert f"xmp:       digital source type {TRAINED}\n" in out
    only_xmp = tmp_path / "only_xmp.jpg"  # no watermark, no plain notice
    write_image(only_xmp, portraits["astronaut"], {XMP_TEXT_KEY: xmp.xmp_packet(MODEL).decode()})
    assert main(["verify", "--json", str(only_xmp)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["xmp_found"] and report["digital_source_type"] == TRAINED
    assert not report["metadata_found"] and not report["watermark_found"]
    other = tmp_path / "other.png"  # another generator's label is reported, not counted
    packet = xmp.xmp_packet(MODEL).decode().replace("intracoder", "othergen")
    write_image(other, portraits["astronaut"], {XMP_TEXT_KEY: packet})
    assert main(["verify", "--json", str(other)]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["digital_source_type"] == TRAINED and not report["xmp_found"]
