"""The app in a real browser: Debian's chromium, driven by Playwright, does what a Space visitor does."""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import numpy as np
import pytest
from PIL import Image

from defgan_hf import AU_NAMES
from defgan_hf.au_estimation import estimate_aus
from defgan_hf.face import align_face, detect_face
from defgan_hf.images import load_image

# Headless chromium that talks to the app only: no background network traffic of its own.
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]  # fmt: skip
TIMEOUT_MS = 60_000


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("The browser tests need the playwright Python package: pip install -r requirements.txt")
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.fail("The browser tests need Debian's chromium: apt-get install -y --no-install-recommends chromium "
                    "(`playwright install` browsers are not used)")  # fmt: skip
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_FLAGS)
        yield browser
        browser.close()


def test_visitor_edits_a_photo_and_downloads_it(app_url, browser, sample_media, tmp_path):
    page = browser.new_page(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(app_url)
    notice = page.locator("#model-notice")
    notice.wait_for()
    assert "Model:" in notice.inner_text()
    status = page.locator("#status")

    # A new photo: the sliders show the expression read from the face.
    path = sample_media("single_face.jpg")
    page.locator("#photo input[type=file]").set_input_files(str(path))
    status.filter(has_text="Edited in").wait_for()
    photo = load_image(path)
    aligned = align_face(photo, detect_face(photo), size=128)
    detected = dict(zip(AU_NAMES, estimate_aus(aligned.face).tolist()))
    for name in ("AU06", "AU12", "AU25"):
        shown = float(page.locator(f"#slider-{name} input[type=number]").input_value())
        assert shown == pytest.approx(detected[name], abs=0.006), name

    # A preset at full intensity puts the sliders on it, and the page edits toward it.
    page.locator("#expression input").click()
    page.get_by_role("option", name="surprise").click()
    status.filter(has_text="Target: AU01 Inner Brow Raiser 0.80").wait_for()
    assert page.locator("#slider-AU01 input[type=number]").input_value() == "0.8"
    assert page.locator("#slider-AU12 input[type=number]").input_value() == "0"

    # A released slider edits again, with the sliders' AUs.
    smile = page.locator("#slider-AU12 input[type=number]")
    smile.fill("0.9")
    smile.press("Tab")
    status.filter(has_text="Target: AU12 Lip Corner Puller 0.90").wait_for()
    assert smile.input_value() == "0.9" and page.locator("#slider-AU01 input[type=number]").input_value() == "0.8"

    sizes = page.eval_on_selector_all("#before-after img", "all => all.map(i => [i.naturalWidth, i.naturalHeight])")
    assert sizes == [list(photo.size)] * 2  # before and after: the whole photo
    screenshot = tmp_path / "defgan-app.png"
    page.screenshot(path=str(screenshot), full_page=True)
    print(f"screenshot: {screenshot}")

    with page.expect_download() as download:
        page.locator("#before-after a[download]").click()
    downloaded = tmp_path / "edited.png"
    download.value.save_as(downloaded)
    edited = Image.open(downloaded)
    assert edited.format == "PNG" and edited.size == photo.size
    assert np.abs(np.asarray(edited.convert("RGB"), dtype=int) - np.asarray(photo, dtype=int)).max() > 0

    # A photo without a face, a file that is not a photo: messages in the page, which keeps working.
    not_a_photo = tmp_path / "notes.jpg"
    not_a_photo.write_text("these are notes, not a photo")
    for upload, message in ((sample_media("free-mountain-vector-01.jpg"), "Found no face"),
                            (not_a_photo, "Could not read the file as an image"),
                            (sample_media("0-f15-hao-ph.jpg"), "Edited in")):  # fmt: skip
        page.locator("#photo button[aria-label='Remove Image']").click()
        page.locator("#photo input[type=file]").set_input_files(str(upload))
        status.filter(has_text=message).wait_for()

    # A bundled example: the group photo, edited whole.
    group = load_image(sample_media("multi_face.jpg"))
    page.get_by_role("button", name="multi_face", exact=True).click()
    page.wait_for_function(
        "size => { const all = [...document.querySelectorAll('#before-after img')];"
        " return all.length == 2 && all.every(i => i.naturalWidth == size[0] && i.naturalHeight == size[1]); }",
        arg=list(group.size),
    )
    status.filter(has_text="Edited in").wait_for()
