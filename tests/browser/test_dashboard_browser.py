"""The dashboard in real Chromium against a real start_with_celery.py: three workers,
a one-queue restart from its button, a SIGKILLed worker's restart shown without a reload,
the log tail, purge with confirmation, and a non-admin kept out."""
from __future__ import annotations

import os
import signal

import pytest
import requests

from tests.browser.conftest import assert_accessible, assert_fits_narrow_screen, wait_until
from tests.e2e.conftest import ADMIN, add_user

pytestmark = pytest.mark.slow
USER = ("painter", "painter-password-1")


def _pids(page) -> dict[str, str]:
    return page.eval_on_selector_all(
        "#workers tbody tr",
        "rows => Object.fromEntries(rows.map(r => [r.dataset.queue, r.dataset.pid]))")


def _sign_in(page, url: str, who: tuple[str, str]) -> None:
    page.goto(url + "/admin")
    page.fill("#login-username", who[0])
    page.fill("#login-password", who[1])
    page.click("#login-form button[type=submit]")
    page.locator("#who").wait_for()


def test_dashboard_scenario(start_server, browser, steps):
    server = start_server(START_CELERY_WORKER="true", EMBEDDED_REDIS="true")
    server.wait_healthy(90)
    server.wait_workers(3, timeout=90)
    add_user(server, *USER)
    context = browser.new_context(bypass_csp=True, viewport={"width": 1280, "height": 900})
    page = context.new_page()
    _sign_in(page, server.url, ADMIN)
    page.locator("#dashboard").wait_for()
    wait_until(lambda: page.locator("#workers tbody tr td.state-RUNNING").count() == 3, 30,
               "three running workers")
    steps.shot(page, "three-workers")
    page.evaluate("window.__sameDocument = true")

    # Restart one queue from its button: its pid changes, the others stay.
    before = _pids(page)
    assert len(before) == 3 and all(before.values()), before
    page.click("#workers tr[data-queue=pdf_offset] button.restart-queue")
    after = wait_until(lambda: (lambda p: p if p["pdf_offset"] not in ("", before["pdf_offset"])
                                else None)(_pids(page)), 60, "pdf_offset restarted")
    assert {q: after[q] for q in after if q != "pdf_offset"} == \
        {q: before[q] for q in before if q != "pdf_offset"}
    steps.shot(page, "restarted-one-queue")

    # A worker SIGKILLed behind the dashboard's back: its restart and reason appear.
    victim = int(after["default"])
    os.kill(victim, signal.SIGKILL)
    row = page.locator("#workers tr[data-queue=default]")
    wait_until(lambda: "crash 1" in row.locator("td.restarts").inner_text(), 60,
               "the crash restart shown")
    wait_until(lambda: row.get_attribute("data-pid") not in ("", str(victim)), 60, "new pid")
    assert page.evaluate("window.__sameDocument") is True  # no reload happened
    steps.shot(page, "crash-restart-shown")

    # The log tail shows that worker's own log file.
    worker = row.locator("th").inner_text()
    page.select_option("#log-worker", worker)
    log_file = os.path.join(server.env["INSTANCE_PATH"], "logs", "worker-default.log")
    wait_until(lambda: page.get_attribute("#log-tail", "data-worker") == worker
               and page.inner_text("#log-tail").strip(), 20, "log text")
    with open(log_file, encoding="utf-8", errors="replace") as handle:
        contents = handle.read()
    shown = [line for line in page.inner_text("#log-tail").splitlines() if line.strip()]
    assert shown and all(line in contents for line in shown[-20:])
    assert "default@" in contents and any("ready" in line or "celery@" in line or
                                          "default@" in line for line in shown)
    steps.shot(page, "log-tail")

    # Purge asks first; a declined dialog purges nothing.
    answers = []
    page.on("dialog", lambda dialog: (answers.append(dialog.message), dialog.accept()))
    page.click("#queues tr[data-queue=pdf_generation] button.purge")
    page.locator("#notice", has_text="Purging pdf_generation: done").wait_for()
    assert answers and "pdf_generation" in answers[0]

    assert_accessible(page)
    assert_fits_narrow_screen(page, steps, "dashboard")

    # A non-admin gets no dashboard, and 403 from its endpoints.
    other = browser.new_context().new_page()
    _sign_in(other, server.url, USER)
    other.locator("#not-admin").wait_for()
    assert other.locator("#dashboard").is_hidden() and other.locator("#admin-link").is_hidden()
    steps.shot(other, "non-admin")
    token = other.evaluate("sessionStorage.getItem('access')")
    headers = {"Authorization": f"Bearer {token}"}
    for method, path in (("get", "/api/celery/status"), ("post", "/api/celery/restart"),
                         ("get", "/api/celery/workers/x/log"), ("post", "/api/celery/purge")):
        response = requests.request(method, server.url + path, headers=headers, json={},
                                    timeout=10)
        assert response.status_code == 403, (path, response.text)
    other.context.close()
    context.close()
