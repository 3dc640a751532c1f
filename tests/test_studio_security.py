"""The studio against other callers (issue 26): a page rebound to 127.0.0.1 (foreign Host),
another origin posting, a caller without the per-run token, /files asked for what the page
never shows, and hostile names in a shared faceset (stored XSS). A small workspace of its
own: no model or extraction needed, so these run in a second."""

from __future__ import annotations

import json
import re
import shutil
import threading
import time
from html.parser import HTMLParser
from pathlib import Path

import cv2
import numpy as np
import pytest

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from intracoder.studio import security  # noqa: E402
from intracoder.studio.config import StudioConfig  # noqa: E402
from intracoder.studio.server import STATIC, create_app  # noqa: E402

TOKEN = "security-test-token"
BASE = "http://127.0.0.1:7860"
HOSTILE = ["<img src=x onerror=alert(1)>.png", '"><img src=x onerror=alert(1)>.png']
HOSTILE_DIR = "<img src=x onerror=alert(2)>"
PAGE_CSP = ("default-src 'self'; script-src 'self'; object-src 'none'; base-uri 'none'; "
            "frame-ancestors 'none'; img-src 'self' data: blob:; media-src 'self' blob:; "
            "style-src 'self'")


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    top = tmp_path_factory.mktemp("studio_security")
    root = top / "ws"
    crop = np.full((64, 64, 3), 128, np.uint8)
    faces = root / HOSTILE_DIR
    faces.mkdir(parents=True)
    names = ["face1.png", *HOSTILE]
    for name in names:
        cv2.imwrite(str(faces / name), crop)
    (faces / "faces.json").write_text(json.dumps({"version": 1, "sources": {}, "faces": {
        n: {"blur": 100.0 + i, "yaw": 0.0, "pitch": 0.0} for i, n in enumerate(names)}}))
    (root / ".secret").mkdir()
    for path in (root / ".hidden.png", root / ".secret" / "notes.png", top / "outside.png"):
        cv2.imwrite(str(path), crop)
    checkpoint = root / "model" / "checkpoint"
    checkpoint.mkdir(parents=True)
    (checkpoint / "model.weights.h5").write_bytes(b"weights")
    (checkpoint / "state.json").write_text('{"iteration": 3}')
    (root / "report").mkdir()
    (root / "report" / "index.html").write_text("<html><body><table></table></body></html>")
    (root / "clip.mp4").write_bytes(b"not really a video")
    (top / "outdir").mkdir()
    cv2.imwrite(str(top / "outdir" / "x.png"), crop)
    (root / "link.png").symlink_to(top / "outside.png")
    (root / "linkdir").symlink_to(top / "outdir")
    (root / "peek.png").symlink_to(root / ".secret" / "notes.png")
    return root


def _client(workspace: Path, host: str = "127.0.0.1", base: str = BASE, **kwargs) -> TestClient:
    app = create_app(StudioConfig(workspace=str(workspace), host=host), token=TOKEN)
    return TestClient(app, base_url=base, **kwargs)


@pytest.fixture(scope="module")
def client(workspace):
    return _client(workspace, cookies={"token": TOKEN})


@pytest.fixture(scope="module")
def anonymous(workspace):
    return _client(workspace)


def _error(response, status: int) -> str:
    assert response.status_code == status, (response.status_code, response.text)
    error = response.json()["error"]
    assert "\n" not in error and "Traceback" not in response.text
    return error


def test_a_foreign_host_is_refused_on_get_and_post(client):
    # What a page that rebound evil.example to 127.0.0.1 sends, token or not.
    foreign = {"Host": "evil.example:7860"}
    assert "not this studio's address" in _error(
        client.get("/api/workspace", headers=foreign, params={"token": TOKEN}), 403)
    _error(client.post("/api/faceset/restore", headers=foreign, json={"dir": HOSTILE_DIR}), 403)
    _error(client.get(f"/files/{HOSTILE_DIR}/face1.png", headers=foreign), 403)
    for host in ("127.0.0.1:7860", "localhost:7860", "[::1]:7860", "LOCALHOST", "127.0.0.1:1"):
        assert client.get("/api/workspace", headers={"Host": host}).status_code == 200, host
    for host in ("127.0.0.1.evil.example", "localhost.", "evil@127.0.0.1", "127.0.0.1:x", ""):
        _error(client.get("/api/workspace", headers={"Host": host}), 403)


