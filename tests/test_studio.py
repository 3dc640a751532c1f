"""`intracoder studio`: its API over a real workspace (FastAPI's TestClient, always), and the
page in a real browser (headless chromium through selenium, where they are installed): each
tab, the frame slider and erode change the preview, which matches what convert writes for
that frame; starting and stopping training leaves a loadable checkpoint."""

from __future__ import annotations

import json
import shutil
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from intracoder.media import video  # noqa: E402
from intracoder.samples import render_clip  # noqa: E402
from intracoder.studio.config import StudioConfig  # noqa: E402
from intracoder.studio.server import create_app  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "out" / "test-artifacts" / "studio"
TOKEN = "studio-test-token"  # the per-run secret, fixed so that the tests can carry it


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, facesets, quick_model):
    root = tmp_path_factory.mktemp("studio")
    shutil.copytree(facesets[0], root / "faces_a")
    shutil.copytree(facesets[1], root / "faces_b")
    shutil.copytree(quick_model, root / "model")
    with video.VideoWriter(root / "clip.mp4", 256, 256, 25) as writer:
        for frame in render_clip("grace_hopper", n_frames=12, size=256, seed=7).frames:
            writer.write(frame)
    return root


@pytest.fixture(scope="module")
def client(workspace):
    return TestClient(create_app(StudioConfig(workspace=str(workspace)), token=TOKEN),
                      base_url="http://127.0.0.1:7860", cookies={"token": TOKEN})


def _decode(response) -> np.ndarray:
    assert response.status_code == 200, response.text
    return cv2.imdecode(np.frombuffer(response.content, np.uint8), cv2.IMREAD_COLOR)


def test_the_workspace_lists_facesets_models_and_videos(client):
    ws = client.get("/api/workspace").json()
    assert ws["facesets"] == ["faces_a", "faces_b"] and ws["models"] == ["model"]
    assert ws["videos"] == ["clip.mp4"]


def test_a_bad_input_is_the_cli_line_not_a_trace(client, workspace):
    (workspace / "empty").mkdir(exist_ok=True)
    r = client.get("/api/faceset", params={"dir": "empty"})
    assert r.status_code == 400 and r.json() == {
        "error": "empty: a folder without faces (extract some first)"}
    r = client.get("/api/convert/info", params={"video": "clip.mp4", "model": "faces_a"})
    assert r.status_code == 400 and "not a trained model folder" in r.json()["error"]
    r = client.get("/api/faceset", params={"dir": "../.."})
    assert r.status_code == 400 and "outside the workspace" in r.json()["error"]


def test_drop_and_restore_from_the_page(client, workspace):
    rows = client.get("/api/faceset", params={"dir": "faces_a"}).json()["faces"]
    names = [rows[0]["name"], rows[1]["name"]]
    assert client.post("/api/faceset/drop", json={"dir": "faces_a", "names": names}).status_code == 200
    after = client.get("/api/faceset", params={"dir": "faces_a"}).json()
    assert len(after["faces"]) == len(rows) - 2 and sorted(after["dropped"]) == sorted(names)
    assert (workspace / "faces_a" / "_dropped" / names[0]).is_file()
    client.post("/api/faceset/restore", json={"dir": "faces_a"})
    assert len(client.get("/api/faceset", params={"dir": "faces_a"}).json()["faces"]) == len(rows)
    crop = _decode(client.get("/api/faceset/crop", params={"dir": "faces_a", "name": names[0]}))
    assert crop.shape == (96, 96, 3) and crop.std() > 10


def test_the_previewed_frame_is_what_convert_writes(client, workspace):
    from intracoder.convert.pipeline import ConvertConfig, convert

    settings = {"erode": 20.0}
    frame = 5
    shown = _decode(client.get("/api/convert/frame.png", params={
        "video": "clip.mp4", "model": "model", "frame": frame, "settings": json.dumps(settings)}))
    other = _decode(client.get("/api/convert/frame.png", params={
        "video": "clip.mp4", "model": "model", "frame": frame,
        "settings": json.dumps({"erode": 0.0})}))
    assert np.abs(shown.astype(int) - other).mean() > 0.05, "erode changes the frame"
    keys = client.post("/api/convert/apply_from", json={"model": "model", "frame": 0,
                                                        "settings": settings}).json()
    assert keys["keyframes"][0]["frame"] == 0
    out = workspace / "rendered.mp4"
    convert(ConvertConfig(input=str(workspace / "clip.mp4"), output=str(out),
                          model=str(workspace / "model"), crf=0,
                          settings=str(workspace / "model" / "convert_settings.json")))
    written = list(video.iter_frames(out))[frame]
    mse = np.mean((written.astype(float) - shown.astype(float)) ** 2)
    # crf 0 is lossless in YUV, not in BGR: the round trip through 4:2:0 costs ~40 dB.
    assert mse == 0 or 10 * np.log10(255 ** 2 / mse) > 35


