"""`mlfuse demo` in a real browser: Playwright drives the system Chromium (Debian package ``chromium``;
Playwright's own browser download is never used). Skips with a reason where Chromium or the playwright
package is missing; with CI=true it must run (``.ci/run`` installs both).

``MLFUSE_DEMO_SCREENSHOT=docs/demo.png python -m pytest tests/demo/test_demo_browser.py`` refreshes the
README's screenshot; otherwise the screenshot goes to the test's temporary folder.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage

from mlfuse.data.sample import write_sample
from mlfuse.demo.server import DemoServer
from tests.conftest import IN_CI

CHROMIUM = next((p for p in ("/usr/bin/chromium", shutil.which("chromium") or "") if p and os.path.isfile(p)), None)
LAUNCH_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
               "--disable-component-update", "--disable-sync", "--no-first-run",
               "--disable-dev-shm-usage"]  # containers often have a tiny /dev/shm


def wait_until(page, predicate: str, timeout: float = 30.0) -> None:
    """Poll a JavaScript predicate with ``page.evaluate`` (CDP, not subject to the page's CSP, which
    forbids the ``eval`` that Playwright's ``wait_for_function`` uses)."""
    deadline = time.monotonic() + timeout
    while not page.evaluate(predicate):
        if time.monotonic() > deadline:
            raise AssertionError(f"not true after {timeout} s: {predicate}")
        page.wait_for_timeout(50)


def _need(what: str) -> None:
    if IN_CI:
        pytest.fail(f"CI=true but {what} (.ci/run installs it)")
    pytest.skip(f"needs {what}")


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _need("the playwright package (pip install -e '.[test]')")
    if CHROMIUM is None:
        _need("Chromium at /usr/bin/chromium (apt-get install chromium)")
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS, headless=True)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoServer]:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFUSE_CACHE_DIR", str(tmp_path_factory.mktemp("demo_cache")))
        with DemoServer("127.0.0.1", 0).start() as srv:
            yield srv