def test_the_host_given_with_host_is_accepted_and_only_it(workspace):
    named = _client(workspace, host="studio.lan", cookies={"token": TOKEN})
    assert named.get("/api/workspace", headers={"Host": "studio.lan:7860"}).status_code == 200
    _error(named.get("/api/workspace", headers={"Host": "other.lan:7860"}), 403)
    # Listening everywhere: any address of the machine, never a name (which could be rebound).
    wide = _client(workspace, host="0.0.0.0", cookies={"token": TOKEN})
    assert wide.get("/api/workspace", headers={"Host": "192.168.1.5:7860"}).status_code == 200
    _error(wide.get("/api/workspace", headers={"Host": "evil.example:7860"}), 403)
    assert security.page_url("0.0.0.0", 7860, "t") == "http://127.0.0.1:7860/?token=t"
    assert security.page_url("::1", 80, "t") == "http://[::1]:80/?token=t"


def test_a_cross_origin_post_is_refused_even_with_the_token(client):
    for origin in ("http://evil.example", "http://127.0.0.1:8000", "https://127.0.0.1:7860",
                   "null", "http://evil.example:7860"):
        r = client.post("/api/faceset/restore", json={"dir": HOSTILE_DIR},
                        params={"token": TOKEN}, headers={"Origin": origin})
        assert "another site" in _error(r, 403), origin
    for origin in ("http://127.0.0.1:7860", None):  # the page itself; curl sends none
        headers = {"Origin": origin} if origin else {}
        r = client.post("/api/faceset/restore", json={"dir": HOSTILE_DIR}, headers=headers)
        assert r.status_code == 200, r.text


def test_without_the_token_nothing_answers(workspace, anonymous):
    for call in (lambda c, **k: c.get("/api/workspace", **k),
                 lambda c, **k: c.get(f"/files/{HOSTILE_DIR}/face1.png", **k),
                 lambda c, **k: c.post("/api/faceset/restore", json={"dir": HOSTILE_DIR}, **k)):
        assert "no valid token" in _error(call(anonymous), 401)
        _error(call(anonymous, params={"token": "wrong"}), 401)
        _error(call(anonymous, params={"token": "é"}), 401)
        assert call(anonymous, params={"token": TOKEN}).status_code == 200
        wrong = _client(workspace, cookies={"token": TOKEN + "x"})
        _error(call(wrong), 401)
        assert call(_client(workspace, cookies={"token": TOKEN})).status_code == 200
    # The page's own script and style sheet hold nothing of the workspace.
    assert anonymous.get("/app.js").status_code == 200


def test_the_page_sets_the_token_cookie(workspace):
    browser = _client(workspace)
    r = browser.get("/")
    assert r.status_code == 401 and r.headers["content-type"].startswith("text/plain")
    assert "?token=" in r.text and "set-cookie" not in r.headers
    assert browser.get("/", params={"token": "wrong"}).status_code == 401
    r = browser.get("/", params={"token": TOKEN})
    assert r.status_code == 200 and '<script src="app.js">' in r.text
    cookie = r.headers["set-cookie"]
    assert cookie.startswith(f"token={TOKEN};")
    assert {"httponly", "samesite=strict", "path=/"} <= {p.strip().lower() for p in
                                                         cookie.split(";")}
    # A reload and the page's own fetches carry the cookie only.
    assert browser.get("/").status_code == 200
    assert browser.get("/api/workspace").json()["facesets"] == [HOSTILE_DIR]


@pytest.mark.parametrize("path, status, why", [
    (".hidden.png", 403, "hidden"), (".secret/notes.png", 403, "hidden"),
    ("peek.png", 403, "hidden"), ("model/checkpoint/model.weights.h5", 403, "not a file"),
    ("model/checkpoint/state.json", 403, "not a file"), ("..%2Foutside.png", 403, "outside"),
    ("report/..%2F..%2Foutside.png", 403, "outside"), ("%2e%2e/outside.png", 403, "outside"),
    ("{outside}", 403, "outside"), ("link.png", 403, "outside"), ("linkdir/x.png", 403, "outside"),
    ("face%00.png", 400, "NUL"), ("missing.png", 404, "no such file")])
def test_files_refuses_what_the_page_never_shows(client, workspace, path, status, why):
    path = path.format(outside=workspace.parent / "outside.png")
    r = client.get(f"/files/{path}")
    assert why in _error(r, status)
    assert r.headers["content-type"] == "application/json"


def test_files_serves_crops_reports_and_videos(client):
    r = client.get(f"/files/{HOSTILE_DIR}/face1.png")
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    assert cv2.imdecode(np.frombuffer(r.content, np.uint8), cv2.IMREAD_COLOR).shape == (64, 64, 3)
    r = client.get("/files/report/index.html")
    assert r.status_code == 200 and "<table>" in r.text
    assert client.get("/files/clip.mp4").content == b"not really a video"


