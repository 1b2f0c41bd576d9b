"""The endpoints the pages use (issue 10), through Flask's test client: first-run setup,
layouts, printer profiles, job cancel/delete/thumbnails, worker log tails. Bad input is a
4xx JSON error, never a 500; another user's job is a 404."""
from __future__ import annotations

import io

import pypdfium2
import pytest

from app.auth.setup import SetupToken, announce_first_run
from app.jobs.actions import CANCELLED, JobActions
from app.jobs.store import JobStore
from app.supervisor.errors import NotFound
from app.supervisor.logtail import MAX_BYTES, read_tail, worker_log_path
from tests.jobs import test_api as jobs_api
from tests.jobs.test_api import sheet_form, submit
from tests.web.conftest import login

make_api = jobs_api.make_api  # the jobs tests' fixture: an app with alice, bob and root


def _error(response, status):
    assert response.status_code == status, (response.status_code, response.get_data(as_text=True))
    body = response.get_json()
    assert set(body["error"]) == {"code", "message"}
    return body["error"]["code"]


# --- first run ---------------------------------------------------------------------------
def test_first_run_setup_link_creates_one_admin_once(make_app):
    app = make_app(ADMIN_USERNAME=None, ADMIN_PASSWORD=None)
    client = app.test_client()
    assert client.get("/api/auth/setup").get_json() == {"needed": True}
    out = io.StringIO()
    link = announce_first_run(app, out=out)
    assert link in out.getvalue() and "#setup=" in link
    token = link.split("#setup=")[1]
    assert _error(client.post("/api/auth/setup", json={"username": "boss",
                                                       "password": "boss-password-1"}), 400)
    wrong = {"token": "x" * 43, "username": "boss", "password": "boss-password-1"}
    assert _error(client.post("/api/auth/setup", json=wrong), 403) == "invalid_setup_token"
    assert _error(client.post("/api/auth/setup", data="nope"), 400) == "invalid_body"
    weak = {"token": token, "username": "boss", "password": "short"}
    assert _error(client.post("/api/auth/setup", json=weak), 400) == "invalid_user"
    good = {"token": token, "username": "boss", "password": "boss-password-1"}
    created = client.post("/api/auth/setup", json=good)  # the weak try did not use the token
    assert created.status_code == 201 and created.get_json()["role"] == "admin"
    assert _error(client.post("/api/auth/setup", json={**good, "username": "boss2"}), 403)
    assert client.get("/api/auth/setup").get_json() == {"needed": False}
    assert login(client, "boss", "boss-password-1")["access_token"]
    out = io.StringIO()
    assert announce_first_run(app, out=out) is None and "#setup=" not in out.getvalue()
    assert SetupToken(app.config["SETTINGS"].run_dir).read() is None


def test_no_setup_without_a_token_file(app):
    client = app.test_client()
    body = {"token": "anything", "username": "eve", "password": "eve-password-1"}
    assert _error(client.post("/api/auth/setup", json=body), 403) == "setup_closed"


# --- layouts -------------------------------------------------------------------------------
def test_layouts_give_slots_marks_and_valid_pairs(client):
    doc = client.get("/api/layouts").get_json()
    letter = next(row for row in doc["layouts"] if (row["paper_size"], row["card_size"])
                  == ("letter", "standard"))
    assert letter["cards_per_sheet"] == 8 and len(letter["slots_px"]) == 8
    assert letter["slots_px"][0] == [141, 232, 742, 1036]
    assert letter["back_slot"][0] == 4
    assert len(doc["papers"]["letter"]["marks_px"]) == 5
    pairs = {(row["paper_size"], row["card_size"]) for row in doc["layouts"]}
    assert ("a3", "poker") not in pairs and ("tabloid", "poker") in pairs


# --- printer profiles -------------------------------------------------------------------------
def test_profile_is_per_user_and_validated(client, user_headers, admin_headers):
    assert _error(client.get("/api/profile", headers=user_headers), 404) == "not_found"
    for bad in ({"x": "3", "y": 0}, {"x": 601, "y": 0}, {"x": 1, "y": 2, "paper_size": "b5"},
                {"x": 1, "y": 2, "colour": 1}, [1, 2], {"y": 1}):
        assert _error(client.put("/api/profile", json=bad, headers=user_headers), 400)
    assert _error(client.put("/api/profile", data="{", headers=user_headers,
                             content_type="application/json"), 400)
    saved = client.put("/api/profile", json={"x": 12, "y": -7, "paper_size": "a4"},
                       headers=user_headers)
    assert saved.status_code == 200 and saved.get_json()["x"] == 12
    assert client.get("/api/profile", headers=user_headers).get_json()["paper_size"] == "a4"
    assert _error(client.get("/api/profile", headers=admin_headers), 404)
    assert client.delete("/api/profile", headers=user_headers).status_code == 204
    assert _error(client.delete("/api/profile", headers=user_headers), 404)
    assert _error(client.get("/api/profile"), 401)


