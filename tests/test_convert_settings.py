"""Per-scene convert settings: a keyframe's settings hold from its frame on, in one run and
in parts; a bad settings file is one line; face_scale and the mask modes paste what they
say; preview_frame shows the frame convert writes.

The clip shows A (grace_hopper), so the default a2b swaps its face. Outputs are written
losslessly (--crf 0): x264 is lossless in YUV, so a frame decodes to the same pixels
whenever convert produced the same frame, and frames can be compared exactly.
"""

from __future__ import annotations

import json
import pickle

import cv2
import numpy as np
import pytest

from intracoder.cli import main
from intracoder.convert import blend, preview, workers
from intracoder.convert.pipeline import ConvertConfig, ConvertSummary, convert, load_job
from intracoder.convert.preview import FrameCache, preview_frame
from intracoder.convert.settings import Settings, SettingsFile
from intracoder.convert.swap import FaceSwapper
from intracoder.errors import UserError
from intracoder.faces.masks import hull_mask
from intracoder.media import video
from intracoder.samples import render_clip

SIZE, FRAMES, CUT = 256, 12, 6  # the keyframe at CUT starts the second scene


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255.0 ** 2 / mse)


@pytest.fixture(scope="module")
def loaded(quick_model):
    from intracoder.training.inference import load_model

    return load_model(quick_model)


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    path = tmp_path_factory.mktemp("settings_in") / "clip.mp4"
    frames = render_clip("grace_hopper", n_frames=FRAMES, size=SIZE, seed=2, max_angle=8).frames
    with video.VideoWriter(path, SIZE, SIZE, "25") as writer:
        for f in frames:
            writer.write(f)
    return path


@pytest.fixture(scope="module")
def run(clip, quick_model, finder, loaded, tmp_path_factory):
    """convert(clip) at --crf 0 with these options: its decoded frames."""
    folder = tmp_path_factory.mktemp("settings_out")
    count = iter(range(1000))

    def run(**kw) -> list[np.ndarray]:
        out = folder / f"out{next(count)}.mp4"
        convert(ConvertConfig(input=str(clip), output=str(out), model=str(quick_model),
                              crf=0, **kw), finder, loaded)
        return list(video.iter_frames(out))
    return run


def scenes(tmp_path, *keyframes: tuple[int, dict]) -> str:
    path = tmp_path / "convert_settings.json"
    path.write_text(json.dumps({"schema": 1, "keyframes": [
        {"frame": f, "settings": s} for f, s in keyframes]}))
    return str(path)


def same(a: list[np.ndarray], b: list[np.ndarray]) -> bool:
    return len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b))


@pytest.fixture(scope="module")
def plain(run):
    return {erode: run(erode=erode) for erode in (0, 30)}


def test_a_keyframe_switches_the_settings_at_its_frame(run, plain, tmp_path):
    file = scenes(tmp_path, (0, {"erode": 0}), (CUT, {"erode": 30}))
    out = run(settings=file)
    assert not same(plain[0][:CUT], plain[30][:CUT])  # erode shows in both scenes
    assert not same(plain[0][CUT:], plain[30][CUT:])
    assert same(out[:CUT], plain[0][:CUT])
    assert same(out[CUT:], plain[30][CUT:])
    # The file wins over a flag given with it, from its first keyframe on.
    assert same(run(settings=file, erode=15), out)


def test_the_settings_reach_the_parts(run, plain, tmp_path, monkeypatch, finder, loaded):
    """A video converted in parts: the file's content travels inside the config (pickled,
    as to a spawned worker), so the parts get it even with the file gone."""
    file = scenes(tmp_path, (0, {"erode": 0}), (CUT, {"erode": 30}))
    from intracoder.convert.segments import convert_part

    def pool(cfg, todo, work, total, count, bar):
        cfg = pickle.loads(pickle.dumps(cfg))
        (tmp_path / "convert_settings.json").unlink()
        job = load_job(cfg, finder, loaded)
        for seg in todo:
            convert_part(job, cfg, seg, work, total, bar.update)

    monkeypatch.setattr(workers, "_run_pool", pool)
    out = run(settings=file, workers=2, segment_frames=CUT)
    assert same(out[:CUT], plain[0][:CUT])
    assert same(out[CUT:], plain[30][CUT:])


