"""The web app in a real browser: `tweetsim serve`'s server on 127.0.0.1, driven by headless
Chromium (Debian's chromium + chromium-driver, installed by .ci/run) through selenium.

Which models answer: by default small deterministic fakes (fast, the same on every machine). With
TWEETSIM_APP_MODELS=<folder of `dvc repro`'s models> (and TWEETSIM_APP_PARAMS, default params.yaml)
the server loads the real models from it, as `tweetsim serve` does, and the page's screenshot is
written to docs/screenshot.png, the README's:

    TWEETSIM_APP_MODELS=models python -m pytest -q tests/test_app_browser.py
"""

import os
import shutil
import tempfile
import threading
from pathlib import Path

import pytest
from PIL import Image, ImageDraw, ImageFont

from tweetsim.apps import serve as A

from stages_helper import FAKE_INFERENCE

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver") or ("/usr/bin/chromedriver" if Path("/usr/bin/chromedriver").exists() else None)
pytestmark = [pytest.mark.slow, pytest.mark.skipif(
    not (CHROMIUM and DRIVER),
    reason="headless Chromium is not installed (Debian packages chromium + chromium-driver; .ci/run installs them)")]
MODELS = Path(os.environ["TWEETSIM_APP_MODELS"]) if os.environ.get("TWEETSIM_APP_MODELS") else None
PARAMS = Path(os.environ.get("TWEETSIM_APP_PARAMS", ROOT / "params.yaml"))


def banner(path: Path) -> Path:
    """A small poster with text, as a brand would tweet it."""
    im = Image.new("RGB", (640, 400), (255, 214, 10))
    d = ImageDraw.Draw(im)
    d.rectangle([0, 290, 640, 400], fill=(20, 23, 26))
    d.ellipse([430, 40, 610, 220], fill=(230, 57, 70))
    d.text((40, 80), "SUMMER\nSALE", fill=(20, 23, 26), font=ImageFont.load_default(size=84), spacing=6)
    d.text((40, 315), "50% OFF ALL SNEAKERS", fill="white", font=ImageFont.load_default(size=44))
    im.save(path, "JPEG", quality=92)
    return path


def fake_services() -> A.Services:
    drafts = ["Summer is here and so are the deals: 50% off all sneakers this week only. <hyperlink>",
              "Half price. Full speed. Grab your new pair before they're gone <hyperlink>",
              "Your summer rotation just got cheaper #SummerSale"]

    def predict_likes(table):
        import numpy as np

        n = np.array([len(c) if isinstance(c, str) else 0 for c in table["content"]], dtype=float)
        likes = 40 + 3 * n
        probs = np.array([[0.05, 0.25, 0.45, 0.2, 0.05]] * len(table))
        return likes, probs

    class Hourly:  # likes peak in the evening, a little more on weekends
        state = type("State", (), {"context": None})()
        p = FAKE_INFERENCE  # params.yaml's inference params, as a trained bundle gives them

        def predict_with_probs(self, rows, context=None):
            import numpy as np

            d = rows["date"]
            return 60 + 30 * np.cos((d.dt.hour.to_numpy() - 19) / 24 * 2 * np.pi) + 8 * (d.dt.day_of_week.to_numpy() >= 5), None

    def best_time(table):
        from tweetsim.likes.besttime import best_time

        return best_time(Hourly(), table, top=3)

    def explain(table):
        return [{"usual_likes": 1.1, "audience": 0.3, "video": 0.0, "media": 0.2, "time": -0.35, "text": 0.05,
                 "classifier": 0.1, "bias": 2.5}] * len(table)

    return A.Services(predict_likes=predict_likes, bucket_labels=A.bucket_labels([0, 10, 100, 1000, 10000]),
                      generate=lambda table, n: drafts[:n], caption=lambda p: "a photo of a poster",
                      ocr=lambda p: "SUMMER\nSALE\n50% OFF ALL SNEAKERS", explain=explain, best_time=best_time,
                      info={"models": "test fakes"})


@pytest.fixture(scope="module")
def server():
    from werkzeug.serving import make_server

    real = MODELS is not None
    if real:
        services = A.load_services(MODELS, PARAMS, ROOT / "data" / "tweets.parquet")
        assert not services.missing, f"TWEETSIM_APP_MODELS={MODELS}: {services.missing}"
    else:
        services = fake_services()
    srv = make_server("127.0.0.1", 0, A.create_app(services), threaded=True)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{srv.server_port}/", real, services
    srv.shutdown()
    thread.join(10)


@pytest.fixture(scope="module")
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="tweetsim-chromium-")
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", "--window-size=1280,900", "--hide-scrollbars", f"--user-data-dir={profile}"):
        opts.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=DRIVER), options=opts)
    driver.set_page_load_timeout(120)
    yield driver
    driver.quit()
    shutil.rmtree(profile, ignore_errors=True)


