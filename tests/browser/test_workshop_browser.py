"""The workshop in real Chromium against a real start_with_celery.py: first run with the
setup link, sign in, a 20-card double-sided deck by drag and drop, the preview against
the layout table, progress, thumbnails, the download, cancel and delete, and a saved
printer offset shifting the back pages of a new sheet."""
from __future__ import annotations

import io
import re

import pypdfium2
import pytest
import requests
from pypdf import PdfReader

from tests.browser.conftest import (assert_accessible, assert_fits_narrow_screen, deck_zip,
                                    drop_files, wait_until)

pytestmark = pytest.mark.slow
PASSWORD = "first-admin-pw-1"
RECORD_PROGRESS = """() => {
    window.__progress = [];
    new MutationObserver(() => {
        document.querySelectorAll('#jobs progress, #upload-progress').forEach((bar) => {
            window.__progress.push([bar.id || 'job', Number(bar.value)]);
        });
    }).observe(document.body, {subtree: true, childList: true, attributes: true});
}"""


def _setup_link(server) -> str:
    return wait_until(lambda: (re.search(r"http://\S+/#setup=[\w-]+", server.tail(200)) or
                               [None])[0], 60, "the setup link in the boot output")


def _job(page, status: str | None = None, index: int = 0):
    item = page.locator("#jobs > li").nth(index)
    if status:
        item.locator(f"xpath=self::li[@data-status='{status}']").wait_for(timeout=120_000)
    return item


def _back_page_box(pdf: bytes) -> tuple[int, int]:
    document = pypdfium2.PdfDocument(pdf)
    try:
        picture = document[1].render(scale=300 / 72).to_pil().convert("L")
    finally:
        document.close()
    return picture.point(lambda v: 255 if v < 60 else 0).getbbox()[:2]