# --- jobs: thumbnails, names, warnings, profile, cancel, delete -------------------------------
def _dark_box(png: bytes) -> tuple[int, int]:
    from PIL import Image
    picture = Image.open(io.BytesIO(png)).convert("L").point(lambda v: 255 if v < 60 else 0)
    return picture.getbbox()[:2]


def test_finished_job_has_thumbnails_name_and_grouped_warnings(make_api):
    api = make_api()
    form = sheet_form(6, name="Dragon deck")
    form["fronts"].append((io.BytesIO(_png((300, 100))), "wide/odd.png"))
    form["fronts"].append((io.BytesIO(_png((300, 120))), "wide/odd2.png"))
    job_id = submit(api, "/api/jobs/sheets", form)
    done = api.wait(job_id)
    assert done["status"] == "succeeded", done["error"]
    assert done["download_name"] == "Dragon_deck.pdf" and done["label"] == "Dragon deck"
    assert done["summary"].endswith("1 sheet(s), 2 page(s), 8 card(s)")
    assert len(done["warnings"]) == 1 and done["warnings"][0].startswith(
        "2 images differ from the standard card's aspect ratio")
    assert "front_dir" not in done["warnings"][0] and "wide/odd.png" in done["warnings"][0]
    for side in ("front", "back"):
        png = api.get(done["thumbnails"][side])
        assert png.status_code == 200 and png.data.startswith(b"\x89PNG")
    assert _error(api.get(f"/api/jobs/{job_id}/thumbnail/side"), 404)
    assert _error(api.get(done["thumbnails"]["front"], "bob"), 404)
    assert _error(api.post(f"/api/jobs/{job_id}/cancel"), 409) == "already_finished"


def _png(size):
    from tests.jobs.conftest import png_bytes
    return png_bytes((10, 120, 40), size)


def test_saved_profile_shifts_the_back_pages_of_new_sheets(make_api):
    api = make_api()
    assert _error(api.post("/api/jobs/sheets", data={**sheet_form(2), "apply_profile": "true"},
                           content_type="multipart/form-data"), 400) == "no_profile"
    assert _error(api.post("/api/jobs/sheets", data={**sheet_form(2), "apply_profile": "maybe"},
                           content_type="multipart/form-data"), 400)
    assert api.client.put("/api/profile", json={"x": 30, "y": -20},
                          headers=api.headers("alice")).status_code == 200
    plain = api.wait(submit(api, "/api/jobs/sheets", sheet_form(2)))
    shifted = api.wait(submit(api, "/api/jobs/sheets", {**sheet_form(2), "apply_profile": "1"}))
    assert shifted["status"] == "succeeded", shifted["error"]
    assert shifted["printer_offset"] == {"x": 30, "y": -20}
    pages = [_render_pages(api.get(job["result_url"]).data) for job in (plain, shifted)]
    assert _dark_box(pages[0][0]) == _dark_box(pages[1][0])           # fronts stay
    (x0, y0), (x1, y1) = _dark_box(pages[0][1]), _dark_box(pages[1][1])
    assert abs(x1 - x0 - 30) <= 1 and abs(y1 - y0 + 20) <= 1           # backs move


def _render_pages(pdf_bytes: bytes) -> list[bytes]:
    document = pypdfium2.PdfDocument(pdf_bytes)
    try:
        out = []
        for page in document:
            buffer = io.BytesIO()
            page.render(scale=300 / 72).to_pil().save(buffer, "PNG")
            out.append(buffer.getvalue())
        return out
    finally:
        document.close()


def test_delete_removes_files_and_is_owner_only(make_api):
    api = make_api()
    job_id = submit(api, "/api/jobs/sheets", sheet_form(2))
    done = api.wait(job_id)
    assert api.get(done["thumbnails"]["front"]).status_code == 200
    settings = api.app.config["SETTINGS"]
    files = [settings.outputs_dir / f"{job_id}.pdf", settings.uploads_dir / job_id,
             settings.outputs_dir / f"{job_id}.front.png"]
    assert all(path.exists() for path in files)
    assert _error(api.client.delete(f"/api/jobs/{job_id}", headers=api.headers("bob")), 404)
    assert api.client.delete(f"/api/jobs/{job_id}", headers=api.headers("alice")).status_code \
        == 204
    assert not any(path.exists() for path in files)
    assert _error(api.get(f"/api/jobs/{job_id}"), 404)
    assert _error(api.post(f"/api/jobs/{'x' * 100}/cancel"), 404)


