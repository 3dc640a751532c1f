"""Identity embeddings and the extract --reference filter, on real faces."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from intracoder.errors import UserError
from intracoder.faces.extract import ExtractConfig, extract
from intracoder.faces.faceset import list_faces, read_face
from intracoder.identity.embedding import distance, embed
from intracoder.samples import compose_pair, portrait


@pytest.fixture(scope="module")
def pair_image(tmp_path_factory):
    root = tmp_path_factory.mktemp("pair")
    cv2.imwrite(str(root / "pair.png"), compose_pair(512))
    for name in ("grace_hopper", "astronaut"):
        cv2.imwrite(str(root / f"{name}.png"), portrait(name))
    return root


def test_embedding_separates_the_two_portraits(pair_image):
    g, a = embed(portrait("grace_hopper")), embed(portrait("astronaut"))
    assert g.shape == (128,)
    assert distance(g, a) > 0.6
    # The same person in another framing (the composed frame) stays close.
    g2 = embed(cv2.imread(str(pair_image / "pair.png"))[128:384, :256])
    assert distance(g, g2) < 0.4


@pytest.mark.parametrize("keep,x_range", [("grace_hopper", (0, 256)), ("astronaut", (256, 512))])
def test_reference_keeps_that_person_only(pair_image, finder, tmp_path, keep, x_range):
    out = tmp_path / "faces"
    summary = extract(ExtractConfig(input=str(pair_image / "pair.png"), out_dir=str(out), size=64,
                                    reference=[str(pair_image / f"{keep}.png")]), finder=finder)
    assert summary.faces_written == 1 and summary.faces_rejected == 1
    meta = read_face(list_faces(out)[0]).meta
    assert x_range[0] <= meta.points5[0][0] < x_range[1]
    assert meta.extra["identity_distance"] < 0.6


def test_reference_on_real_stills(facedata, finder, tmp_path):
    stills = facedata / "stills"
    out = tmp_path / "obama"
    summary = extract(ExtractConfig(input=str(stills / "two_people.jpg"), out_dir=str(out),
                                    size=64, reference=[str(stills / "obama_1.jpg"),
                                                        str(stills / "obama_2.jpg")]),
                      finder=finder)
    assert summary.faces_written == 1 and summary.faces_rejected == 1
    obama_x = read_face(list_faces(out)[0]).meta.points5[0][0]
    out_b = tmp_path / "biden"
    extract(ExtractConfig(input=str(stills / "two_people.jpg"), out_dir=str(out_b), size=64,
                          reference=[str(stills / "biden_2.jpg")]), finder=finder)
    biden_x = read_face(list_faces(out_b)[0]).meta.points5[0][0]
    assert abs(obama_x - biden_x) > 200  # two different people of the photo
    with pytest.raises(UserError, match="matches --reference"):
        extract(ExtractConfig(input=str(stills / "obama_2.jpg"), out_dir=str(tmp_path / "none"),
                              size=64, reference=[str(stills / "biden_1.jpg")]), finder=finder)
    assert not (tmp_path / "none").exists()


def test_reference_without_a_face_is_a_user_error(tmp_path, finder):
    blank = tmp_path / "blank.png"
    cv2.imwrite(str(blank), np.full((64, 64, 3), 128, np.uint8))
    with pytest.raises(UserError, match="no face found in the reference"):
        extract(ExtractConfig(input=str(blank), out_dir=str(tmp_path / "o"),
                              reference=[str(blank)]), finder=finder)
