"""The dashboard in real Chromium against a real start_with_celery.py: three workers,
a one-queue restart from its button (by keyboard), a SIGKILLed worker's restart shown
without a reload, the log tail, purge with confirmation, and a non-admin kept out."""
from __future__ import annotations

import os
import signal

import pytest
import requests

from tests.browser.conftest import assert_accessible, assert_fits_narrow_screen, wait_until
from tests.e2e.conftest import ADMIN, add_user

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]
USER = ("painter", "painter-password-1")
PIDS = "rows => Object.fromEntries(rows.map(r => [r.dataset.queue, r.dataset.pid]))"


def _pids(page) -> dict[str, str]:
    return page.eval_on_selector_all("#workers tbody tr", PIDS)


def _sign_in(page, url: str, who: tuple[str, str]) -> None:
    page.goto(url + "/admin")
    page.fill("#login-username", who[0])
    page.fill("#login-password", who[1])
    page.click("#login-form button[type=submit]")
    page.locator("#who").wait_for()


# --- the steps --------------------------------------------------------------------------
def restart_one_queue(page, steps) -> dict[str, str]:
    before = _pids(page)
    assert len(before) == 3 and all(before.values()), before
    # By keyboard: focus the row's button and press Enter.
    page.focus("#workers tr[data-queue=pdf_offset] button.restart-queue")
    page.keyboard.press("Enter")

    def restarted():
        now = _pids(page)
        return now if now["pdf_offset"] not in ("", before["pdf_offset"]) else None
    after = wait_until(restarted, 60, "pdf_offset restarted")
    others = [queue for queue in before if queue != "pdf_offset"]
    assert [after[q] for q in others] == [before[q] for q in others]
    steps.shot(page, "restarted-one-queue")
    return after


def killed_worker_restarts(page, steps, pid: int) -> None:
    page.evaluate("window.__sameDocument = true")
    os.kill(pid, signal.SIGKILL)
    row = page.locator("#workers tr[data-queue=default]")
    wait_until(lambda: "crash 1" in row.locator("td.restarts").inner_text(), 60,
               "the crash restart shown")
    wait_until(lambda: row.get_attribute("data-pid") not in ("", str(pid)), 60, "a new pid")
    assert "SIGKILL" in row.locator("td.last-error").inner_text()
    assert page.evaluate("window.__sameDocument") is True  # no reload happened
    steps.shot(page, "crash-restart-shown")


def log_tail_is_the_workers_own(page, server, steps) -> None:
    worker = page.locator("#workers tr[data-queue=default] th").inner_text()
    page.select_option("#log-worker", worker)
    wait_until(lambda: page.get_attribute("#log-tail", "data-worker") == worker
               and page.inner_text("#log-tail").strip(), 20, "log text")
    log_file = os.path.join(server.env["INSTANCE_PATH"], "logs", "worker-default.log")
    with open(log_file, encoding="utf-8", errors="replace") as handle:
        contents = handle.read()
    shown = [line for line in page.inner_text("#log-tail").splitlines() if line.strip()]
    assert shown and all(line in contents for line in shown[-20:])
    assert any(f"{worker} ready" in line for line in shown), shown[-5:]
    steps.shot(page, "log-tail")


def purge_asks_first(page) -> None:
    asked = []
    page.once("dialog", lambda dialog: (asked.append(dialog.message), dialog.accept()))
    page.click("#queues tr[data-queue=pdf_generation] button.purge")
    page.locator("#notice", has_text="Purging pdf_generation: done").wait_for()
    assert asked and "pdf_generation" in asked[0]


def non_admin_is_kept_out(browser, server, steps) -> None:
    page = browser.new_context().new_page()
    try:
        _sign_in(page, server.url, USER)
        page.locator("#not-admin").wait_for()
        assert page.locator("#dashboard").is_hidden() and page.locator("#admin-link").is_hidden()
        steps.shot(page, "non-admin")
        token = page.evaluate("sessionStorage.getItem('access')")
    finally:
        page.context.close()
    for method, path in (("get", "/api/celery/status"), ("post", "/api/celery/restart"),
                         ("post", "/api/celery/log_tail"),
                         ("post", "/api/celery/purge"), ("post", "/api/celery/stop")):
        response = requests.request(method, server.url + path, json={}, timeout=10,
                                    headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 403, (path, response.text)


def test_dashboard_scenario(start_server, browser, steps):
    server = start_server(START_CELERY_WORKER="true", EMBEDDED_REDIS="true")
    server.wait_healthy(90)
    server.wait_workers(3, timeout=90)
    add_user(server, *USER)
    context = browser.new_context(bypass_csp=True, viewport={"width": 1280, "height": 900})
    page = context.new_page()
    try:
        _sign_in(page, server.url, ADMIN)
        page.locator("#dashboard").wait_for()
        wait_until(lambda: page.locator("#workers td.state-RUNNING").count() == 3, 30,
                   "three running workers")
        steps.shot(page, "three-workers")
        after = restart_one_queue(page, steps)
        killed_worker_restarts(page, steps, int(after["default"]))
        log_tail_is_the_workers_own(page, server, steps)
        purge_asks_first(page)
        assert_accessible(page)
        assert_fits_narrow_screen(page, steps, "dashboard")
    finally:
        context.close()
    non_admin_is_kept_out(browser, server, steps)
