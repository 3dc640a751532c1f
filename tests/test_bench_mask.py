"""bench/occlusion.py (with occlusion_paint.py, occlusion_measure.py) and bench/mask.py's pure
parts: PSNR in a region, the scored regions, the occluder painters, the summary-line parsing.
No model, no video: fast."""

from __future__ import annotations

import importlib
import math
from types import SimpleNamespace

import numpy as np
import pytest
from conftest import load_bench


@pytest.fixture(scope="module")
def occ():
    return load_bench("occlusion")


@pytest.fixture(scope="module")
def paint(occ):
    """bench/occlusion_paint.py, importable once the script put bench/ on sys.path."""
    return importlib.import_module("occlusion_paint")


@pytest.fixture(scope="module")
def measure(occ):
    return importlib.import_module("occlusion_measure")


@pytest.fixture(scope="module")
def mask_bench():
    return load_bench("mask")


@pytest.fixture(scope="module")
def portrait():
    """grace_hopper (BGR, 600x512) and the box (x, y, w, h) around her face."""
    from intracoder.samples import portrait

    return portrait("grace_hopper"), (160.0, 125.0, 215.0, 215.0)


def test_psnr_and_mad_count_only_the_region(measure):
    a = np.full((40, 50, 3), 100, np.uint8)
    b = a.copy()
    region = np.zeros((40, 50), bool)
    region[10:20, 10:30] = True
    assert measure.psnr_in(a, b, region) == measure.PSNR_CAP  # identical
    b[region] += 10  # a difference of 10 on every channel inside
    b[0:5, 0:5] = 255  # outside the region: not counted
    assert measure.psnr_in(a, b, region) == pytest.approx(10 * math.log10(255 ** 2 / 100))
    assert measure.mad_in(a, b, region) == pytest.approx(10.0)
    assert measure.psnr_in(a, b, ~region) < measure.psnr_in(a, b, region)
    half = region.copy()
    half[10:20, 20:30] = False
    b[10:20, 20:30] = a[10:20, 20:30]  # half the region back to the input: MSE halves
    assert measure.psnr_in(a, b, region) == pytest.approx(10 * math.log10(255 ** 2 / 50))
    assert measure.mad_in(a, b, region) == pytest.approx(5.0)
    empty = np.zeros((40, 50), bool)
    assert math.isnan(measure.psnr_in(a, b, empty)) and math.isnan(measure.mad_in(a, b, empty))
    assert measure.psnr_in(np.zeros_like(a), np.full_like(a, 255), region) == 0.0  # never negative


def test_edge_pixels_scale_with_the_face(measure):
    assert measure.edge_pixels(290) == (3, 2, 8)  # person_a at 512x512: the brief's pixels
    assert measure.edge_pixels(580) == (6, 4, 16)
    assert measure.edge_pixels(20) == (1, 1, 2)  # never below a pixel, the ring never empty


def test_regions_partition_the_face_around_the_occluder(measure):
    import cv2

    h = w = 200
    face = np.zeros((h, w), np.uint8)
    cv2.ellipse(face, (100, 100), (70, 90), 0, 0, 360, 1, -1)
    face = face > 0
    alpha = np.zeros((h, w), np.float32)
    cv2.circle(alpha, (100, 150), 30, 1.0, -1)  # reaches below the face's oval
    reg = measure.regions(alpha, face, (3, 2, 8))
    occluder = alpha >= 0.5
    assert reg["core"].any() and reg["ring"].any() and reg["rest"].any()
    assert reg["background"].any() and reg["band"].any()
    assert not (reg["core"] & reg["band"]).any()
    assert (reg["core"] | reg["band"]).sum() <= occluder.sum()
    yy, xx = np.mgrid[:h, :w]
    dist = np.hypot(xx - 100, yy - 150)
    assert dist[reg["core"]].max() <= 30 - 3 + 1  # eroded: away from the edge
    assert dist[reg["ring"]].min() >= 30 + 2 - 1 and dist[reg["ring"]].max() <= 30 + 8 + 1
    assert not (reg["ring"] & ~face).any() and not (reg["rest"] & ~face).any()
    assert not (reg["rest"] & (dist <= 30 + 8 - 1)).any()  # clear of the grown occluder
    assert not (reg["background"] & face).any()
    # only the occluder's part over the face (grown by the ring) is scored
    assert not (reg["core"] & (yy > 190 + 8)).any()


def test_frames_take_the_occluders_in_turn(occ, paint):
    kinds = [paint.kind_of(i, 60) for i in range(60)]
    assert kinds == ["cup"] * 20 + ["microphone"] * 20 + ["hand"] * 20
    assert [paint.kind_of(i, 12) for i in range(12)] == ["cup"] * 4 + ["microphone"] * 4 + \
        ["hand"] * 4
    assert [paint.kind_of(i, 3) for i in range(3)] == list(paint.KINDS)
    picks = occ.sheet_picks(kinds)
    assert len(picks) == 6 and picks == sorted(picks)
    assert [kinds[i] for i in picks] == ["cup", "cup", "microphone", "microphone", "hand", "hand"]
    assert occ.sheet_picks(["none", "cup", "hand"]) == [1, 2]


def test_swapped_needs_a_change_and_half_of_hulls(measure):
    assert measure.swapped(20.0, 30.0) and measure.swapped(20.0, None)
    assert measure.swapped(20.0, float("nan"))
    assert not measure.swapped(10.0, 30.0)  # less than half what hull mode changed
    assert not measure.swapped(2.0, None)  # within encoding noise: not swapped
    assert not measure.swapped(float("nan"), 30.0)


