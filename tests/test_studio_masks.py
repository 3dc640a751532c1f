"""The studio's Masks tab (studio/masks.py, static/masks.js), its API: include/exclude
polygons saved into a crop's metadata and read back, propagated to the neighbouring frames
of the clip, a crop with one of its masks tinted, the crops the mask net is least sure of,
the convert mask modes; nothing without the token. Bad requests: test_studio_masks_input.py;
the tab in a real browser: test_studio_masks_page.py.

The crops: 12 consecutive frames of one face, extracted from the clip rendered from a bundled
portrait (conftest's ``facesets``)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from intracoder.faces import labels  # noqa: E402
from intracoder.faces.faceset import list_faces, read_face, rewrite_face  # noqa: E402
from intracoder.studio.config import StudioConfig  # noqa: E402
from intracoder.studio.server import STATIC, create_app  # noqa: E402

TOKEN = "masks-test-token"
BASE = "http://127.0.0.1:7860"
SQUARE = [{"mode": "include", "points": [[20, 20], [100, 20], [100, 110], [20, 110]]},
          {"mode": "exclude", "points": [[50, 50], [70, 50], [60, 80]]}]


def _copy_faces(source: Path, out: Path, count: int = 12) -> None:
    """The first ``count`` crops of ``source`` (by name: consecutive frames) and their
    index rows."""
    out.mkdir(parents=True)
    names = [p.name for p in list_faces(source)][:count]
    for name in names:
        shutil.copy2(source / name, out / name)
    index = json.loads((source / "faces.json").read_text())
    index["faces"] = {n: row for n, row in index["faces"].items() if n in names}
    (out / "faces.json").write_text(json.dumps(index))


@pytest.fixture(scope="session")
def faces(facesets) -> Path:
    return facesets[0]


def _workspace(root: Path, faces: Path) -> Path:
    _copy_faces(faces, root / "faces")
    (root / "model" / "checkpoint").mkdir(parents=True)  # a face model, no mask model yet
    (root / "notamask").mkdir()
    (root / "notamask" / "mask.json").write_text("{}")  # without the net beside it
    return root


@pytest.fixture(scope="session")
def segnet(tmp_path_factory, faces) -> Path:
    """A mask model (`mask train`, small, two iterations) on the crops."""
    from intracoder.segment.config import MaskTrainConfig
    from intracoder.segment.train import train_masks

    root = tmp_path_factory.mktemp("segnet")
    _copy_faces(faces, root / "faces")
    train_masks(MaskTrainConfig(faces=[str(root / "faces")], model=str(root / "segnet"),
                                iterations=2, batch=4, hold_out=6), quiet=True)
    return root / "segnet"


def _with_mask_models(root: Path, segnet: Path) -> None:
    """The mask model as `mask train`'s own folder and as a face model's mask/."""
    if not (root / "segnet").exists():
        shutil.copytree(segnet, root / "segnet")
        shutil.copytree(segnet, root / "model" / "mask")


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, faces) -> Path:
    return _workspace(tmp_path_factory.mktemp("studio_masks"), faces)


def _client(workspace: Path, **kwargs) -> TestClient:
    app = create_app(StudioConfig(workspace=str(workspace)), token=TOKEN)
    return TestClient(app, base_url=BASE, **kwargs)


@pytest.fixture(scope="module")
def client(workspace):
    return _client(workspace, cookies={"token": TOKEN})


@pytest.fixture(scope="module")
def names(workspace) -> list[str]:
    return [p.name for p in list_faces(workspace / "faces")]


def _ok(response) -> dict:
    assert response.status_code == 200, response.text
    return response.json()


def _error(response, status: int = 400) -> str:
    assert response.status_code == status, (response.status_code, response.text)
    error = response.json()["error"]
    assert error and "\n" not in error and "Traceback" not in response.text
    return error


def _image(response) -> np.ndarray:
    assert response.status_code == 200 and response.headers["content-type"] == "image/png"
    return cv2.imdecode(np.frombuffer(response.content, np.uint8), cv2.IMREAD_COLOR)


def _labels(client, name: str) -> dict:
    return _ok(client.get("/api/masks/labels", params={"dir": "faces", "name": name}))


def _marks(client) -> dict[str, str | None]:
    rows = _ok(client.get("/api/masks/faceset", params={"dir": "faces"}))["faces"]
    return {row["name"]: row["label"] for row in rows}


def test_labels_are_saved_into_the_crop_and_read_back(client, workspace, names):
    name = names[1]
    size = read_face(workspace / "faces" / name).meta.size
    assert _labels(client, name) == {"size": size, "polygons": [], "propagated_from": None}
    saved = _ok(client.post("/api/masks/labels",
                            json={"dir": "faces", "name": name, "polygons": SQUARE}))
    expected = [{"mode": p["mode"], "points": [[float(x), float(y)] for x, y in p["points"]]}
                for p in SQUARE]
    assert saved == {"size": size, "polygons": expected, "propagated_from": None}
    # In the crop's own metadata, so a new studio (a reload) finds them, and so does training.
    assert labels.labels_of(read_face(workspace / "faces" / name).meta) == expected
    assert _labels(_client(workspace, cookies={"token": TOKEN}), name)["polygons"] == expected
    marks = _marks(client)
    assert marks[name] == "user" and [n for n, m in marks.items() if m] == [name]
    # The image and the hull are what they were: only the metadata changed.
    before, after = read_face(workspace / "faces" / names[0]), read_face(workspace / "faces" / name)
    assert after.image.shape == before.image.shape and after.mask.any()
    # An empty list removes the label.
    _ok(client.post("/api/masks/labels", json={"dir": "faces", "name": name, "polygons": []}))
    assert _labels(client, name)["polygons"] == [] and _marks(client)[name] is None


def test_propagate_carries_the_label_to_the_neighbouring_frames(client, workspace, names):
    name = names[5]
    _ok(client.post("/api/masks/labels", json={"dir": "faces", "name": name,
                                               "polygons": SQUARE}))
    written = _ok(client.post("/api/masks/propagate",
                              json={"dir": "faces", "name": name, "radius": 2}))["written"]
    assert sorted(written) == sorted(names[3:5] + names[6:8])
    marks = _marks(client)
    assert marks[name] == "user"
    assert {n for n, m in marks.items() if m == "propagated"} == set(written)
    neighbour = _labels(client, names[6])
    assert neighbour["propagated_from"] == name
    # The next frame's face barely moved: its polygons lie within a few pixels of the drawn.
    carried = np.array(neighbour["polygons"][0]["points"])
    assert [p["mode"] for p in neighbour["polygons"]] == ["include", "exclude"]
    assert np.abs(carried - np.array(SQUARE[0]["points"])).max() < 12
    # The hand-drawn label itself is untouched.
    assert _labels(client, name)["polygons"][0]["points"] == [[float(x), float(y)] for x, y
                                                              in SQUARE[0]["points"]]


def test_the_overlay_tints_the_chosen_mask(client, workspace, names):
    name = names[9]
    path = workspace / "faces" / name
    face = read_face(path)
    crop = face.image.astype(int)
    hull = _image(client.get("/api/masks/overlay",
                             params={"dir": "faces", "name": name, "which": "hull"}))
    assert hull.shape == face.image.shape
    # Inside the hull tinted green; outside darkened (away from the edge, which is drawn).
    ring = np.ones((5, 5), np.uint8)
    inside = cv2.erode((face.mask > 200).astype(np.uint8), ring) > 0
    outside = cv2.erode((face.mask < 50).astype(np.uint8), ring) > 0
    assert (hull[inside][:, 1] - crop[inside][:, 1]).mean() > 20
    assert (hull[outside] <= crop[outside]).all()
    assert crop[outside].mean() - hull[outside].mean() > 10
    assert "not labelled" in _error(client.get("/api/masks/overlay", params={
        "dir": "faces", "name": name, "which": "labels"}), 404)
    assert "no learned mask" in _error(client.get("/api/masks/overlay", params={
        "dir": "faces", "name": name, "which": "learned"}), 404)
    _ok(client.post("/api/masks/labels", json={"dir": "faces", "name": name,
                                               "polygons": SQUARE}))
    drawn = _image(client.get("/api/masks/overlay",
                              params={"dir": "faces", "name": name, "which": "labels"}))
    assert drawn[60, 30, 1] - crop[60, 30, 1] > 20  # inside the include square
    assert drawn[60, 60].sum() < crop[60, 60].sum()  # in the exclude triangle: darkened
    learned = np.zeros(face.mask.shape, np.uint8)
    learned[:, : learned.shape[1] // 2] = 255  # the left half
    rewrite_face(path, face.__class__(face.image, face.mask, read_face(path).meta, learned))
    shown = _image(client.get("/api/masks/overlay",
                              params={"dir": "faces", "name": name, "which": "learned"}))
    half = learned.shape[1] // 2
    assert (shown[:, : half - 2, 1] - crop[:, : half - 2, 1]).mean() > 20
    assert (shown[:, half + 2:] <= crop[:, half + 2:]).all()
    assert crop[:, half + 2:].mean() - shown[:, half + 2:].mean() > 10


def test_modes_and_mask_models_come_from_the_server(client, workspace, segnet):
    from intracoder.convert.settings import MASK_MODES, Settings

    assert _ok(client.get("/api/masks/modes")) == {"modes": list(MASK_MODES),
                                                   "default": Settings().mask}
    assert _ok(client.get("/api/masks/models")) == {"models": []}
    _with_mask_models(workspace, segnet)
    assert _ok(client.get("/api/masks/models")) == {"models": ["model/mask", "segnet"]}


def test_next_to_label_is_what_the_mask_net_is_least_sure_of(client, workspace, names, segnet):
    from intracoder.segment.apply import rank_uncertain

    _with_mask_models(workspace, segnet)
    expected = [{"name": n, "score": s} for n, s in rank_uncertain(workspace / "faces", segnet, 5)]
    got = _ok(client.get("/api/masks/uncertain",
                         params={"dir": "faces", "mask_model": "segnet", "count": 5}))["faces"]
    assert got == expected and len(got) == 5
    scores = [f["score"] for f in got]
    assert scores == sorted(scores, reverse=True) and {f["name"] for f in got} <= set(names)
    # The face model's own mask/ is picked by its folder or by the model folder.
    for folder in ("model/mask", "model"):
        got = _ok(client.get("/api/masks/uncertain",
                             params={"dir": "faces", "mask_model": folder}))["faces"]
        assert [f["name"] for f in got] == [n for n, _ in rank_uncertain(
            workspace / "faces", segnet, 20)]


def test_without_the_token_nothing_answers(workspace, names):
    anonymous = _client(workspace)
    face = {"dir": "faces", "name": names[0]}
    calls = [("GET", "/api/masks/faceset", {"dir": "faces"}),
             ("GET", "/api/masks/labels", face), ("GET", "/api/masks/models", {}),
             ("GET", "/api/masks/overlay", {**face, "which": "hull"}),
             ("GET", "/api/masks/uncertain", {"dir": "faces", "mask_model": "model"}),
             ("POST", "/api/masks/labels", {**face, "polygons": SQUARE}),
             ("POST", "/api/masks/propagate", {**face, "radius": 2})]
    for method, path, data in calls:
        for token in (None, "wrong"):
            query = {"token": token} if token else {}
            r = (anonymous.get(path, params={**data, **query}) if method == "GET"
                 else anonymous.post(path, json=data, params=query))
            assert "no valid token" in _error(r, 401), (path, token)
    assert _labels(_client(workspace, cookies={"token": TOKEN}), names[0])["polygons"] == []
    # Another site cannot post labels even with the token.
    r = _client(workspace, cookies={"token": TOKEN}).post(
        "/api/masks/labels", json={**face, "polygons": SQUARE},
        headers={"Origin": "http://evil.example"})
    assert "another site" in _error(r, 403)
    assert _labels(_client(workspace, cookies={"token": TOKEN}), names[0])["polygons"] == []
    # The tab's script holds nothing of the workspace, like app.js.
    assert anonymous.get("/masks.js").status_code == 200


def test_the_tab_builds_no_markup_from_data():
    import re

    script = (STATIC / "masks.js").read_text()
    assert not re.search(r"innerHTML|outerHTML|insertAdjacentHTML|document\.write|eval\(",
                         script)
    page = (STATIC / "index.html").read_text()
    assert '<script src="masks.js"></script>' in page and "<option>predicted" not in page