def _fallback_children() -> list:
    import psutil
    found = []
    for child in psutil.Process().children(recursive=True):
        try:
            if "app.jobs.fallback_child" in " ".join(child.cmdline()):
                found.append(child)
        except psutil.Error:
            continue
    return found


def test_cancel_stops_a_running_job_in_threads(make_api):
    api = make_api()
    # Large noisy images resampled to the slot size: seconds of work, enough to catch it.
    import numpy
    from PIL import Image
    rng = numpy.random.default_rng(3)
    fronts = []
    for index in range(8):
        buffer = io.BytesIO()
        Image.fromarray(rng.integers(0, 255, (2100, 1500, 3), dtype=numpy.uint8)).save(
            buffer, "JPEG", quality=90)
        fronts.append((io.BytesIO(buffer.getvalue()), f"big{index}.jpg"))
    job_id = submit(api, "/api/jobs/sheets", {**sheet_form(0), "fronts": fronts})
    from tests.conftest import wait_for
    wait_for(lambda: api.get(f"/api/jobs/{job_id}").get_json()["status"] == "running", 30,
             0.05, message="job running")
    children = wait_for(_fallback_children, 10, message="the job's fallback process")
    cancelled = api.post(f"/api/jobs/{job_id}/cancel")
    assert cancelled.status_code == 200 and cancelled.get_json()["cancelled"] is True
    # The fallback kills the job's process at its next look at the store (issue 12).
    wait_for(lambda: not any(child.is_running() and child.status() != "zombie"
                             for child in children), 10, message="the job's process killed")
    body = api.get(f"/api/jobs/{job_id}").get_json()
    assert body["status"] == "failed" and body["error"] == CANCELLED
    assert body["result_url"] is None
    assert not (api.app.config["SETTINGS"].outputs_dir / f"{job_id}.pdf").exists()


def test_cancel_of_a_queued_job_is_never_run(tmp_path, settings):
    store = JobStore(settings.database_path)
    settings.ensure_dirs()
    job = store.create(owner="alice", kind="calibration", params={"paper_size": "letter"},
                       queue="default")
    revoked = []
    actions = JobActions(settings, store, revoke=lambda task, terminate: revoked.append(terminate))
    store.set_dispatch(job.id, mode="celery", task_id="task-1")
    assert actions.cancel(store.get(job.id)) is True and revoked == [False]
    from app.jobs.runner import run_job
    assert run_job(settings, job.id, runner="test", store=store)["skipped"] == "done"
    assert store.get(job.id).error == CANCELLED


# --- worker log tails -------------------------------------------------------------------
def test_log_tail_only_reads_worker_logs(settings, tmp_path):
    settings.ensure_dirs()
    log = settings.logs_dir / "worker-default.log"
    log.write_text("".join(f"line {i}\n" for i in range(5000)))
    status = {"workers": [{"name": "default@h", "log_file": str(log)},
                          {"name": "evil@h", "log_file": "/etc/passwd"},
                          {"name": "redis", "log_file": str(settings.logs_dir / "redis.log")}]}
    assert worker_log_path(settings, status, "default@h") == log.resolve()
    for name in ("evil@h", "redis", "../../etc/passwd"):
        with pytest.raises(NotFound):
            worker_log_path(settings, status, name)
    tail = read_tail(log, 100)
    assert tail["truncated"] and tail["text"].endswith("line 4999\n")
    assert tail["text"].startswith("line ") and len(tail["text"]) <= 100
    assert len(read_tail(log, 10**9)["text"]) <= MAX_BYTES


def test_log_tail_route_is_admin_only_and_validated(client, admin_headers, user_headers):
    path = "/api/celery/log_tail"
    body = {"worker": "default@h"}
    assert _error(client.post(path, json=body, headers=user_headers), 403) == "forbidden"
    assert _error(client.post(path, json=body), 401)
    for bad in ({}, {"worker": ""}, {"worker": "w", "max_bytes": 0},
                {"worker": "w", "max_bytes": MAX_BYTES + 1}, {"worker": "w", "max_bytes": "9"},
                {"worker": "w", "path": "/etc/passwd"}):
        assert _error(client.post(path, json=bad, headers=admin_headers), 400)
    assert client.post(path, json=body, headers=admin_headers).status_code in (404, 503)
