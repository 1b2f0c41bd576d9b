"""Browser tests: real Chromium (Debian's) driven by Playwright against a real
`start_with_celery.py`; axe-core from npm (tests/browser/package.json, installed by .ci/run).

Screenshots of every step land in test-artifacts/browser/<test name>/ (git-ignored).
Without Chromium, Playwright or axe-core the tests skip locally and fail under CI=true.
"""
from __future__ import annotations

import io
import os
import re
import time
import zipfile
from pathlib import Path

import pytest

from tests.e2e.conftest import ROOT, start_server  # noqa: F401 (fixture)

CHROMIUM = Path("/usr/bin/chromium")
AXE = Path(__file__).parent / "node_modules" / "axe-core" / "axe.min.js"
ARTEFACTS = ROOT / "test-artifacts" / "browser"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


def _missing(reason: str):
    if os.environ.get("CI"):
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.fixture(scope="module")
def browser():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("playwright is not installed (pip install -r requirements-dev.txt)")
    if not CHROMIUM.exists():
        _missing(f"{CHROMIUM} is missing (apt-get install chromium)")
    if not AXE.exists():
        _missing(f"{AXE} is missing (npm install in tests/browser)")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


class Steps:
    """Numbered screenshots of one scenario."""

    def __init__(self, name: str):
        self.folder = ARTEFACTS / name
        self.folder.mkdir(parents=True, exist_ok=True)
        for old in self.folder.glob("*.png"):
            old.unlink()
        self.count = 0

    def shot(self, page, label: str) -> None:
        self.count += 1
        page.screenshot(path=str(self.folder / f"{self.count:02d}-{label}.png"), full_page=True)


@pytest.fixture
def steps(request):
    return Steps(re.sub(r"\W+", "-", request.node.name))


def assert_accessible(page) -> None:
    """axe-core: no serious or critical violation on the page as it is now."""
    page.add_script_tag(content=AXE.read_text())
    result = page.evaluate("async () => await axe.run(document, {resultTypes: ['violations']})")
    bad = [(v["id"], v["impact"], [n["target"] for n in v["nodes"]][:3])
           for v in result["violations"] if v["impact"] in ("serious", "critical")]
    assert not bad, bad


def assert_fits_narrow_screen(page, steps: Steps, label: str) -> None:
    size = page.viewport_size
    page.set_viewport_size({"width": 375, "height": 800})
    time.sleep(0.3)
    width = page.evaluate("document.documentElement.scrollWidth")
    steps.shot(page, f"{label}-375px")
    page.set_viewport_size(size)
    assert width <= 375, f"the page is {width} px wide at a 375 px screen"


def wait_until(check, timeout: float, message: str, interval: float = 0.25):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s: {message}")


def drop_files(page, selector: str, files: dict[str, bytes]) -> None:
    """Drop files on an element the way a user's drag and drop does (a DataTransfer)."""
    import base64
    payload = [{"name": name, "data": base64.b64encode(data).decode()} for name, data in
               files.items()]
    handle = page.evaluate_handle("""(files) => {
        const transfer = new DataTransfer();
        for (const f of files) {
            const bytes = Uint8Array.from(atob(f.data), (c) => c.charCodeAt(0));
            transfer.items.add(new File([bytes], f.name));
        }
        return transfer;
    }""", payload)
    page.dispatch_event(selector, "drop", {"dataTransfer": handle})


def deck_zip(count: int, size=(2850, 3990)) -> bytes:
    """fronts/ and double_sided/ folders of `count` JPEG cards each: smooth art with a
    panel and a label, 1.9 times the size of a standard card at 600 ppi. A job at 600
    ppi resamples every one from its full size (JPEG's 1/2 decoding would fall short of
    the slot), so it lasts seconds on any machine and its progress shows; the archive
    stays small (14 MB for 20 pairs)."""
    import numpy
    from PIL import Image, ImageDraw, ImageFont

    width, height = size
    y, x = numpy.mgrid[0:height, 0:width].astype(numpy.float32)
    art = numpy.dstack([128 + 90 * numpy.sin(x / 211), 128 + 90 * numpy.cos(y / 277),
                        (x + y) * 200 / (width + height)]).astype(numpy.uint8)
    font = ImageFont.load_default(size=width // 10)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for index in range(1, count + 1):
            for folder in ("fronts", "double_sided"):
                image = Image.fromarray(art)
                draw = ImageDraw.Draw(image)
                panel = (index * 37 % 256, 90 if folder == "fronts" else 200, 160)
                draw.rounded_rectangle([width // 8, height // 2, width * 7 // 8, height * 7 // 8],
                                       width // 20, fill=panel)
                draw.text((width // 10, height // 12), f"{folder[0].upper()}{index}",
                          fill=(255, 255, 255), font=font)
                encoded = io.BytesIO()
                image.save(encoded, "JPEG", quality=85)
                archive.writestr(f"{folder}/card{index:02d}.jpg", encoded.getvalue())
    return buffer.getvalue()
