"""The Masks tab's API against bad requests: each is a 400 (or a 404 for a mask a crop does
not have) with one line, never a 500 or a traceback, and writes nothing."""

from __future__ import annotations

import json
import shutil

import pytest

pytest.importorskip("fastapi")
from intracoder.faces.faceset import list_faces  # noqa: E402
from tests.test_studio_masks import (SQUARE, _error, client, faces, names,  # noqa: E402,F401
                                     workspace)


def _bad_requests(names):
    name = names[0]
    face = {"dir": "faces", "name": name}
    square = SQUARE[0]["points"]
    return [
        ("GET", "/api/masks/faceset", {}, "dir: missing"),
        ("GET", "/api/masks/faceset", {"dir": "../.."}, "outside the workspace"),
        ("GET", "/api/masks/faceset", {"dir": "model"}, "without faces"),
        ("GET", "/api/masks/labels", {"dir": "faces"}, "name: missing"),
        ("GET", "/api/masks/labels", {"dir": "faces", "name": f"../faces/{name}"}, "without folders"),
        ("GET", "/api/masks/labels", {"dir": "faces", "name": f"x\\{name}"}, "without folders"),
        ("GET", "/api/masks/labels", {"dir": "faces", "name": f"{name}\x00"}, "NUL"),
        ("GET", "/api/masks/labels", {"dir": "faces", "name": ".."}, "without folders"),
        ("GET", "/api/masks/labels", {"dir": "faces", "name": "faces.json"}, "no such crop"),
        ("GET", "/api/masks/labels", {"dir": "faces", "name": "nope.png"}, "no such crop"),
        ("POST", "/api/masks/labels", "[1, 2]", "JSON object"),
        ("POST", "/api/masks/labels", "{nope", "not JSON"),
        ("POST", "/api/masks/labels", {"name": name, "polygons": []}, "dir: missing"),
        ("POST", "/api/masks/labels", {"dir": ["faces"], "name": name}, "must be a string"),
        ("POST", "/api/masks/labels", {"dir": "faces", "name": 3, "polygons": []}, "must be a string"),
        ("POST", "/api/masks/labels", face, "polygons: must be a list"),
        ("POST", "/api/masks/labels", {**face, "polygons": {"mode": "include"}}, "must be a list"),
        ("POST", "/api/masks/labels", {**face, "polygons": [[1, 2]]}, "not an object"),
        ("POST", "/api/masks/labels", {**face, "polygons": [{"mode": "both", "points": square}]},
         "not include or exclude"),
        ("POST", "/api/masks/labels", {**face, "polygons": [{"mode": "include",
                                                             "points": square[:2]}]},
         "at least 3"),
        ("POST", "/api/masks/labels", {**face, "polygons": [{"mode": "include",
                                                             "points": [*square, ["a", 1]]}]},
         "not a number"),
        ("POST", "/api/masks/labels", {**face, "polygons": [{"mode": "include",
                                                             "points": [*square, [1e6, 1]]}]},
         "lies beyond"),
        ("POST", "/api/masks/labels", json.dumps({**face, "polygons": [
            {"mode": "include", "points": [*square, [float("nan"), 1]]}]}), "finite"),
        ("POST", "/api/masks/labels", {**face, "polygons": [{"mode": "include", "points": square}]
                                       * 1000}, "at most"),
        ("POST", "/api/masks/labels", {**face, "polygons": [], "pad": "x" * (2 << 20)}, "at most"),
        ("POST", "/api/masks/labels", {**face, "name": "link.png", "polygons": []}, "no such crop"),
        ("POST", "/api/masks/propagate", {**face, "radius": "ten"}, "whole number"),
        ("POST", "/api/masks/propagate", {**face, "radius": 10 ** 9}, "between"),
        ("POST", "/api/masks/propagate", {**face, "radius": 0}, "between"),
        ("POST", "/api/masks/propagate", {**face, "radius": True}, "whole number"),
        ("POST", "/api/masks/propagate", {**face, "name": names[11]}, "no mask labels"),
        ("GET", "/api/masks/uncertain", {"dir": "faces"}, "mask_model: missing"),
        ("GET", "/api/masks/uncertain", {"dir": "faces", "mask_model": "faces"},
         "not a mask model folder"),
        ("GET", "/api/masks/uncertain", {"dir": "faces", "mask_model": "notamask"},
         "not a mask model folder"),
        ("GET", "/api/masks/uncertain", {"dir": "faces", "mask_model": "../.."}, "outside"),
        ("GET", "/api/masks/uncertain", {"dir": "faces", "mask_model": "x", "count": "0"},
         "between"),
        ("GET", "/api/masks/uncertain", {"dir": "faces", "mask_model": "x",
                                         "count": str(10 ** 12)}, "between"),
        ("GET", "/api/masks/uncertain", {"dir": "faces", "mask_model": "x", "count": "x"},
         "whole number"),
        ("GET", "/api/masks/overlay", face, "which: missing"),
        ("GET", "/api/masks/overlay", {**face, "which": "<b>"}, "must be one of"),
        ("GET", "/api/masks/overlay", {**face, "name": "a/b.png", "which": "hull"}, "without"),
    ]


def test_a_bad_request_is_one_line_never_a_trace(client, workspace, names):
    before = {p.name: p.read_bytes() for p in list_faces(workspace / "faces")}
    outside = workspace.parent / "outside.png"  # a crop of another folder, linked in
    shutil.copy2(workspace / "faces" / names[0], outside)
    (workspace / "faces" / "link.png").symlink_to(outside)
    try:
        for method, path, data, why in _bad_requests(names):
            if method == "GET":
                r = client.get(path, params=data)
            elif isinstance(data, str):
                r = client.post(path, content=data, headers={"Content-Type": "application/json"})
            else:
                r = client.post(path, json=data)
            assert why in _error(r), (path, str(data)[:200])
    finally:
        (workspace / "faces" / "link.png").unlink()
    # Nothing was written by a refused request.
    assert {p.name: p.read_bytes() for p in list_faces(workspace / "faces")} == before
    assert outside.read_bytes() == before[names[0]]
