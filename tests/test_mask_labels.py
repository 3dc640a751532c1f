"""Mask labels (XSeg-style include/exclude polygons) stored in a crop's own metadata: round
trips, sort --rename and copy, rasterising, validation, and propagation through the face
mesh, on a bundled portrait with a known motion and on a real talking head."""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from intracoder.cli import main
from intracoder.errors import UserError
from intracoder.faces import labels as L
from intracoder.faces.faceset import (face_filename, list_faces, read_face, read_meta,
                                      write_face)

MOUTH = [61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291, 409, 270, 269, 267, 0, 37, 39, 40,
         185]
RING = [[20, 20], [100, 20], [100, 100], [20, 100]]
HOLE = [[40, 40], [80, 40], [80, 80], [40, 80]]


def iou(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a > 0, b > 0
    return float((a & b).sum() / max((a | b).sum(), 1))


def affine(points, m) -> np.ndarray:
    m = np.asarray(m, np.float64)
    return np.asarray(points, np.float64) @ m[:, :2].T + m[:, 2]


def cli_parser() -> argparse.ArgumentParser:
    """The two subcommands as the ``mask`` command will mount them."""
    from intracoder.commands.mask_labels import add_label_parsers

    parser = argparse.ArgumentParser(prog="intracoder mask")
    add_label_parsers(parser.add_subparsers(dest="mask_command", required=True))
    return parser


def run_cli(*argv: str) -> int:
    args = cli_parser().parse_args(list(argv))
    return int(args.func(args) or 0)


# --- the bundled portrait, moved by a known transform ---------------------------------------

@pytest.fixture(scope="module")
def hopper(tmp_path_factory, finder):
    """grace_hopper rendered over 8 frames (rotation +-20 degrees, zoom, drift): frame i
    cropped 'full' at 128 px in ``full/`` and 'whole' at 160 px in ``whole/``, plus the clip
    (whose matrices are the true motion)."""
    from intracoder.faces.extract import crop_face, face_meta
    from intracoder.samples import render_clip

    clip = render_clip("grace_hopper", n_frames=8, size=256, seed=1)
    root = tmp_path_factory.mktemp("hopper")
    (root / "full").mkdir()
    (root / "whole").mkdir()
    for i, (image, faces) in enumerate(zip(clip.frames, finder.find(clip.frames))):
        assert faces, f"no face found in frame {i}"
        for face_type, size in (("full", 128), ("whole", 160)):
            crop, mask, m = crop_face(image, faces[0].landmarks, face_type, size)
            meta = face_meta("grace.mp4", i, 0, faces[0], m, crop, mask, face_type, size)
            write_face(root / face_type / face_filename("grace", i, 0, "png"), crop, mask, meta)
    return clip, root


def test_a_label_round_trips_through_png_and_jpeg_crops(hopper, tmp_path):
    _, root = hopper
    face = read_face(list_faces(root / "full")[0])
    learned = np.zeros_like(face.mask)
    learned[30:90, 20:100] = 255
    polys = [{"mode": "include", "points": RING}, {"mode": "exclude", "points": HOLE}]
    for fmt in ("png", "jpg"):
        path = tmp_path / f"crop.{fmt}"
        write_face(path, face.image, face.mask, face.meta, learned=learned)
        before = read_face(path)
        assert not L.is_labelled(before.meta) and L.labels_of(before.meta) == []
        meta = L.save_labels(path, polys)
        after = read_face(path)
        assert L.labels_of(after.meta) == L.labels_of(meta) == L.validate(polys, 128)
        assert L.is_user_label(after.meta) and L.is_labelled(after.meta)
        assert after.meta.extra[L.KEY]["propagated_from"] is None
        assert np.array_equal(after.learned, learned), fmt  # the learned mask is untouched
        assert np.array_equal(after.mask, before.mask), fmt  # and so is the hull
        assert after.meta.landmarks == before.meta.landmarks
        # [] removes them, and with_labels never changes the meta it was given.
        cleared = L.with_labels(after.meta, [])
        assert L.KEY not in cleared.extra and L.KEY in after.meta.extra
        L.save_labels(path, [])
        assert not L.is_labelled(read_meta(path))
    junk = dataclasses.replace(face.meta, extra={L.KEY: "junk"})
    assert L.labels_of(junk) == [] and not L.is_user_label(junk)


def test_labels_survive_sort_rename_and_a_copy(hopper, tmp_path, capsys):
    _, root = hopper
    folder = tmp_path / "faces"
    shutil.copytree(root / "full", folder)
    names = [p.name for p in list_faces(folder)]
    drawn = {names[2]: [{"mode": "include", "points": RING}],
             names[5]: [{"mode": "include", "points": RING}, {"mode": "exclude", "points": HOLE}]}
    for name, polys in drawn.items():
        L.save_labels(folder / name, polys)
    assert main(["sort", str(folder), "--by", "blur", "--rename"]) == 0
    renamed = {p.name.split("_", 1)[1]: p for p in list_faces(folder)}
    assert set(renamed) == set(names) and not (folder / names[2]).exists()
    for name in names:
        got = L.labels_of(read_meta(renamed[name]))
        assert got == (L.validate(drawn[name]) if name in drawn else []), name
    copy = tmp_path / "elsewhere" / "any_name.png"
    copy.parent.mkdir()
    shutil.copy(renamed[names[5]], copy)
    assert L.labels_of(read_meta(copy)) == L.validate(drawn[names[5]])
    assert L.is_user_label(read_meta(copy))


def test_rasterise_include_then_exclude_leaves_a_hole_and_order_matters():
    ring = L.rasterise([{"mode": "include", "points": RING},
                        {"mode": "exclude", "points": HOLE}], 128)
    assert ring.dtype == np.uint8 and ring.shape == (128, 128)
    assert ring[60, 60] == 0 and ring[30, 30] == 255 and ring[10, 10] == 0
    assert ring[30, 90] == 255 and ring[110, 60] == 0
    assert abs(int((ring > 0).sum()) - (81 * 81 - 41 * 41)) <= 2
    # The other way round the include paints over the exclude: no hole.
    full = L.rasterise([{"mode": "exclude", "points": HOLE},
                        {"mode": "include", "points": RING}], 128)
    assert full[60, 60] == 255 and abs(int((full > 0).sum()) - 81 * 81) <= 2
    assert not L.rasterise([], 64).any()
    # An exclude alone removes nothing from an empty mask (DFL starts from 0).
    assert not L.rasterise([{"mode": "exclude", "points": RING}], 128).any()


def _poly(n=3, mode="include", v=10.0):
    return {"mode": mode, "points": [[v + i % 50, v + (i % 2) * 5] for i in range(n)]}


@pytest.mark.parametrize("polygons, words", [
    ({"mode": "include"}, "list of polygons"),
    ("include", "list of polygons"),
    ([_poly(mode="paint")], "mode"),
    ([_poly(), ["not", "a", "dict"]], "polygon 2"),
    ([{"mode": "include", "points": [[1, 1], [2, 2]]}], "at least 3"),
    ([{"mode": "exclude"}], "at least 3"),
    ([{"mode": "include", "points": [[1, 1], [2, 2], [float("nan"), 3]]}], "finite"),
    ([{"mode": "include", "points": [[1, 1], [2, 2], [3, float("inf")]]}], "finite"),
    ([{"mode": "include", "points": [[1, 1], [2, 2], ["3", 3]]}], "not a number"),
    ([{"mode": "include", "points": [[1, 1], [2, 2], [3, 3, 3]]}], "[x, y]"),
    ([{"mode": "include", "points": [[1, 1], [2, 2], [257, 3]]}], "beyond"),
    ([{"mode": "include", "points": [[1, 1], [-129, 2], [3, 3]]}], "beyond"),
    ([_poly() for _ in range(65)], "at most 64"),
    ([_poly(600), _poly(401)], "1000 points"),
])
def test_validate_refuses_bad_input_in_one_line(polygons, words):
    with pytest.raises(UserError) as info:
        L.validate(polygons, 128)
    message = str(info.value)
    assert words in message and "\n" not in message, message


def test_validate_cleans_and_keeps_the_limits():
    out = L.validate([{"mode": "include", "points": np.array([[1.23456, 2], [3, 4.5], [5, 6]]),
                       "colour": "red"}], 128)
    assert out == [{"mode": "include", "points": [[1.23, 2.0], [3.0, 4.5], [5.0, 6.0]]}]
    assert all(type(c) is float for c in out[0]["points"][0])
    assert len(L.validate([_poly() for _ in range(64)], 128)) == 64
    assert L.validate([_poly(500), _poly(500)], 128)
    assert L.validate([{"mode": "exclude", "points": [[-128, 256], [0, 0], [1, 2]]}], 128)


def test_propagation_follows_a_known_motion(hopper):
    """Frame 0 labelled on its 128-px 'full' crop, carried onto the 160-px 'whole' crops of
    frames 1-7: every vertex lands where the true frame-to-frame transform puts it, inside
    the mesh (the mouth) and outside it (hair above the head, the background beside it)."""
    clip, root = hopper
    src = read_meta(list_faces(root / "full")[0])
    lm = src.landmarks_in_crop()
    polys = L.validate([{"mode": "include", "points": lm[MOUTH].tolist()},
                        {"mode": "include", "points": [[4, 2], [64, 2], [64, 26], [4, 26]]},
                        {"mode": "exclude", "points": [[2, 30], [30, 30], [30, 90], [2, 90]]}],
                       128)
    to_source = cv2.invertAffineTransform(src.matrix_np)
    worst = 0.0
    for i, path in enumerate(list_faces(root / "whole")[1:], 1):
        dst = read_meta(path)
        out = L.propagate(polys, src, dst)
        assert [p["mode"] for p in out] == ["include", "include", "exclude"]
        motion = (np.vstack([clip.matrices[i], [0, 0, 1]])
                  @ np.linalg.inv(np.vstack([clip.matrices[0], [0, 0, 1]])))[:2]
        truth = [affine(affine(affine(p["points"], to_source), motion), dst.matrix_np)
                 for p in polys]
        for got, want in zip(out, truth):
            err = np.linalg.norm(np.asarray(got["points"]) - want, axis=1).max()
            worst = max(worst, err)
            assert err < 0.025 * dst.size, (i, err)  # 4 px of 160; measured under 2.5
        want_mask = L.rasterise([{**p, "points": t.tolist()} for p, t in zip(polys, truth)], 160)
        # The meshes themselves disagree with the true motion by up to ~2 px (detection
        # jitter), which costs a few points of IoU on these small polygons.
        assert iou(L.rasterise(out, 160), want_mask) > 0.85, i
    print(f"known motion: worst vertex error {worst:.2f} px of 160")


def test_inside_the_mesh_a_point_keeps_its_barycentric_coordinates(hopper):
    """Piecewise affine: the centroid of each of A's Delaunay triangles lands on the centroid
    of the same three landmarks in B (a global or local fit would miss by the mesh's own
    non-rigid change); vertices on landmarks land on the landmarks."""
    from scipy.spatial import Delaunay

    metas = [read_meta(p) for p in list_faces(hopper[1] / "full")]
    a, b = metas[0].landmarks_np[:, :2], metas[2].landmarks_np[:, :2]
    tri = Delaunay(a).simplices
    got = L.mesh_map(a[tri].mean(1), a, b)
    assert np.abs(got - b[tri].mean(1)).max() < 1e-6
    assert np.abs(L.mesh_map(a[MOUTH], a, b) - b[MOUTH]).max() < 1e-6


def test_the_subdiv2d_fallback_maps_like_scipy(hopper, monkeypatch):
    metas = [read_meta(p) for p in list_faces(hopper[1] / "full")]
    a, b = metas[0].landmarks_np[:, :2], metas[4].landmarks_np[:, :2]
    lo, hi = a.min(0), a.max(0)
    q = np.random.default_rng(0).uniform(lo - 40, hi + 40, size=(300, 2))
    with_scipy = L.mesh_map(q, a, b)
    monkeypatch.setitem(sys.modules, "scipy.spatial", None)  # import fails: Subdiv2D
    without = L.mesh_map(q, a, b)
    close = np.linalg.norm(with_scipy - without, axis=1) < 0.05
    assert close.mean() > 0.97, close.mean()  # only co-circular ties may differ
    assert np.isfinite(without).all()


# --- propagate_in_folder's rules -------------------------------------------------------------

def _write_variant(folder: Path, base, name: str, source="clip.mp4", frame=0, face_index=0,
                   polys=None, propagated_from=None, from_frame=None) -> str:
    meta = dataclasses.replace(base.meta, source=source, frame=frame, face_index=face_index,
                               extra={})
    if polys:
        meta = L.with_labels(meta, polys, propagated_from, from_frame=from_frame)
    write_face(folder / name, base.image, base.mask, meta)
    return name


def _origin(path: Path):
    meta = read_meta(path)
    entry = meta.extra.get(L.KEY)
    return None if entry is None else (entry["propagated_from"], entry.get("from_frame"))


def test_propagate_in_folder_respects_radius_source_face_and_user_labels(hopper, tmp_path):
    base = read_face(list_faces(hopper[1] / "full")[0])
    folder = tmp_path / "faces"
    folder.mkdir()
    drawn = [{"mode": "include", "points": RING}]
    mine = [{"mode": "include", "points": HOLE}]
    for f in (8, 10, 25, 30, 31):
        _write_variant(folder, base, f"f{f:02d}.png", frame=f)
    _write_variant(folder, base, "label20.png", frame=20, polys=drawn)
    _write_variant(folder, base, "user22.png", frame=22, polys=mine)
    _write_variant(folder, base, "face1_25.png", frame=25, face_index=1)
    _write_variant(folder, base, "other_25.png", source="other.mp4", frame=25)
    _write_variant(folder, base, "old28.png", frame=28, polys=mine, propagated_from="gone.png",
                   from_frame=40)  # propagated from 12 frames away: 20 is nearer
    _write_variant(folder, base, "old35.png", frame=35, polys=mine, propagated_from="gone.png",
                   from_frame=32)

    written = L.propagate_in_folder(folder, "label20.png", radius=10)
    assert sorted(written) == ["f10.png", "f25.png", "f30.png", "old28.png"]
    for n in written:
        meta = read_meta(folder / n)
        assert _origin(folder / n) == ("label20.png", 20) and not L.is_user_label(meta)
        assert L.is_labelled(meta)
    # Same landmarks and matrix: the polygon lands where it was drawn.
    assert L.labels_of(read_meta(folder / "f25.png")) == L.validate(drawn)
    for n in ("f08.png", "f31.png", "face1_25.png", "other_25.png"):
        assert not L.is_labelled(read_meta(folder / n)), n
    assert L.labels_of(read_meta(folder / "user22.png")) == L.validate(mine)
    assert L.is_user_label(read_meta(folder / "user22.png"))
    assert _origin(folder / "old35.png") == ("gone.png", 32)

    # A second hand label at frame 27 wins where it is nearer, and only there.
    _write_variant(folder, base, "label27.png", frame=27, polys=mine)
    written = L.propagate_in_folder(folder, "label27.png", radius=10)
    assert sorted(written) == ["f25.png", "f30.png", "f31.png", "old28.png"]
    assert _origin(folder / "old35.png") == ("gone.png", 32)  # 3 frames from 32, 8 from 27
    # Back to frame 20: nothing nearer to 27 moves; its own crops are refreshed.
    assert sorted(L.propagate_in_folder(folder, "label20.png", radius=10)) == ["f10.png"]
    assert _origin(folder / "f25.png") == ("label27.png", 27)
    # The hand-drawn label is replaced only when asked, and never the origin's own.
    written = L.propagate_in_folder(folder, "label20.png", radius=10, overwrite_user=True)
    assert "user22.png" in written and "label27.png" in written
    assert "label20.png" not in written
    assert _origin(folder / "user22.png") == ("label20.png", 20)

    with pytest.raises(UserError, match="no mask labels"):
        L.propagate_in_folder(folder, "f08.png")
    with pytest.raises(UserError, match="hand-drawn"):
        L.propagate_in_folder(folder, "f10.png")
    with pytest.raises(UserError, match="no such crop"):
        L.propagate_in_folder(folder, "missing.png")


def test_cli_propagate_lists_exports_and_imports_into_another_extraction(hopper, tmp_path,
                                                                        capsys):
    clip, root = hopper
    folder = tmp_path / "full"
    shutil.copytree(root / "full", folder)
    names = [p.name for p in list_faces(folder)]
    polys = [{"mode": "include", "points": RING}, {"mode": "exclude", "points": HOLE}]
    L.save_labels(folder / names[0], polys)
    assert run_cli("propagate", str(folder), names[0], "--radius", "3") == 0
    assert "to 3 crops" in capsys.readouterr().out
    assert run_cli("labels", str(folder)) == 0
    out = capsys.readouterr().out
    assert f"{names[0]}  2 polygons (1 include, 1 exclude)  drawn by hand" in out
    assert f"propagated from {names[0]}" in out and "4 of 8 crops labelled (1 by hand" in out

    export = tmp_path / "labels.json"
    assert run_cli("labels", str(folder), "--export", str(export)) == 0
    assert set(json.loads(export.read_text())["labels"]) == set(names[:4])
    # Another extraction of the same frames, 'whole' at 160 px and renamed: matched by
    # source file, frame and face, and remapped into its own crop.
    other = tmp_path / "whole"
    shutil.copytree(root / "whole", other)
    for i, p in enumerate(list_faces(other)):
        p.rename(other / f"{i:05d}_{p.name}")
    assert run_cli("labels", str(other), "--import", str(export)) == 0
    assert "imported the labels of 4 crops" in capsys.readouterr().out
    a, b = read_meta(folder / names[0]), read_meta(list_faces(other)[0])
    want = affine(affine(RING, cv2.invertAffineTransform(a.matrix_np)), b.matrix_np)
    got = np.asarray(L.labels_of(b)[0]["points"])
    assert np.abs(got - want).max() < 0.02 and L.is_user_label(b)
    assert not L.is_labelled(read_meta(list_faces(other)[5]))

    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    with pytest.raises(UserError, match="not a mask-labels export"):
        run_cli("labels", str(other), "--import", str(bad))
    with pytest.raises(UserError, match="cannot be combined"):
        run_cli("labels", str(other), "--import", str(bad), "--export", str(export))


# --- a real talking head -----------------------------------------------------------------------

@pytest.fixture(scope="module")
def talking(facedata, tmp_path_factory):
    """The first 15 frames of person_a.mp4, extracted at 128 px with the CLI."""
    from intracoder.media.video import iter_video
    from intracoder.samples import write_clip

    root = tmp_path_factory.mktemp("talking")
    frames = [f.image for f in iter_video(facedata / "person_a.mp4", end=15)]
    write_clip(frames, root / "person_a_0-14.mp4")  # extract has no frame range
    out = root / "faces"
    assert main(["extract", str(root / "person_a_0-14.mp4"), str(out), "--size", "128",
                 "--largest"]) == 0
    paths = list_faces(out)
    assert [read_meta(p).frame for p in paths] == list(range(15))
    return out, paths


def test_propagation_on_a_talking_head(talking, capsys):
    folder, paths = talking
    src = read_meta(paths[0])
    lm = src.landmarks_in_crop()
    cheek = lm[234] + np.array([[-14.0, -6], [-4, -8], [-3, 8], [-13, 12]])  # beside the face
    L.save_labels(paths[0], [{"mode": "include", "points": lm[MOUTH].tolist()},
                             {"mode": "exclude", "points": cheek.tolist()}])
    written = L.propagate_in_folder(folder, paths[0].name, radius=10)
    assert sorted(written) == [p.name for p in paths[1:11]]
    assert not L.is_labelled(read_meta(paths[11]))

    dst = read_meta(paths[10])
    assert L.labels_of(dst) and L.labels_of(dst)[0]["mode"] == "include"
    mouth, moved_cheek = (np.asarray(p["points"]) for p in L.labels_of(dst))
    own = L.rasterise([{"mode": "include", "points": dst.landmarks_in_crop()[MOUTH].tolist()}],
                      128)
    score = iou(L.rasterise([{"mode": "include", "points": mouth.tolist()}], 128), own)
    drawn = L.rasterise([{"mode": "include", "points": lm[MOUTH].tolist()}], 128)
    with capsys.disabled():
        print(f"\ntalking head, frame 0 -> 10: mouth IoU {score:.3f} "
              f"(copying the polygon unchanged: {iou(drawn, own):.3f})")
    assert score >= 0.85

    # The cheek polygon lies outside the mesh; it moves with the head like its nearest
    # landmark (in the source frame, where the head really moved).
    s0 = affine(cheek, cv2.invertAffineTransform(src.matrix_np))
    a, b = src.landmarks_np[:, :2], dst.landmarks_np[:, :2]
    from scipy.spatial import Delaunay

    assert (Delaunay(a).find_simplex(s0) < 0).all()
    nearest = np.linalg.norm(s0[:, None] - a[None], axis=-1).argmin(1)
    expected = affine(s0 + b[nearest] - a[nearest], dst.matrix_np)
    unmoved = affine(s0, dst.matrix_np)
    assert np.linalg.norm(expected - unmoved, axis=1).min() > 5  # the head did move
    assert np.linalg.norm(moved_cheek - expected, axis=1).max() < 2.0