def test_workshop_scenario(start_server, browser, steps, tmp_path):
    server = start_server(START_CELERY_WORKER="true", EMBEDDED_REDIS="true",
                          ADMIN_USERNAME="", ADMIN_PASSWORD="")
    server.wait_healthy(90)
    server.wait_workers(3, timeout=90)
    link = _setup_link(server)
    # bypass_csp: only so that the test can inject axe-core into the page.
    context = browser.new_context(accept_downloads=True, bypass_csp=True,
                                  viewport={"width": 1100, "height": 900})
    page = context.new_page()

    # First run: the link opens the "create the first admin" form; then sign in.
    page.goto(server.url + "/")
    assert page.locator("#no-user-hint").is_visible() and page.locator("#setup-section").is_hidden()
    page.goto(link)
    page.locator("#setup-section").wait_for()
    steps.shot(page, "setup-form")
    page.fill("#setup-username", "maker")
    page.fill("#setup-password", PASSWORD)
    page.click("#setup-form button[type=submit]")
    page.locator("#notice", has_text="Admin maker created").wait_for()
    assert page.input_value("#login-username") == "maker" and "#setup" not in page.url
    page.fill("#login-password", PASSWORD)
    page.click("#login-form button[type=submit]")
    page.locator("#app-section").wait_for()
    steps.shot(page, "signed-in")

    # Only valid pairs are offered; the preview is the layout table's geometry.
    page.select_option("#paper-size", "a3")
    assert page.eval_on_selector_all("#card-size option", "o => o.map(x => x.value)") == ["standard"]
    page.select_option("#paper-size", "letter")
    page.select_option("#card-size", "standard")
    layouts = requests.get(server.url + "/api/layouts", timeout=10).json()
    letter = next(l for l in layouts["layouts"] if l["paper_size"] == "letter"
                  and l["card_size"] == "standard")
    drawn = page.eval_on_selector_all("#preview g.slot rect", "rs => rs.map(r => "
                                      "['x','y','width','height'].map(a => +r.getAttribute(a)))")
    assert drawn == letter["slots_px"]
    assert page.locator("#preview rect.mark").count() == len(layouts["papers"]["letter"]["marks_px"])

    # A 20-card double-sided deck as one ZIP dropped on the page.
    drop_files(page, ".drop[data-role=fronts]", {"deck.zip": deck_zip(20)})
    page.locator("#fronts-count", has_text="20 image(s)").wait_for()
    assert page.inner_text("#double_sided-count") == "20 image(s)"
    assert page.inner_text("#pairs-summary") == "20 double-sided pair(s)"
    assert page.locator("#fronts-thumbs img").count() == 20 and page.locator("#pairs li").count() == 20
    caption = page.locator("#preview-caption")
    assert caption.get_attribute("data-sheets") == "3"          # 20 / 8 per sheet
    page.fill("#skip", "1")
    assert page.locator("#preview g.slot.skipped").get_attribute("data-slot") == "1"
    assert caption.get_attribute("data-per-sheet") == "7" and caption.get_attribute("data-sheets") == "3"
    page.fill("#skip", "")
    steps.shot(page, "deck-dropped")

    page.evaluate(RECORD_PROGRESS)
    page.fill("#name", "Dragon deck")
    page.click("#sheets-form button[type=submit]")
    job = _job(page, "succeeded")
    seen = page.evaluate("window.__progress")
    assert any(name == "upload-progress" and 0 < value for name, value in seen), seen
    assert any(name == "job" and 0 < value < 1 for name, value in seen), ([s for s in seen if s[0] == "job"], job.inner_text())
    job.locator("img.result-front").wait_for()
    job.locator("img.result-back").wait_for()
    assert job.locator("img.result-front").evaluate("img => img.naturalWidth") > 100
    job_id = job.get_attribute("data-job-id")
    assert job_id in job.locator(".job-id code").inner_text()
    steps.shot(page, "job-done")

    with page.expect_download() as caught:
        job.locator("button.download").click()
    download = caught.value
    assert download.suggested_filename == "Dragon_deck.pdf"
    saved = steps.folder / download.suggested_filename
    download.save_as(saved)
    pdf = saved.read_bytes()
    assert pdf.startswith(b"%PDF") and len(PdfReader(io.BytesIO(pdf)).pages) == 6

    # Cancel a running (or still queued) job, then delete it with its files.
    page.fill("#ppi", "1200")
    page.click("#sheets-form button[type=submit]")
    heavy = page.locator("#jobs > li").first
    wait_until(lambda: heavy.get_attribute("data-job-id") not in (None, job_id), 60, "new job")
    heavy_id = heavy.get_attribute("data-job-id")
    heavy.locator("button.cancel").click()
    heavy.locator("xpath=self::li[@data-status='cancelled']").wait_for(timeout=30_000)
    steps.shot(page, "cancelled")
    page.on("dialog", lambda dialog: dialog.accept())
    heavy.locator("button.delete").click()
    page.locator(f"#job-{heavy_id}").wait_for(state="detached")
    instance = server.env["INSTANCE_PATH"]
    assert not list(__import__("pathlib").Path(instance).glob(f"**/{heavy_id}*"))
    page.fill("#ppi", "300")

    # A saved printer profile, applied to a new sheet, shifts its back pages.
    page.fill("#offset-x", "30")
    page.fill("#offset-y", "-20")
    page.click("#save-profile")
    page.locator("#profile-summary", has_text="x 30, y -20 px").wait_for()
    page.check("#apply-profile")
    page.fill("#name", "Dragon deck shifted")
    page.click("#sheets-form button[type=submit]")
    shifted = page.locator("#jobs > li").first
    wait_until(lambda: shifted.get_attribute("data-job-id") != job_id, 60, "shifted job")
    shifted.locator("xpath=self::li[@data-status='succeeded']").wait_for(timeout=120_000)
    token = page.evaluate("sessionStorage.getItem('access')")
    shifted_pdf = requests.get(f"{server.url}/api/jobs/{shifted.get_attribute('data-job-id')}/result",
                               headers={"Authorization": f"Bearer {token}"}, timeout=60).content
    (x0, y0), (x1, y1) = _back_page_box(pdf), _back_page_box(shifted_pdf)
    assert abs(x1 - x0 - 30) <= 1 and abs(y1 - y0 + 20) <= 1, ((x0, y0), (x1, y1))
    steps.shot(page, "profile-applied")

    assert_accessible(page)
    assert_fits_narrow_screen(page, steps, "workshop")
    context.close()
