"""Faceset tools: sort (blur, pose, identity, similarity, histogram), --drop-worst into
_dropped/ and --restore, --rename, and inspect's contact sheet; on real extracted faces."""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from intracoder.cli import main
from intracoder.faces.faceset import FacesetIndex, list_faces, read_face, write_face
from intracoder.faces.masks import blur_score
from intracoder.faces.sort import (DROPPED, drop_worst, restore, sort_faces, write_order)
from tests.test_cli_errors import assert_one_line_error


def copy_set(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def snapshot(folder: Path) -> tuple[dict, dict]:
    files = {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
             if p.is_file() and p.name != "faces.json"}
    return files, json.loads((folder / "faces.json").read_text())


def test_blur_order_on_crafted_crops(tmp_path, facesets):
    folder = copy_set(facesets[0], tmp_path / "a")
    base = read_face(list_faces(folder)[5])
    index = FacesetIndex(folder)
    for sigma in (1, 2, 3, 4):  # blurred copies; the even ones in the index, the odd ones not
        image = cv2.GaussianBlur(base.image, (0, 0), sigma)
        meta = dataclasses.replace(base.meta, blur=round(blur_score(image, base.mask), 2))
        write_face(folder / f"blurred_{sigma}.png", image, base.mask, meta)
        if sigma % 2 == 0:
            index.faces[f"blurred_{sigma}.png"] = {**index.faces[list_faces(folder)[5].name],
                                                   "blur": meta.blur}
    index.save()

    result = sort_faces(folder, "blur")
    crafted = [n for n in result.names if n.startswith("blurred_")]
    assert crafted == ["blurred_1.png", "blurred_2.png", "blurred_3.png", "blurred_4.png"]
    assert result.names[-1] == "blurred_4.png" and len(result.names) == 16
    assert result.scores == sorted(result.scores, reverse=True)
    assert drop_worst(folder, 2, "blur") == ["blurred_4.png", "blurred_3.png"]
    assert sorted(p.name for p in list_faces(folder / DROPPED)) == ["blurred_3.png",
                                                                   "blurred_4.png"]


def test_yaw_and_pitch_order_on_crafted_rows(tmp_path, facesets):
    folder = copy_set(facesets[0], tmp_path / "a")
    names = [p.name for p in list_faces(folder)]
    rng = np.random.default_rng(3)
    yaws, pitches = rng.permutation(np.arange(-55, 65, 10)), rng.permutation(12) * 3.0 - 15
    index = FacesetIndex(folder)
    for n, y, p in zip(names, yaws, pitches):
        index.faces[n].update(yaw=float(y), pitch=float(p))
    # One crop missing from the index: its own metadata (yaw 80) must be read.
    extra = read_face(folder / names[0])
    write_face(folder / "zz_extra.png", extra.image, extra.mask,
               dataclasses.replace(extra.meta, yaw=80.0, pitch=-40.0))
    index.save()

    by_yaw = sort_faces(folder, "yaw")
    assert by_yaw.names == [names[i] for i in np.argsort(yaws)] + ["zz_extra.png"]
    assert by_yaw.scores[0] == -55 and by_yaw.scores[-1] == 80
    by_pitch = sort_faces(folder, "pitch")
    assert by_pitch.names == ["zz_extra.png"] + [names[i] for i in np.argsort(pitches)]


def test_identity_puts_another_person_last_and_drops_them_first(tmp_path, facesets, capsys):
    folder = copy_set(facesets[0], tmp_path / "a")
    intruders = [p for p in list_faces(facesets[1])[2:5]]
    for p in intruders:  # not in A's index: read from the crops themselves
        shutil.copy(p, folder / f"b_{p.name}")
    result = sort_faces(folder, "identity")
    assert all(n.startswith("b_") for n in result.names[-3:]), result.names
    assert not any(n.startswith("b_") for n in result.names[:-3])
    assert result.scores[-3] > result.scores[-4] + 0.1  # a clear gap
    assert result.faces_per_second > 0

    # --reference: a crop of B puts B's faces first instead.
    ref = sort_faces(folder, "identity", reference=str(intruders[0]))
    assert all(n.startswith("b_") for n in ref.names[:3]), ref.names

    assert main(["sort", str(folder), "--by", "identity", "--drop-worst", "3"]) == 0
    assert "moved 3 faces" in capsys.readouterr().out
    assert sorted(p.name for p in list_faces(folder / DROPPED)) == sorted(
        f"b_{p.name}" for p in intruders)
    assert len(list_faces(folder)) == 12
    order = FacesetIndex(folder).data["order"]
    assert order["by"] == "identity" and len(order["names"]) == 12


def test_drop_and_restore_round_trip(tmp_path, facesets):
    folder = copy_set(facesets[0], tmp_path / "a")
    write_order(folder, sort_faces(folder, "blur"))
    before = snapshot(folder)

    worst = drop_worst(folder, 3, "blur")
    assert worst == before[1]["order"]["names"][::-1][:3]
    second = drop_worst(folder, 0.25, "histogram")  # a second batch: 9 left, 0.25 -> 2
    assert len(second) == 2 and not set(second) & set(worst)
    gone = worst + second
    data = json.loads((folder / "faces.json").read_text())
    assert sorted(data["dropped"]) == sorted(gone)
    assert not set(gone) & set(data["faces"]) and not set(gone) & set(data["order"]["names"])
    assert len(list_faces(folder)) == 7 and len(list_faces(folder / DROPPED)) == 5
    assert all((folder / DROPPED / n).read_bytes() == before[0][n] for n in gone)

    assert sorted(restore(folder)) == sorted(gone)
    assert not (folder / DROPPED).exists()
    after = snapshot(folder)
    assert after[0] == before[0]  # the same files, byte for byte, under the same names
    assert after[1] == before[1]  # and the same index, order included
    assert restore(folder) == []


def test_training_and_inspect_ignore_dropped(tmp_path, facesets):
    from intracoder.commands.inspect import summarise
    from intracoder.data.dataset import load_faceset

    folder = copy_set(facesets[0], tmp_path / "a")
    assert len(load_faceset(folder, 64)) == 12
    gone = drop_worst(folder, 4, "blur")
    faces = load_faceset(folder, 64)
    assert len(faces) == 8 and len(faces.images) == 8
    summary = summarise(folder)
    assert summary["count"] == 8 and summary["dropped"] == 4
    restore(folder)
    assert len(load_faceset(folder, 64)) == 12 and len(gone) == 4


def test_histogram_distance_is_cv2s_and_near_duplicates_go(tmp_path, facesets):
    from intracoder.faces.sort import _distances, _vectors

    folder = copy_set(facesets[0], tmp_path / "a")
    names = [p.name for p in list_faces(folder)]
    vecs = _vectors(folder, names[:3], "histogram")
    for j in (1, 2):
        hists = []
        for n in (names[0], names[j]):
            f = read_face(folder / n)
            h = cv2.calcHist([cv2.cvtColor(f.image, cv2.COLOR_BGR2GRAY)], [0],
                             (f.mask > 127).astype(np.uint8), [256], [0, 256])
            hists.append(h / h.sum())
        want = cv2.compareHist(hists[0], hists[1], cv2.HISTCMP_BHATTACHARYYA)
        assert _distances(vecs, 0, "histogram")[j] == pytest.approx(want, abs=1e-4)

    shutil.copy(folder / names[6], folder / "copy_of_6.png")  # an exact duplicate
    chain = sort_faces(folder, "histogram").names
    assert abs(chain.index("copy_of_6.png") - chain.index(names[6])) == 1
    sim = sort_faces(folder, "similarity").names
    assert abs(sim.index("copy_of_6.png") - sim.index(names[6])) == 1
    assert drop_worst(folder, 1, "histogram")[0] in ("copy_of_6.png", names[6])
    restore(folder)
    assert drop_worst(folder, 1, "similarity")[0] in ("copy_of_6.png", names[6])


def test_rename_numbers_the_crops_and_the_index_follows(tmp_path, facesets, capsys):
    folder = copy_set(facesets[0], tmp_path / "a")
    order = sort_faces(folder, "blur").names
    assert main(["sort", str(folder), "--by", "blur", "--rename"]) == 0
    names = [p.name for p in list_faces(folder)]
    assert names == [f"{i:05d}_{n}" for i, n in enumerate(order)]
    data = json.loads((folder / "faces.json").read_text())
    assert set(data["faces"]) == set(names) and data["order"]["names"] == names
    # Sorting again renames from the original names: no stacked prefixes.
    assert main(["sort", str(folder), "--by", "yaw", "--rename"]) == 0
    again = [p.name for p in list_faces(folder)]
    assert all(re.fullmatch(r"\d{5}_[^0-9].*", n) for n in again), again
    assert sorted(n[6:] for n in again) == sorted(order)
    # Without --rename nothing is renamed.
    assert main(["sort", str(folder), "--by", "blur"]) == 0
    assert sorted(p.name for p in list_faces(folder)) == sorted(again)


def test_contact_sheet_in_index_order(tmp_path, facesets, capsys):
    folder = copy_set(facesets[0], tmp_path / "a")
    by_blur = sort_faces(folder, "blur")
    # An order that is neither by name nor by blur: the sheet must follow the index's.
    names = sorted(by_blur.names, reverse=True)
    names = names[1:] + names[:1]
    write_order(folder, dataclasses.replace(by_blur, names=names))
    first = names[0]
    assert first not in (by_blur.names[0], sorted(names)[0])
    out = tmp_path / "sheet.png"
    assert main(["inspect", str(folder), "--sheet", str(out), "--columns", "5"]) == 0
    assert json.loads(capsys.readouterr().out)["sheet"]["shown"] == 12
    sheet = cv2.imread(str(out))
    assert sheet.shape == (3 * (96 + 14), 5 * 96, 3)
    tile = cv2.resize(read_face(folder / first).image, (96, 96), interpolation=cv2.INTER_AREA)
    assert np.abs(sheet[:96, :96].astype(int) - tile).max() <= 1
    assert sheet[96:110, :96].max() > 150  # the label is drawn under the tile
    assert not list(tmp_path.glob(".sheet*"))


@pytest.mark.parametrize("argv, words", [
    (["sort", "{empty}"], ["no extracted faces"]),
    (["sort", "{a}", "--by", "size"], ["--by 'size'", "blur"]),
    (["sort", "{a}", "--drop-worst", "1.5"], ["between 0 and 1"]),
    (["sort", "{a}", "--drop-worst", "0.0"], ["between 0 and 1"]),
    (["sort", "{a}", "--drop-worst", "lots"], ["count"]),
    (["sort", "{a}", "--drop-worst", "12"], ["has 12 faces"]),
    (["sort", "{a}", "--by", "yaw", "--drop-worst", "2"], ["--by 'yaw'"]),
    (["sort", "{a}", "--restore", "--drop-worst", "2"], ["--restore"]),
    (["inspect", "{a}", "--sheet", "{tmp}/sheet.jpg"], [".png"]),
])
def test_cli_errors_are_one_line(tmp_path, facesets, capsys, argv, words):
    folder = copy_set(facesets[0], tmp_path / "a")
    (tmp_path / "empty").mkdir()
    before = snapshot(folder)
    argv = [a.format(a=folder, empty=tmp_path / "empty", tmp=tmp_path) for a in argv]
    code = main(argv)
    assert_one_line_error(code, capsys.readouterr().err.strip(), *words)
    assert snapshot(folder) == before and not (folder / DROPPED).exists()