def test_smoothing_changes_at_its_keyframe(run, tmp_path):
    rough, smooth = run(smooth=False), run()
    assert not same(rough[:CUT], smooth[:CUT])
    out = run(settings=scenes(tmp_path, (0, {"smooth": False}), (CUT, {"smooth": True})))
    assert same(out[:CUT], rough[:CUT])
    assert same(out[CUT:], smooth[CUT:])


@pytest.mark.parametrize("content, says", [
    ('{"schema": 1, "keyframes": [{"frame": 0, "settings": {"erosion": 3}}]}',
     "unknown setting 'erosion'"),
    ('{"schema": 1, "keyframes": [{"frame": 0, "settings": {"blend": "poisson"}}]}',
     "blend must be one of seamless, alpha"),
    ('{"schema": 1, "keyframes": [{"frame": 0, "settings": {"face_scale": 9}}]}',
     "face_scale must be within"),
    ('{"schema": 1, "keyframes": [{"frame": 5, "settings": {}}, {"frame": 5, "settings": {}}]}',
     "frames must increase"),
    ('{"schema": 2, "keyframes": []}', "schema 2"),
    ('{"schema": 1, "keyframes": [', "not valid JSON"),
])
def test_a_bad_settings_file_is_one_line(clip, quick_model, tmp_path, capsys, content, says):
    file = tmp_path / "s.json"
    file.write_text(content)
    assert main(["convert", "--model", str(quick_model), "--settings", str(file), str(clip),
                 str(tmp_path / "out.mp4")]) != 0
    err = capsys.readouterr().err.strip()
    assert says in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "out.mp4").exists()
    with pytest.raises(UserError, match="not found"):
        SettingsFile.load(tmp_path / "missing.json")


def test_apply_from_inserts_replaces_and_drops_repeats(tmp_path):
    plan = SettingsFile(Settings(erode=8))
    plan.apply_from(120, Settings(erode=30))
    plan.apply_from(0, Settings(erode=0))
    plan.apply_from(60, Settings(erode=30))  # the keyframe at 120 now repeats it
    assert plan.boundaries() == [0, 60]
    plan.apply_from(60, Settings(erode=5, blend="alpha"))
    assert [plan.settings_at(f).erode for f in (0, 59, 60, 500)] == [0, 0, 5, 5]
    plan.save(tmp_path / "s.json")
    again = SettingsFile.load(tmp_path / "s.json")
    assert again.keyframes == plan.keyframes
    assert SettingsFile(Settings(erode=3)).settings_at(10).erode == 3  # no keyframe yet


class _StubModel:
    """A model whose face is solid green and whose mask is this one."""

    def __init__(self, mask: np.ndarray):
        self.mask = mask
        self.config = type("C", (), {"resolution": mask.shape[0]})

    def decode(self, rgb, decoder, batch_size):
        face = np.zeros(rgb.shape, np.float32)
        face[..., 1] = 1.0
        return face, np.broadcast_to(self.mask[None, ..., None], rgb.shape[:3] + (1,))


@pytest.fixture(scope="module")
def portrait(finder):
    frame = render_clip("grace_hopper", n_frames=1, size=SIZE, seed=2, max_angle=0).frames[0]
    return frame, finder.find([frame])[0][0].landmarks