def test_rendering_from_the_studio_uses_the_tuned_settings(client, workspace):
    # Tuned on three frames, then rendered by the page's button: the same file as the CLI's
    # convert --settings with those keyframes.
    for frame, erode in ((0, 20.0), (4, 0.0), (8, 30.0)):
        client.post("/api/convert/apply_from", json={"model": "model", "frame": frame,
                                                     "settings": {"erode": erode}})
    r = client.post("/api/convert/render", json={"model": "model", "video": "clip.mp4",
                                                 "output": "studio.mp4"})
    assert r.status_code == 200, r.text
    status = _finished(client, "/api/convert/status", {"output": "studio.mp4"}, 240)
    assert status["returncode"] == 0, status
    from intracoder.convert.pipeline import ConvertConfig, convert

    cli = workspace / "cli.mp4"
    convert(ConvertConfig(input=str(workspace / "clip.mp4"), output=str(cli),
                          model=str(workspace / "model"),
                          settings=str(workspace / "model" / "convert_settings.json")))
    for a, b in zip(video.iter_frames(workspace / "studio.mp4"), video.iter_frames(cli)):
        mse = np.mean((a.astype(float) - b.astype(float)) ** 2)
        assert mse == 0 or 10 * np.log10(255 ** 2 / mse) > 40
    assert video.probe(workspace / "studio.mp4").frame_count == 12


def test_the_studio_command_checks_its_workspace(capsys, tmp_path):
    from intracoder.cli import main

    assert main(["studio", "--workspace", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err
    assert err.strip() == f"intracoder: error: {tmp_path / 'nowhere'}: workspace folder not found"


def test_training_started_and_stopped_from_the_studio_is_loadable(client, workspace):
    from intracoder.training.inference import load_model

    r = client.post("/api/train/start", json={"a": "faces_a", "b": "faces_b",
                                              "model": "trained", "preset": "quick",
                                              "minutes": 5, "preview_every": 5})
    assert r.status_code == 200, r.text
    status = _wait(lambda: (s := client.get("/api/train/status",
                                            params={"model": "trained"}).json())
                   and s.get("done") and s["done"] >= 3 and s, timeout=240)
    assert status["running"] and status["rate"]
    client.post("/api/train/stop", json={"model": "trained"})
    final = client.get("/api/train/status", params={"model": "trained"}).json()
    assert not final["running"] and final["returncode"] == 0, final
    model, state = load_model(workspace / "trained")
    assert state["iteration"] >= 3


def test_the_report_of_a_conversion(client, workspace):
    r = client.post("/api/report/start", json={"model": "model", "source": "clip.mp4",
                                               "swapped": "rendered.mp4"})
    assert r.status_code == 200, r.text
    status = _finished(client, "/api/report/status", {"swapped": "rendered.mp4"}, 300)
    assert status["returncode"] == 0 and status["ready"], status
    page = client.get(status["url"])
    assert page.status_code == 200 and "<table>" in page.text


@pytest.fixture(scope="module")
def server(workspace):
    import uvicorn

    app = create_app(StudioConfig(workspace=str(workspace)), token=TOKEN)
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    for _ in range(100):
        if srv.started:
            break
        time.sleep(0.1)
    yield f"http://127.0.0.1:{srv.servers[0].sockets[0].getsockname()[1]}"
    srv.should_exit = True
    thread.join(10)


@pytest.fixture(scope="module")
def browser():
    if not shutil.which("chromedriver") or not (shutil.which("chromium")
                                                or shutil.which("chromium-browser")):
        pytest.skip("chromium and chromium-driver are not installed (apt-get install "
                    "chromium chromium-driver)")
    from selenium import webdriver

    options = webdriver.ChromeOptions()
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                "--window-size=1400,1000"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})  # to see CSP violations
    service = webdriver.ChromeService(executable_path=shutil.which("chromedriver"))
    driver = webdriver.Chrome(options=options, service=service)
    yield driver
    driver.quit()


def _wait(condition, timeout=60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.25)
    raise AssertionError("timed out")


def _finished(client, path: str, params: dict, timeout: float) -> dict:
    """The status of a studio job once it has stopped running."""
    return _wait(lambda: (s := client.get(path, params=params).json()) and not s["running"]
                 and s, timeout=timeout)