@pytest.mark.parametrize("kind", ["cup", "microphone", "hand"])
def test_painters_cover_the_face_and_stay_in_the_frame(paint, portrait, kind):
    image, box = portrait
    geo = paint.Anchors.from_box(box)
    out, alpha = paint.paint(kind, image, geo, seed=3)
    assert out.shape == image.shape and out.dtype == np.uint8
    assert alpha.shape == image.shape[:2] and alpha.dtype == np.float32
    assert alpha.min() >= 0.0 and alpha.max() == pytest.approx(1.0, abs=1e-3)
    x, y, w, h = (int(v) for v in box)
    in_box = alpha[y:y + h, x:x + w] >= 0.5
    assert 0.04 < in_box.mean() < 0.6  # over part of the face, not all of it
    # what is not over the face hangs below it (handle, forearm, the cup's body)
    assert (alpha[:y] >= 0.5).sum() < 0.05 * (alpha >= 0.5).sum()
    assert np.array_equal(out[alpha == 0], image[alpha == 0])  # nothing painted elsewhere
    assert np.abs(out[alpha > 0.99].astype(int) - image[alpha > 0.99]).mean() > 10
    # the same seed paints the same occluder
    again, alpha2 = paint.paint(kind, image, geo, seed=3)
    assert np.array_equal(again, out) and np.array_equal(alpha2, alpha)


def test_painters_where_the_cup_goes(paint, portrait):
    image, box = portrait
    geo = paint.Anchors.from_box(box)
    _, cup = paint.paint("cup", image, geo)
    _, mic = paint.paint("microphone", image, geo)
    _, hand = paint.paint("hand", image, geo)
    mouth = tuple(int(round(v)) for v in geo.mouth)
    assert cup[mouth[1] + 20, mouth[0]] > 0.5  # cup and microphone in front of the mouth
    assert mic[mouth[1] + 10, mouth[0]] > 0.5
    cheek = tuple(int(round(v)) for v in geo.cheek_l)
    assert hand[cheek[1] + 10, cheek[0]] > 0.5  # the hand on the image-left cheek
    assert hand[:, int(geo.cheek_r[0]):].mean() < hand[:, :int(geo.cheek_r[0])].mean()
    eyes = [tuple(int(round(v)) for v in p) for p in (geo.eye_l, geo.eye_r)]
    assert all(cup[y, x] == 0 and mic[y, x] == 0 for x, y in eyes)


def test_painters_with_the_face_half_out_of_the_frame(paint):
    frame = np.full((240, 320, 3), 128, np.uint8)
    geo = paint.Anchors.from_box((220.0, 150.0, 200.0, 240.0))  # leaves at right and bottom
    for kind in paint.KINDS:
        out, alpha = paint.paint(kind, frame, geo)
        assert out.shape == frame.shape and alpha.shape == frame.shape[:2]
        assert 0.0 <= alpha.min() and alpha.max() <= 1.0


def test_anchors_from_a_found_face(paint):
    rng = np.random.default_rng(0)
    lm = np.zeros((468, 3))
    lm[:, 0], lm[:, 1] = rng.uniform(200, 300, 468), rng.uniform(150, 320, 468)
    lm[234, :2], lm[454, :2] = (190, 240), (310, 240)
    lm[1, :2], lm[13, :2], lm[14, :2], lm[152, :2] = (250, 250), (250, 280), (250, 290), (250, 330)
    points5 = np.array([[220, 200], [280, 200], [250, 250], [230, 285], [270, 285]], float)
    face = SimpleNamespace(landmarks=lm, detection=SimpleNamespace(points5=points5))
    geo = paint.Anchors.from_face(face)
    assert geo.width == pytest.approx(120.0)
    np.testing.assert_allclose(geo.mouth, (250, 285))
    np.testing.assert_allclose(geo.down, (0, 1), atol=1e-9)  # level eyes
    assert geo.cheek_l[0] < geo.nose[0] < geo.cheek_r[0]
    hull = paint.hull_mask(geo.hull, (400, 400))
    assert hull[240, 250] and hull[240, 195] and not hull[100, 100]


def test_mask_bench_reads_summary_lines(mask_bench):
    log = ("== convert --mask hull\nsomething 3 frames (9.9/s) earlier\n"
           "50 frames (4.3/s), 50 faces swapped, 0 frames without a face, 11.6 s -> x.mp4\n")
    assert mask_bench.convert_rate(log) == (50, 4.3, 50)
    with pytest.raises(mask_bench.QualityError):
        mask_bench.convert_rate("intracoder: error: no model\n")
    train = ("mask model /tmp/x: iteration 57, loss 0.7311, 11.25 faces/s; held-out IoU with "
             "occluders 0.81, agreement with the hull on clean crops 0.93 (40 crops)\n")
    assert mask_bench.train_rate(train) == (57, 11.25)
    assert mask_bench.train_rate("nothing here") is None
    assert mask_bench.verdict(4.0, 3.6) == (pytest.approx(0.9), "PASS")
    assert mask_bench.verdict(4.0, 3.0)[1] == "FAIL"
    assert mask_bench.verdict(4.0, 3.2)[1] == "PASS"  # exactly 25% slower: allowed
    assert math.isnan(mask_bench.verdict(0.0, 3.0)[0])


def test_mask_bench_arguments(mask_bench, tmp_path):
    args = mask_bench.build_parser().parse_args(["--faces", "a", "b", "--model", "m",
                                                 "--train-minutes", "0"])
    assert args.faces == ["a", "b"] and args.minutes == 0 and args.frames == 100
    with pytest.raises(mask_bench.QualityError, match="--mask-model"):
        mask_bench.run(["--faces", "a", "--model", "m", "--minutes", "0"])
    with pytest.raises(mask_bench.QualityError, match="not a faceset"):
        mask_bench.run(["--faces", str(tmp_path), "--model", "m"])