def pasted(portrait, predicted: np.ndarray, **settings) -> np.ndarray:
    """Where the green face went: no colour transfer, sharpening or feather, alpha paste."""
    frame, landmarks = portrait
    cfg = ConvertConfig(input="", output="")
    swapper = FaceSwapper(_StubModel(predicted), "b", "full", cfg)
    own = Settings(color="none", blend="alpha", erode=0, blur=0, sharpen=0, **settings)
    out = swapper.swap([frame], [[landmarks]], ConvertSummary(), own)[0]
    return np.any(out != frame, axis=2)


def test_mask_modes(portrait):
    res = 64
    full = np.ones((res, res), np.float32)
    top_off = full.copy()
    top_off[: res // 2] = 0  # the model sees an occlusion over the upper half of the crop
    hull = hull_mask(portrait[1][:, :2], SIZE) > 0
    predicted, only_hull = pasted(portrait, top_off), pasted(portrait, top_off, mask="hull")
    assert predicted.sum() < 0.8 * only_hull.sum()  # the occlusion is kept out ...
    # ... and nothing else changes (but a pixel of interpolation along the hull's edge)
    near_hull = cv2.dilate(only_hull.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
    assert not (predicted & ~near_hull).any()
    assert np.array_equal(pasted(portrait, full), pasted(portrait, full, mask="hull"))
    # The model's mask alone covers the whole crop, beyond the hull.
    everywhere = pasted(portrait, full, mask="predicted-only")
    assert (everywhere & ~hull).sum() > 0.5 * hull.sum()
    assert (only_hull & ~hull).sum() < 0.05 * hull.sum()  # (the hull, in the frame)


def test_face_scale(portrait):
    full = np.ones((64, 64), np.float32)
    area = {s: pasted(portrait, full, mask="hull", face_scale=s).sum() for s in (0.8, 1.0, 1.2)}
    assert 1.3 < area[1.2] / area[1.0] < 1.6, area  # ~1.2 squared
    assert 0.55 < area[0.8] / area[1.0] < 0.75, area
    m = np.array([[0.5, 0.1, 3.0], [-0.1, 0.5, 7.0]])
    scaled = blend.scaled_matrix(m, 2.0, 101)
    inverse = cv2.invertAffineTransform(scaled)
    centre, corner = inverse @ [50, 50, 1], inverse @ [0, 0, 1]
    assert np.allclose(centre, cv2.invertAffineTransform(m) @ [50, 50, 1])
    assert np.allclose(corner - centre, 2 * (cv2.invertAffineTransform(m) @ [-50, -50, 0]))


def test_preview_frame_is_the_converted_frame(run, clip, quick_model, finder, loaded,
                                              tmp_path, monkeypatch):
    own = Settings(erode=30, face_scale=1.05, blend="alpha")
    converted = run(**own.to_dict())
    job = load_job(ConvertConfig(input=str(clip), output="", model=str(quick_model)),
                   finder, loaded)
    cache = FrameCache()
    before, after = preview_frame(job, clip, 9, own, cache=cache)
    assert np.array_equal(before, list(video.iter_frames(clip))[9])
    # convert's frame went through H.264 at crf 0, lossless in YUV 4:2:0 but not in RGB:
    # the preview frame encoded the same way must decode to exactly the converted frame.
    one = tmp_path / "one.mp4"
    with video.VideoWriter(one, SIZE, SIZE, "25", crf=0) as writer:
        writer.write(after)
    assert np.array_equal(next(video.iter_frames(one)), converted[9])
    assert psnr(after, converted[9]) > 40  # the 4:2:0 round trip alone
    assert psnr(after, before) < 35  # the face did change
    # A short warm-up starts tracking at frame 8 (a detector key frame), not at 0 as the
    # convert did: only sub-pixel landmark differences remain.
    assert psnr(preview_frame(job, clip, 11, own, warm=2, cache=cache)[1], converted[11]) > 40
    decoded = []
    monkeypatch.setattr(preview, "iter_video",
                        lambda *a, **k: decoded.append(a) or video.iter_video(*a, **k))
    preview_frame(job, clip, 10, own, cache=cache)  # a slider moved by one frame
    assert not decoded