def test_every_response_carries_the_security_headers(client, anonymous):
    responses = {
        "page": client.get("/"), "script": client.get("/app.js"),
        "json": client.get("/api/workspace"), "crash": client.post("/api/faceset/sort", json={}),
        "png": client.get("/api/faceset/crop", params={"dir": HOSTILE_DIR, "name": "face1.png"}),
        "bad input": client.get("/api/faceset", params={"dir": "nowhere"}),
        "no token": anonymous.get("/api/workspace"), "no page": anonymous.get("/"),
        "foreign": client.get("/api/workspace", headers={"Host": "evil.example"}),
        "missing": client.get("/nothing-here"),
        "file": client.get(f"/files/{HOSTILE_DIR}/face1.png"),
        "report": client.get("/files/report/index.html"),
        "refused file": client.get("/files/.hidden.png")}
    crash = responses["crash"]
    assert crash.status_code == 500 and "KeyError" in crash.json()["error"]
    files = ("file", "report", "refused file")
    for what, r in responses.items():
        csp = security.FILES_CSP if what in files else PAGE_CSP
        assert r.headers.get("content-security-policy") == csp, what
        assert r.headers.get("x-content-type-options") == "nosniff", what
        assert r.headers.get("referrer-policy") == "no-referrer", what
    # The report frames in the Report tab and keeps its inline <style>; no script runs there.
    assert "script-src 'none'" in security.FILES_CSP
    assert "frame-ancestors 'self'" in security.FILES_CSP


def test_a_hostile_crop_name_comes_back_as_data(client):
    r = client.get("/api/faceset", params={"dir": HOSTILE_DIR})
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    assert {f["name"] for f in r.json()["faces"]} == {"face1.png", *HOSTILE}
    for name in HOSTILE:
        crop = client.get("/api/faceset/crop", params={"dir": HOSTILE_DIR, "name": name})
        assert crop.status_code == 200 and crop.headers["content-type"] == "image/png"


def test_the_page_builds_no_markup_from_data():
    script = (STATIC / "app.js").read_text()
    assert not re.search(r"innerHTML\s*\+?=\s*(?!\"\"\s*;)", script), "innerHTML from data"
    for sink in ("outerHTML", "insertAdjacentHTML", "document.write", "eval(", "setAttribute(\"on"):
        assert sink not in script, sink

    class Inline(HTMLParser):
        found: list[str]
        tag = None

        def handle_starttag(self, tag, attrs):
            self.tag = tag
            self.found += [f"{tag} {k}" for k, _ in attrs if k.startswith("on") or k == "style"]
            if tag == "script" and not dict(attrs).get("src"):
                self.found.append("script without src")

        def handle_data(self, data):
            if self.tag in ("script", "style") and data.strip():
                self.found.append(f"inline {self.tag}")

    parser = Inline()
    parser.found = []
    parser.feed((STATIC / "index.html").read_text())
    assert parser.found == []


def test_the_studio_command_prints_the_url_with_its_token(monkeypatch, capsys, workspace):
    import uvicorn

    from intracoder.cli import main

    monkeypatch.setattr(uvicorn, "run", lambda app, **kwargs: None)
    tokens = []
    for _ in range(2):
        assert main(["studio", "--workspace", str(workspace), "--port", "7999"]) == 0
        found = re.findall(r"http://127\.0\.0\.1:7999/\?token=([\w-]+)", capsys.readouterr().err)
        assert len(found) == 1 and len(found[0]) >= 32
        tokens.append(found[0])
    assert tokens[0] != tokens[1], "a new token each run"


def test_hostile_names_stay_text_in_a_real_browser(workspace):
    if not shutil.which("chromedriver") or not (shutil.which("chromium")
                                                or shutil.which("chromium-browser")):
        pytest.skip("chromium and chromium-driver are not installed")
    import uvicorn
    from selenium import webdriver

    app = create_app(StudioConfig(workspace=str(workspace)), token=TOKEN)
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    options = webdriver.ChromeOptions()
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage"):
        options.add_argument(arg)
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(
        executable_path=shutil.which("chromedriver")))
    try:
        while not srv.started:
            time.sleep(0.1)
        driver.get(f"http://127.0.0.1:{srv.servers[0].sockets[0].getsockname()[1]}/?token={TOKEN}")
        deadline = time.monotonic() + 30
        while len(driver.find_elements("css selector", "#fs-grid figure")) < 3:
            assert time.monotonic() < deadline, "the grid did not fill"
            time.sleep(0.2)
        time.sleep(1)  # any injected image's onerror
        names = driver.execute_script(
            "return [...document.querySelectorAll('#fs-grid figure')].map(f => f.dataset.name)")
        assert sorted(names) == sorted(["face1.png", *HOSTILE])
        assert driver.execute_script("return document.querySelectorAll('[onerror]').length") == 0
        assert driver.execute_script("return document.querySelectorAll('img[src=x]').length") == 0
        options = driver.execute_script(
            "return [...document.querySelectorAll('#fs-dir option')].map(o => o.textContent)")
        assert options == [HOSTILE_DIR]
        assert "token" not in driver.current_url  # out of the address bar and the history
    finally:
        driver.quit()
        srv.should_exit = True
        thread.join(10)
