"""The Masks tab in a real browser (headless chromium through selenium, where installed): a
polygon drawn by clicks, closed, saved, propagated, and there again after a reload; the
Convert tab's mask modes from the server and its "Show mask" preview."""

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
from intracoder.faces.faceset import list_faces, read_face  # noqa: E402
from intracoder.studio.config import StudioConfig  # noqa: E402
from intracoder.studio.server import create_app  # noqa: E402
from tests.test_studio_masks import (TOKEN, _client, _error, _image,  # noqa: E402,F401
                                     _labels, _marks, _ok, _with_mask_models, _workspace,
                                     faces, segnet)

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "out" / "test-artifacts" / "studio"


@pytest.fixture()
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


@pytest.fixture()
def server(tmp_path, faces, segnet):
    import uvicorn

    root = _workspace(tmp_path / "ws", faces)
    _with_mask_models(root, segnet)
    app = create_app(StudioConfig(workspace=str(root)), token=TOKEN)
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    for _ in range(100):
        if srv.started:
            break
        time.sleep(0.1)
    yield f"http://127.0.0.1:{srv.servers[0].sockets[0].getsockname()[1]}", root
    srv.should_exit = True
    thread.join(10)


def _wait(condition, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError("timed out")


def _open_crop(driver, name: str) -> None:
    _wait(lambda: driver.find_elements("css selector", "#mk-list li"))
    driver.find_element("css selector", f'#mk-list li[data-name="{name}"]').click()
    _wait(lambda: driver.execute_script(
        "return maskEditor.name === arguments[0] && maskEditor.background !== null "
        "&& document.querySelector('#mk-list li.current').dataset.name === arguments[0]", name))


def test_a_polygon_drawn_in_the_browser_is_there_after_a_reload(server, browser):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import Select

    from intracoder.convert.settings import MASK_MODES

    url, root = server
    client = _client(root, cookies={"token": TOKEN})
    name = [p.name for p in list_faces(root / "faces")][4]
    size = read_face(root / "faces" / name).meta.size
    browser.get(f"{url}/?token={TOKEN}")
    _wait(lambda: browser.find_elements("css selector", "#fs-grid figure"))
    browser.find_element("id", "tab-masks").click()
    _open_crop(browser, name)
    canvas = browser.find_element("id", "mk-canvas")
    pixel = ("return Array.from(document.getElementById('mk-canvas').getContext('2d')"
             ".getImageData(arguments[0], arguments[1], 1, 1).data)")
    crop_inside, crop_hole = (browser.execute_script(pixel, 100, 300),
                              browser.execute_script(pixel, 200, 200))
    # Clicks at these canvas pixels (384 px for the whole crop); offsets are from its centre.
    clicks = [(80, 70), (300, 70), (310, 330), (70, 320)]

    def click(x, y):
        ActionChains(browser).move_to_element_with_offset(canvas, x - 192, y - 192).click().perform()

    for x, y in clicks:
        click(x, y)
    click(250, 250)
    ActionChains(browser).send_keys(Keys.BACKSPACE).perform()  # undoes the last point
    assert browser.execute_script("return maskEditor.open.points.length") == 4
    click(*clicks[0])  # the first point again: closes the polygon
    assert browser.execute_script("return [maskEditor.open, maskEditor.polygons.length]") == [None, 1]
    # An exclude polygon by the keyboard: E, three clicks, Enter.
    ActionChains(browser).send_keys("e").perform()
    for x, y in ((170, 180), (230, 180), (200, 250)):
        click(x, y)
    ActionChains(browser).send_keys(Keys.ENTER).perform()
    # A third by the buttons, then deleted: Include, three clicks, Close, Delete polygon.
    browser.find_element("id", "mk-include").click()
    for x, y in ((20, 20), (60, 20), (40, 50)):
        click(x, y)
    browser.find_element("id", "mk-close").click()
    assert browser.execute_script("return maskEditor.polygons.map(p => p.mode)") == [
        "include", "exclude", "include"]
    browser.find_element("id", "mk-delete").click()
    drawn = browser.execute_script("return maskEditor.polygons")
    assert [p["mode"] for p in drawn] == ["include", "exclude"]
    expected = np.array(clicks) * size / 384
    assert np.abs(np.array(drawn[0]["points"]) - expected).max() < 1.0
    # The fill preview: inside the include polygon tinted, in the exclude hole the crop.
    inside, hole = (browser.execute_script(pixel, 100, 300), browser.execute_script(pixel, 200, 200))
    assert inside != crop_inside and hole == crop_hole
    browser.find_element("id", "mk-save").click()
    _wait(lambda: _labels(client, name)["polygons"])
    saved = _labels(client, name)
    assert saved["propagated_from"] is None
    assert [p["mode"] for p in saved["polygons"]] == ["include", "exclude"]
    assert np.abs(np.array(saved["polygons"][0]["points"]) - expected).max() < 1.0
    _wait(lambda: browser.find_element(
        "css selector", f'#mk-list li[data-name="{name}"]').get_attribute("data-label") == "user")
    browser.find_element("id", "mk-propagate").click()
    _wait(lambda: len(browser.find_elements("css selector", '#mk-list li[data-label="propagated"]'))
          == 11)  # the default radius 10 reaches every other crop of the 12
    assert _marks(client)[name] == "user"
    # Next to label: the crops the mask net is least sure of, most uncertain first.
    browser.find_element("id", "mk-rank").click()
    _wait(lambda: len(browser.find_elements("css selector", "#mk-uncertain li")) == 12)
    listed = browser.execute_script(
        "return [...document.querySelectorAll('#mk-uncertain li')].map(li => li.dataset.name)")
    assert listed == [f["name"] for f in _ok(client.get("/api/masks/uncertain", params={
        "dir": "faces", "mask_model": "model/mask"}))["faces"]]
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    browser.execute_script("window.scrollTo(0, 0)")
    browser.save_screenshot(str(ARTIFACTS / "masks.png"))
    other = listed[0] if listed[0] != name else listed[1]
    browser.find_element("css selector", f'#mk-uncertain li[data-name="{other}"]').click()
    _wait(lambda: browser.execute_script("return maskEditor.name") == other)

    browser.refresh()  # a reload: the polygon comes back from the crop's metadata
    _wait(lambda: browser.find_elements("css selector", "#fs-grid figure"))
    browser.find_element("id", "tab-masks").click()
    _open_crop(browser, name)
    assert browser.execute_script("return maskEditor.polygons") == saved["polygons"]
    assert browser.find_element("id", "mk-canvas").get_attribute("data-polygons") == "2"
    assert browser.execute_script(pixel, 100, 300) == inside
    assert browser.execute_script(pixel, 200, 200) == hole
    # The overlay of the saved labels: the crop darkened outside them (in the hole too).
    browser.find_element("id", "mk-overlay").click()
    Select(browser.find_element("id", "mk-which")).select_by_value("labels")
    _wait(lambda: "which=labels" in browser.execute_script("return maskEditor.background.src"))
    assert sum(browser.execute_script(pixel, 200, 200)[:3]) < sum(hole[:3]) - 30
    # The Convert tab offers every mask mode the server knows.
    options = browser.execute_script(
        "return [...document.querySelectorAll('#cv-mask option')].map(o => o.value)")
    assert options == list(MASK_MODES)
    assert not browser.find_element("id", "error").is_displayed()
    assert not [e for e in browser.get_log("browser") if "Content Security Policy" in e["message"]]


def test_show_mask_puts_the_blend_mask_over_the_frame(tmp_path, quick_model):
    # Convert's "Show mask": the preview frame with the blend mask tinted green, as erode
    # and the mask mode shape it.
    from intracoder.media import video
    from intracoder.samples import render_clip

    shutil.copytree(quick_model, tmp_path / "model")
    with video.VideoWriter(tmp_path / "clip.mp4", 256, 256, 25) as writer:
        for frame in render_clip("grace_hopper", n_frames=6, size=256, seed=7).frames:
            writer.write(frame)
    client = _client(tmp_path, cookies={"token": TOKEN})

    def frame(which: str, **settings) -> np.ndarray:
        return _image(client.get("/api/convert/frame.png", params={
            "video": "clip.mp4", "model": "model", "frame": 3, "which": which,
            "settings": json.dumps({"mask": "hull", "blur": 0, **settings})})).astype(int)

    before = frame("before")
    shown = {erode: frame("mask", erode=erode) for erode in (0, 40)}
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(ARTIFACTS / "convert_mask.png"), np.hstack([before, shown[0], shown[40]]))
    tinted = {erode: (s[..., 1] - before[..., 1] > 20) & (s[..., 2] < before[..., 2])
              for erode, s in shown.items()}
    assert 0.02 < tinted[0].mean() < 0.6, tinted[0].mean()  # the face, not the frame
    assert tinted[40].sum() < 0.8 * tinted[0].sum()  # eroded: a smaller mask
    assert not (tinted[40] & ~tinted[0]).sum() > 0.01 * tinted[0].sum()
    # Outside the mask the frame is as it was (save the marking in its corner).
    outside = ~cv2.dilate(tinted[0].astype(np.uint8), np.ones((9, 9), np.uint8)).astype(bool)
    assert np.abs(shown[0] - before)[outside].mean() < 2
    assert "which" in _error(client.get("/api/convert/frame.png", params={
        "video": "clip.mp4", "model": "model", "frame": 3, "which": "<x>"}))