def fill(driver, brand="nike", account="nikestore", date="2022-06-03", time="17:30", image: Path | None = None,
         draft="", n=3):
    from selenium.webdriver.common.by import By

    f = driver.find_element
    for name, value in (("brand", brand), ("account", account), ("draft", draft)):
        el = f(By.ID, name)
        el.clear()
        if value:
            el.send_keys(value)
    # date/time widgets take keys in the browser's locale order: set their value as a form would hold it
    for name, value in (("date", date), ("time", time), ("n", str(n))):
        driver.execute_script("arguments[0].value = arguments[1];", f(By.ID, name), value)
    if image is not None:
        f(By.ID, "image").send_keys(str(image))
    # the answer is a new page: wait until this one is gone, or the next lookup may find this page's
    # elements (its #errors) and read them as the new page dies. A flag on this page's window marks
    # it; element staleness is not enough, since chromedriver may answer a lookup of a node of the
    # dying page with a generic error ("Node with given id does not belong to the document").
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.support.ui import WebDriverWait

    driver.execute_script("window.tweetsimOldPage = true;")
    f(By.ID, "submit").click()
    WebDriverWait(driver, 120, ignored_exceptions=(WebDriverException,)).until(
        lambda d: d.execute_script("return document.readyState !== 'loading' && !window.tweetsimOldPage;"))


def wait_for(driver, css: str, timeout: float = 120):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout).until(EC.presence_of_element_located((By.CSS_SELECTOR, css)))


def test_page_in_headless_chromium(server, browser, tmp_path):
    from selenium.webdriver.common.by import By

    url, real, services = server
    assert url.startswith("http://127.0.0.1:")
    browser.get(url)
    assert "tweetsim" in browser.title

    # bad input first: an empty brand gets a message on the page
    fill(browser, brand="")
    assert "Brand: required" in wait_for(browser, "#errors").text

    # a file that is not an image
    junk = tmp_path / "notes.txt"
    junk.write_text("not an image")
    fill(browser, image=junk)
    assert "Image: not an image file" in wait_for(browser, "#errors").text

    # the full flow: image + draft + 3 generated drafts
    img = banner(tmp_path / "summer.jpg")
    fill(browser, image=img, draft="Summer sale: 50% off all sneakers, this week only <hyperlink>")
    likes = wait_for(browser, "#post-likes").text
    assert likes.replace(",", "").isdigit()
    buckets = browser.find_elements(By.CSS_SELECTOR, "#buckets tr")
    assert len(buckets) == len(services.bucket_labels) == 5
    pct = [int(r.find_element(By.CSS_SELECTOR, "td.num").text.rstrip("%")) for r in buckets]
    assert 97 <= sum(pct) <= 103  # rounded probabilities
    assert browser.find_element(By.ID, "caption").text.startswith("a photo of")
    ocr = browser.find_element(By.ID, "ocr").text.upper()
    assert "SALE" in ocr or "SUMMER" in ocr
    drafts = browser.find_elements(By.CSS_SELECTOR, "#drafts li.draft")
    assert 1 <= len(drafts) <= 3
    counts = [int(d.find_element(By.CSS_SELECTOR, ".likes-badge").text.split()[0].replace(",", "")) for d in drafts]
    assert counts == sorted(counts, reverse=True)  # most engaging first
    assert not browser.find_elements(By.ID, "errors") and "Traceback" not in browser.page_source
    # why: the 3 largest factors with their sign; when: the 168-hour curve drawn, the best slots listed
    reasons = [li.text for li in browser.find_elements(By.CSS_SELECTOR, "#reasons li")]
    assert len(reasons) == 3 and all(r[:2] in ("+ ", "− ") for r in reasons), reasons
    curve = browser.find_element(By.CSS_SELECTOR, "#best-time svg polyline")
    assert len(curve.get_attribute("points").split()) == 168 and curve.size["width"] > 300
    slots = browser.find_elements(By.CSS_SELECTOR, "#best-slots li")
    likes_best = [int(li.find_element(By.TAG_NAME, "b").text.replace(",", "")) for li in slots]
    assert len(slots) == 3 and likes_best == sorted(likes_best, reverse=True)

    # the whole page as the README shows it
    height = int(browser.execute_script("return document.documentElement.scrollHeight"))
    browser.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                            {"width": 1280, "height": max(700, height), "deviceScaleFactor": 1, "mobile": False})
    shot = tmp_path / "screenshot.png"
    browser.save_screenshot(str(shot))
    assert Image.open(shot).size[0] >= 1000
    if real:  # only the real models' page goes into the README
        shutil.copyfile(shot, ROOT / "docs" / "screenshot.png")