def test_upload_run_two_methods_metrics_and_mismatch_error(browser, server: DemoServer, tmp_path: Path) -> None:
    vis, ir = write_sample(tmp_path / "pair")
    small = tmp_path / "small_ir.png"
    PILImage.fromarray(np.asarray(PILImage.open(ir))[:100, :140]).save(small)
    page = browser.new_page(viewport={"width": 1360, "height": 1180})
    outside: list[str] = []
    page.on("request", lambda r: outside.append(r.url) if not r.url.startswith(server.url) else None)
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(server.url)
    page.wait_for_selector("body[data-ready='1']")

    # the methods list: every registered one, those without weights disabled with the reason
    assert page.locator("#methods .method").count() >= 8
    disabled = page.locator("#methods .method.disabled")
    if disabled.count():
        assert "--weights" in disabled.first.locator(".reason").inner_text()

    # upload the pair into the two roles
    page.set_input_files("#structural-file", str(vis))
    wait_until(page, "document.getElementById('structural-info').textContent.startsWith('vis.png')")
    page.set_input_files("#functional-file", str(ir))
    wait_until(page, "document.getElementById('functional-info').textContent.startsWith('ir.png')")
    assert "384×288, colour" in page.inner_text("#structural-info")
    page.click("#swap")  # the roles exchange, and back
    assert page.inner_text("#structural-info").startswith("ir.png")
    assert page.inner_text("#functional-info").startswith("vis.png")
    page.click("#swap")
    assert page.inner_text("#structural-info").startswith("vis.png")

    # run two methods: MLFuse (the packaged weights) and GFF
    for box in page.locator("#methods input[type=checkbox]").all():
        box.set_checked(box.get_attribute("data-method") in ("mlfuse", "gff"))
    page.click("#run")
    page.wait_for_selector("#progress:not([hidden])")
    wait_until(page, "document.querySelectorAll('#results .panel.result').length === 2", timeout=60)
    wait_until(page, "[...document.querySelectorAll('#results .panel.result img')]"
                     ".every(i => i.complete && i.naturalWidth === 384)")
    assert page.locator("#results .panel.result .failed").count() == 0
    assert page.locator("#results .panel.source img").count() == 2
    for method in ("mlfuse", "gff"):
        link = page.locator(f"#results .panel[data-name='{method}'] a[download]")
        assert link.get_attribute("download") == f"vis_{method}.png"
        assert re.match(r"\d+\.\d+ s", page.locator(f"#results .panel[data-name='{method}'] .time").inner_text())

    # metrics table: one row per method, the best value of each metric marked
    wait_until(page, "document.querySelectorAll('#metrics-table tbody tr').length === 2")
    headers = page.locator("#metrics-table thead th").all_inner_texts()
    assert headers[:2] == ["method", "time"] and any(h.startswith("Qabf") for h in headers)
    assert page.locator("#metrics-table td.best").count() >= len(headers) - 2

    # synchronised zoom: a wheel on one panel zooms every panel the same way (kept for the screenshot)
    page.locator("#results .panel[data-name='gff'] .viewport").hover()
    page.mouse.wheel(0, -400)
    transforms = page.eval_on_selector_all("#results .viewport img", "els => els.map(e => e.style.transform)")
    assert len(transforms) == 4 and len(set(transforms)) == 1 and "scale(1)" not in transforms[0]
    page.evaluate("window.scrollTo(0, 0)")
    shot = Path(os.environ.get("MLFUSE_DEMO_SCREENSHOT") or tmp_path / "demo.png")
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000
    page.dblclick("#results .panel[data-name='mlfuse'] .viewport")
    transforms = page.eval_on_selector_all("#results .viewport img", "els => els.map(e => e.style.transform)")
    assert set(transforms) == {"translate(0%, 0%) scale(1)"}

    # the comparison slider: two chosen images, the left one clipped at the handle
    page.check("input[name=view][value=slider]")
    assert page.is_hidden("#results") and page.is_visible("#compare")
    page.select_option("#slider-a", label="structural")
    page.select_option("#slider-b", label="mlfuse")
    page.locator("#compare").scroll_into_view_if_needed()
    box = page.locator("#compare").bounding_box()
    page.mouse.click(box["x"] + box["width"] * 0.25, box["y"] + box["height"] / 2)
    clip = page.eval_on_selector("#compare-a", "e => e.style.clipPath")
    assert re.fullmatch(r"inset\(0px 7[45](\.\d+)?% 0px 0px\)", clip), clip
    assert page.get_attribute("#compare-b", "src").endswith("/mlfuse.png")
    page.check("input[name=view][value=grid]")

    # another profile: its metrics; the slow one (FMI) is named as not computed until ticked
    page.select_option("#profile", "paper")
    wait_until(page, "document.getElementById('profile-reference').textContent.includes('FMI_pixel')")
    headers = page.locator("#metrics-table thead th").all_inner_texts()
    assert [h.split()[0] for h in headers] == ["method", "time", "VIF", "SCD", "Qabf", "CC", "SSIM"]

    # a mismatched pair: a readable message, no new job
    page.set_input_files("#functional-file", str(small))
    wait_until(page, "document.getElementById('functional-info').textContent.startsWith('small_ir.png')")
    page.click("#run")
    page.wait_for_selector("#error:not([hidden])")
    message = page.inner_text("#error")
    assert message.startswith("size mismatch: vis.png is 384x288 but small_ir.png is 140x100 (W x H)"), message
    assert "Traceback" not in message

    # a non-image upload: one line naming the file
    junk = tmp_path / "notes.png"
    junk.write_text("not an image")
    page.set_input_files("#structural-file", str(junk))
    wait_until(page, "document.getElementById('error').textContent.startsWith('notes.png')")
    assert page.inner_text("#error") == "notes.png: not an image file (format not recognised)"

    assert not errors, errors
    assert not outside, f"the page contacted something else than the demo server: {outside}"
    page.close()