def _image_bytes(driver, element_id: str) -> bytes:
    src = driver.find_element("id", element_id).get_attribute("src")
    import urllib.request

    request = urllib.request.Request(src, headers={"Cookie": f"token={TOKEN}"})
    with urllib.request.urlopen(request) as r:
        return r.read()


def test_every_tab_in_a_real_browser(server, browser, workspace):
    from selenium.webdriver.support.ui import Select

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    browser.get(f"{server}/?token={TOKEN}")
    _wait(lambda: browser.find_elements("css selector", "#fs-grid figure"))
    _wait(lambda: browser.execute_script(
        "return [...document.images].filter(i => i.src).every(i => i.complete && i.naturalWidth)"))
    browser.save_screenshot(str(ARTIFACTS / "facesets.png"))
    figures = browser.find_elements("css selector", "#fs-grid figure")
    assert len(figures) == 12
    browser.find_element("id", "fs-min-blur").send_keys("100000")  # hides every face
    assert not any(f.is_displayed() for f in figures)
    browser.find_element("id", "fs-min-blur").clear()
    browser.execute_script("document.getElementById('fs-min-blur').dispatchEvent(new Event('input'))")
    assert all(f.is_displayed() for f in figures)

    browser.find_element("id", "tab-convert").click()
    Select(browser.find_element("id", "cv-video")).select_by_visible_text("clip.mp4")
    Select(browser.find_element("id", "cv-model")).select_by_visible_text("model")
    browser.find_element("id", "cv-open").click()
    _wait(lambda: browser.find_element("id", "cv-after").get_attribute("naturalWidth") not in
          (None, "0"))
    first = _image_bytes(browser, "cv-after")
    slider = browser.find_element("id", "cv-frame")
    browser.execute_script("arguments[0].value = 6; arguments[0].dispatchEvent(new Event('input'))",
                           slider)
    _wait(lambda: "frame=6" in browser.find_element("id", "cv-after").get_attribute("src"))
    moved = _image_bytes(browser, "cv-after")
    assert moved != first, "the slider shows another frame"
    erode = browser.find_element("id", "cv-erode")
    erode.clear()
    erode.send_keys("30")
    browser.execute_script("arguments[0].dispatchEvent(new Event('change'))", erode)
    _wait(lambda: "%22erode%22%3A30" in browser.find_element("id", "cv-after").get_attribute("src"))
    eroded = _image_bytes(browser, "cv-after")
    assert eroded != moved, "erode changes the preview"
    # What the page shows is what convert writes for that frame with those settings.
    from intracoder.convert.pipeline import ConvertConfig, convert

    out = workspace / "browser_check.mp4"
    convert(ConvertConfig(input=str(workspace / "clip.mp4"), output=str(out),
                          model=str(workspace / "model"), crf=0, erode=30.0, end=7))
    shown = cv2.imdecode(np.frombuffer(eroded, np.uint8), cv2.IMREAD_COLOR)
    written = list(video.iter_frames(out))[6]
    mse = np.mean((written.astype(float) - shown.astype(float)) ** 2)
    assert mse == 0 or 10 * np.log10(255 ** 2 / mse) > 35  # crf 0: lossless in YUV only
    out.unlink()
    time.sleep(1)
    browser.save_screenshot(str(ARTIFACTS / "convert.png"))

    browser.find_element("id", "tab-training").click()
    model = browser.find_element("id", "tr-model")
    model.clear()
    model.send_keys("trained")  # the run the training test started and stopped
    _wait(lambda: browser.find_element("id", "tr-loss-img").get_attribute("naturalWidth")
          not in (None, "0"))
    _wait(lambda: "saved iteration" in browser.find_element("id", "tr-status").text)
    browser.save_screenshot(str(ARTIFACTS / "training.png"))
    browser.find_element("id", "tab-report").click()
    Select(browser.find_element("id", "rp-model")).select_by_visible_text("model")
    Select(browser.find_element("id", "rp-source")).select_by_visible_text("clip.mp4")
    Select(browser.find_element("id", "rp-swapped")).select_by_visible_text("rendered.mp4")
    _wait(lambda: browser.find_element("id", "rp-frame").get_attribute("src"))
    time.sleep(2)  # the report's images
    browser.save_screenshot(str(ARTIFACTS / "report.png"))
    assert not browser.find_element("id", "error").is_displayed()
    browser.refresh()  # the cookie alone keeps the page working
    _wait(lambda: browser.find_elements("css selector", "#fs-grid figure"))
    assert not [e for e in browser.get_log("browser") if "Content Security Policy" in e["message"]]
