"""End to end: the demo page in real headless Chromium against the app served by uvicorn on loopback."""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from pathlib import Path

import pytest
from mmsent_runkit import jpeg_bytes
from mmsent_testkit import repeated_words

pytestmark = pytest.mark.browser

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tiny_predictor):
    import uvicorn

    from mmsent.serve import create_app

    config = uvicorn.Config(create_app(predictor=tiny_predictor), host="127.0.0.1", port=_free_port(),
                            log_level="warning", lifespan="off")
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not srv.started:
        if time.monotonic() > deadline or not thread.is_alive():
            pytest.fail("uvicorn did not start")
        time.sleep(0.05)
    yield f"http://127.0.0.1:{config.port}"
    srv.should_exit = True
    thread.join(10)


@pytest.fixture
def browser(tmp_path):
    if not CHROMIUM or not CHROMEDRIVER:
        pytest.skip("Chromium or chromedriver not installed (Debian: apt-get install chromium chromium-driver)")
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium not installed (pip install selenium)")
    from selenium.webdriver.chrome.service import Service

    os.environ.setdefault("SE_OFFLINE", "true")  # never let Selenium Manager look for drivers online
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", "--window-size=1100,1400", f"--user-data-dir={tmp_path / 'profile'}"):
        opts.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=opts)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


def test_page_shows_the_same_label_as_the_api(server, browser, tmp_path):
    import httpx
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait

    image = tmp_path / "tweet.jpg"
    image.write_bytes(jpeg_bytes(120, 90, seed=7))
    text = "so happy at the park today #win"
    api = httpx.post(f"{server}/predict", files={"image": ("tweet.jpg", image.read_bytes(), "image/jpeg")},
                     data={"text": text}, timeout=30).json()

    browser.get(f"{server}/")
    wait = WebDriverWait(browser, 30)
    wait.until(lambda d: "dual_stream" in d.find_element(By.ID, "model-info").text)
    file_input = browser.find_element(By.ID, "image")
    browser.execute_script("arguments[0].style.display = 'block';", file_input)  # hidden behind the drop zone
    file_input.send_keys(str(image))
    browser.find_element(By.ID, "text").send_keys(text)
    browser.find_element(By.ID, "submit").click()
    result = wait.until(EC.visibility_of_element_located((By.ID, "result")))

    ARTIFACTS.mkdir(exist_ok=True)
    browser.save_screenshot(str(ARTIFACTS / "demo-page.png"))
    assert browser.find_element(By.ID, "error").is_displayed() is False
    assert result.get_attribute("data-label") == api["label"]
    assert browser.find_element(By.ID, "label").text.lower() == api["label"]
    overlay = browser.find_element(By.ID, "overlay")
    assert overlay.get_attribute("src").startswith("data:image/png;base64,")
    # the crop and the map side by side, with a colour bar
    assert browser.execute_script("return arguments[0].naturalHeight", overlay) == 224
    assert browser.execute_script("return arguments[0].naturalWidth", overlay) > 2 * 224
    page = browser.find_element(By.TAG_NAME, "body").text
    assert not repeated_words(page), page
    assert api["model"]["description"] in browser.find_element(By.ID, "timing").text
    tokens = [e.text for e in browser.find_elements(By.CSS_SELECTOR, "#tokens .tok")]
    assert tokens == [t["token"].removeprefix("##") for t in api["evidence"]["tokens"]]
