"""The workshop in real Chromium against a real start_with_celery.py: first run with the
setup link, sign in, a 20-card double-sided deck by drag and drop, the preview against
the layout table, progress, thumbnails, the download, cancel and delete, and a saved
printer offset shifting the back pages of a new sheet."""
from __future__ import annotations

import io
import re
from pathlib import Path

import pypdfium2
import pytest
import requests
from pypdf import PdfReader

from tests.browser.conftest import (
    assert_accessible,
    assert_fits_narrow_screen,
    deck_zip,
    drop_files,
    wait_until,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]
PASSWORD = "first-admin-pw-1"
JOB_TIMEOUT_MS = 120_000
RECORD_PROGRESS = """() => {
    window.__progress = [];
    new MutationObserver(() => {
        document.querySelectorAll('#jobs progress, #upload-progress').forEach((bar) => {
            window.__progress.push([bar.id || 'job', Number(bar.value)]);
        });
    }).observe(document.body, {subtree: true, childList: true, attributes: true});
}"""
SLOT_RECTS = "rs => rs.map(r => ['x', 'y', 'width', 'height'].map(a => +r.getAttribute(a)))"


def _setup_link(server) -> str:
    def printed():
        found = re.search(r"http://\S+/#setup=[\w-]+", server.tail(200))
        return found[0] if found else None
    return wait_until(printed, 60, "the setup link in the boot output")


def _newest_job(page, other_than: str | None):
    """The newest job item once it is not `other_than`, and its id."""
    item = page.locator("#jobs > li").first
    wait_until(lambda: item.get_attribute("data-job-id") not in (None, other_than), 60,
               "a new job in the list")
    return item, item.get_attribute("data-job-id")


def _wait_status(item, status: str, timeout_ms: int = JOB_TIMEOUT_MS) -> None:
    item.locator(f"xpath=self::li[@data-status='{status}']").wait_for(timeout=timeout_ms)


def _back_page_box(pdf: bytes) -> tuple[int, int]:
    """Top-left corner of the dark pixels of page 2 (the first back), in px at 300 ppi."""
    document = pypdfium2.PdfDocument(pdf)
    try:
        picture = document[1].render(scale=300 / 72).to_pil().convert("L")
    finally:
        document.close()
    return picture.point(lambda v: 255 if v < 60 else 0).getbbox()[:2]


# --- the steps --------------------------------------------------------------------------
def first_run_and_sign_in(page, server, steps) -> None:
    page.goto(server.url + "/")
    page.locator("#no-user-hint").wait_for()
    assert page.locator("#setup-section").is_hidden()
    page.goto(_setup_link(server))
    page.locator("#setup-section").wait_for()
    steps.shot(page, "setup-form")
    page.fill("#setup-username", "maker")
    page.fill("#setup-password", PASSWORD)
    page.click("#setup-form button[type=submit]")
    page.locator("#notice", has_text="Admin maker created").wait_for()
    assert page.input_value("#login-username") == "maker" and "#setup" not in page.url
    # By keyboard alone: the password field has the focus; type and press Enter.
    assert page.evaluate("document.activeElement.id") == "login-password"
    page.keyboard.type(PASSWORD)
    page.keyboard.press("Enter")
    page.locator("#app-section").wait_for()
    steps.shot(page, "signed-in")


def preview_matches_layouts(page, server) -> None:
    page.select_option("#paper-size", "a3")
    offered = page.eval_on_selector_all("#card-size option", "o => o.map(x => x.value)")
    assert offered == ["standard"]
    page.select_option("#paper-size", "letter")
    page.select_option("#card-size", "standard")
    table = requests.get(server.url + "/api/layouts", timeout=10).json()
    letter = next(layout for layout in table["layouts"]
                  if (layout["paper_size"], layout["card_size"]) == ("letter", "standard"))
    assert page.eval_on_selector_all("#preview g.slot rect", SLOT_RECTS) == letter["slots_px"]
    marks = page.locator("#preview rect.mark").count()
    assert marks == len(table["papers"]["letter"]["marks_px"])


def drop_deck(page, steps) -> None:
    drop_files(page, ".drop[data-role=fronts]", {"deck.zip": deck_zip(20)})
    page.locator("#fronts-count", has_text="20 image(s)").wait_for()
    assert page.inner_text("#double_sided-count") == "20 image(s)"
    assert page.inner_text("#pairs-summary") == "20 double-sided pair(s)"
    assert page.locator("#fronts-thumbs img").count() == 20
    assert page.locator("#pairs li").count() == 20
    caption = page.locator("#preview-caption")
    assert caption.get_attribute("data-sheets") == "3"          # 20 cards, 8 per sheet
    page.fill("#skip", "1")
    assert page.locator("#preview g.slot.skipped").get_attribute("data-slot") == "1"
    assert caption.get_attribute("data-per-sheet") == "7"
    page.fill("#skip", "")
    steps.shot(page, "deck-dropped")


def make_and_download(page, steps) -> tuple[str, bytes]:
    page.evaluate(RECORD_PROGRESS)
    page.fill("#name", "Dragon deck")
    # At 600 ppi every image is resampled from its full size (tests.browser.conftest.deck_zip):
    # seconds of work, so the page sees the progress move (it is written twice a second).
    page.fill("#ppi", "600")
    page.click("#sheets-form button[type=submit]")
    job, job_id = _newest_job(page, None)
    _wait_status(job, "succeeded")
    seen = page.evaluate("window.__progress")
    assert any(name == "upload-progress" and value > 0 for name, value in seen), seen
    assert any(name == "job" and 0 < value < 1 for name, value in seen), seen
    for side in ("front", "back"):
        job.locator(f"img.result-{side}").wait_for()
        assert job.locator(f"img.result-{side}").evaluate("img => img.naturalWidth") > 100
    assert job.locator(".job-id code").inner_text() == job_id
    steps.shot(page, "job-done")
    with page.expect_download() as caught:
        job.locator("button.download").click()
    download = caught.value
    assert download.suggested_filename == "Dragon_deck.pdf"
    saved = steps.folder / download.suggested_filename
    download.save_as(saved)
    pdf = saved.read_bytes()
    assert pdf.startswith(b"%PDF") and len(PdfReader(io.BytesIO(pdf)).pages) == 6
    return job_id, pdf


def cancel_and_delete(page, server, steps, previous: str) -> None:
    # The same seconds-long job again, cancelled while it is queued or running.
    page.click("#sheets-form button[type=submit]")
    heavy, heavy_id = _newest_job(page, previous)
    heavy.locator("button.cancel").click()
    _wait_status(heavy, "cancelled", 30_000)
    steps.shot(page, "cancelled")
    page.once("dialog", lambda dialog: dialog.accept())
    heavy.locator("button.delete").click()
    page.locator(f"#job-{heavy_id}").wait_for(state="detached")
    assert not list(Path(server.env["INSTANCE_PATH"]).glob(f"**/{heavy_id}*"))
    page.fill("#ppi", "300")


def profile_shifts_backs(page, server, steps, previous: str, unshifted: bytes) -> None:
    page.fill("#offset-x", "30")
    page.fill("#offset-y", "-20")
    page.click("#save-profile")
    page.locator("#profile-summary", has_text="x 30, y -20 px").wait_for()
    page.check("#apply-profile")
    page.fill("#name", "Dragon deck shifted")
    page.click("#sheets-form button[type=submit]")
    shifted, shifted_id = _newest_job(page, previous)
    _wait_status(shifted, "succeeded")
    token = page.evaluate("sessionStorage.getItem('access')")
    pdf = requests.get(f"{server.url}/api/jobs/{shifted_id}/result", timeout=60,
                       headers={"Authorization": f"Bearer {token}"}).content
    (x0, y0), (x1, y1) = _back_page_box(unshifted), _back_page_box(pdf)
    assert abs(x1 - x0 - 30) <= 1 and abs(y1 - y0 + 20) <= 1, ((x0, y0), (x1, y1))
    steps.shot(page, "profile-applied")


def test_workshop_scenario(start_server, browser, steps):
    server = start_server(START_CELERY_WORKER="true", EMBEDDED_REDIS="true",
                          ADMIN_USERNAME="", ADMIN_PASSWORD="")
    server.wait_healthy(90)
    server.wait_workers(3, timeout=90)
    # bypass_csp: only so that the test can inject axe-core into the page.
    context = browser.new_context(accept_downloads=True, bypass_csp=True,
                                  viewport={"width": 1100, "height": 900})
    page = context.new_page()
    try:
        first_run_and_sign_in(page, server, steps)
        preview_matches_layouts(page, server)
        drop_deck(page, steps)
        job_id, pdf = make_and_download(page, steps)
        cancel_and_delete(page, server, steps, job_id)
        profile_shifts_backs(page, server, steps, job_id, pdf)
        assert_accessible(page)
        assert_fits_narrow_screen(page, steps, "workshop")
    finally:
        context.close()
