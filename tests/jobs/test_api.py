"""The jobs HTTP API through Flask's test client: end to end in threads mode (no broker,
and a broker that is down), in Celery mode with a real worker, ownership isolation, and
bad input that must always be a 400 leaving nothing behind."""
from __future__ import annotations

import io
import time

import pypdfium2
import pytest
from flask_jwt_extended import create_access_token

from app import create_app
from app.jobs import services
from app.jobs.engine import SheetJobParams
from app.runtime import runtime_of
from tests.conftest import make_settings, wait_for
from tests.jobs.conftest import png_bytes

JOB_FIELDS = {"id", "kind", "status", "progress", "message", "mode", "error", "created_at",
              "started_at", "finished_at", "result_url",
              # for the pages (app.jobs.presentation)
              "owner", "owner_name", "label", "summary", "warnings", "cancelled", "thumbnails",
              "download_name", "printer_offset"}


@pytest.fixture(autouse=True)
def _fast_password_hashing(monkeypatch):
    from werkzeug.security import generate_password_hash

    import app.auth.users as users
    monkeypatch.setattr(users, "generate_password_hash",
                        lambda password: generate_password_hash(password, "pbkdf2:sha256:1000"))


class Api:
    """A test client plus tokens for alice, bob (users) and root (admin)."""

    def __init__(self, settings):
        self.app = create_app(settings)
        self.client = self.app.test_client()
        users = self.app.extensions["scm.users"]
        self.tokens, self.ids = {}, {}
        with self.app.app_context():
            for name, role in (("alice", "user"), ("bob", "user"), ("root", "admin")):
                user = users.create(name, f"{name}-password-1", role)
                self.ids[name] = user.id
                self.tokens[name] = create_access_token(
                    identity=user.id, additional_claims={"role": role, "ver": 0})

    def headers(self, who):
        return {"Authorization": f"Bearer {self.tokens[who]}"}

    def post(self, path, who="alice", **kw):
        return self.client.post(path, headers=self.headers(who), **kw)

    def get(self, path, who="alice"):
        return self.client.get(path, headers=self.headers(who))

    def wait(self, job_id, who="alice", timeout=30):
        def finished():
            body = self.get(f"/api/jobs/{job_id}", who).get_json()
            return body if body["status"] in ("succeeded", "failed") else None
        return wait_for(finished, timeout, message=f"job {job_id}")

    def close(self):
        runtime_of(self.app).close(wait=10)


@pytest.fixture
def make_api(tmp_path):
    made = []

    def build(**overrides):
        api = Api(make_settings(tmp_path, **overrides))
        made.append(api)
        return api

    yield build
    for api in made:
        api.close()


@pytest.fixture
def api(make_api):
    return make_api()


def image(name, color=(200, 30, 30)):
    return (io.BytesIO(png_bytes(color)), name)


def sheet_form(count=3, **fields):
    data = {"fronts": [image(f"card{i}.png", (30 * i, 60, 90)) for i in range(count)],
            "card_size": "standard", "paper_size": "letter"}
    data.update(fields)
    return data


def pdf_pages(data: bytes) -> int:
    pdf = pypdfium2.PdfDocument(data)
    try:
        return len(pdf)
    finally:
        pdf.close()


def submit(api, path, data, who="alice", **kw):
    response = api.post(path, who, data=data, content_type="multipart/form-data", **kw)
    assert response.status_code == 202, response.get_json()
    body = response.get_json()
    assert set(body) == {"id", "status_url"} and body["status_url"] == f"/api/jobs/{body['id']}"
    return body["id"]


# --- end to end -------------------------------------------------------------------------
def test_jobs_end_to_end_in_threads(api):
    sheets = submit(api, "/api/jobs/sheets", sheet_form(
        10, back=image("back.png", (0, 0, 0)), skip="1, 1, 3", name="My deck", ppi="300",
        quality="100", crop="3mm", extend_corners="2", only_fronts="false"))
    body = api.wait(sheets)
    assert set(body) == JOB_FIELDS
    assert body["status"] == "succeeded", body["error"]
    assert body["mode"] == "threads" and body["progress"] == 1.0 and body["kind"] == "sheets"
    assert body["created_at"].endswith("Z") and body["finished_at"] >= body["started_at"]
    result = api.get(body["result_url"])
    assert result.status_code == 200 and result.mimetype == "application/pdf"
    assert pdf_pages(result.data) == 4  # 10 cards, 6 per sheet with 2 skipped -> 2 sheets

    offset = submit(api, "/api/jobs/offset", {"source_job_id": sheets, "x": "5", "y": "-3"})
    uploaded = submit(api, "/api/jobs/offset",
                      {"pdf": (io.BytesIO(result.data), "mine.pdf"), "x": "-2"})
    calibration = api.post("/api/jobs/calibration", json={"paper_size": "a4"})
    assert calibration.status_code == 202
    for job_id in (offset, uploaded, calibration.get_json()["id"]):
        done = api.wait(job_id)
        assert done["status"] == "succeeded", done["error"]
        assert api.get(done["result_url"]).data.startswith(b"%PDF")

    listed = api.get("/api/jobs").get_json()["jobs"]
    assert len(listed) == 4 and all(set(job) == JOB_FIELDS for job in listed)


def test_broker_down_falls_back_to_threads(make_api, redis_server):
    api = make_api(CELERY_BROKER_URL=redis_server.url)
    redis_server.stop()
    job_id = submit(api, "/api/jobs/sheets", sheet_form(2))
    done = api.wait(job_id)
    assert done["status"] == "succeeded" and done["mode"] == "threads"


@pytest.mark.timeout(90)
def test_jobs_run_on_celery_when_a_worker_is_there(make_api, redis_server, celery_workers):
    api = make_api(CELERY_BROKER_URL=redis_server.url)
    settings = api.app.config["SETTINGS"]
    celery_workers(settings, redis_server.url, "pdf_generation,default")
    job_id = submit(api, "/api/jobs/sheets", sheet_form(3))
    done = api.wait(job_id, timeout=45)
    assert done["status"] == "succeeded" and done["mode"] == "celery", done
    assert pdf_pages(api.get(done["result_url"]).data) == 2


# --- ownership ------------------------------------------------------------------------------
def test_others_jobs_are_invisible(api):
    mine = submit(api, "/api/jobs/sheets", sheet_form(1))
    api.wait(mine)
    for path in (f"/api/jobs/{mine}", f"/api/jobs/{mine}/result"):
        response = api.get(path, "bob")
        assert response.status_code == 404 and response.get_json()["error"]["code"] == "not_found"
        assert api.get(path, "root").status_code == 200  # admins see everything
    assert api.get("/api/jobs", "bob").get_json()["jobs"] == []
    assert [j["id"] for j in api.get("/api/jobs", "root").get_json()["jobs"]] == [mine]
    stolen = api.post("/api/jobs/offset", "bob", data={"source_job_id": mine},
                      content_type="multipart/form-data")
    assert stolen.status_code == 400 and "no such job" in stolen.get_json()["error"]["message"]


def test_token_required(api):
    assert api.client.get("/api/jobs").status_code == 401
    assert api.client.post("/api/jobs/calibration", json={}).status_code == 401


def test_result_not_ready_or_failed_is_409(api):
    store = services(api.app).store
    queued = store.create(owner=api.ids["alice"], kind="calibration", params={"paper_size": "letter"},
                          queue="default")
    response = api.get(f"/api/jobs/{queued.id}/result")
    assert response.status_code == 409 and response.get_json()["error"]["code"] == "not_ready"
    failed = store.create(owner=api.ids["alice"], kind="calibration", params={}, queue="default")
    store.fail(failed.id, None, "broken")
    response = api.get(f"/api/jobs/{failed.id}/result")
    assert response.status_code == 409 and "broken" in response.get_json()["error"]["message"]


# --- bad input ---------------------------------------------------------------------------------
def _bad_sheets():
    huge = "9" * 5000
    return {
        "bad ppi type": sheet_form(ppi="abc"),
        "ppi out of range": sheet_form(ppi="10"),
        "huge ppi": sheet_form(ppi=huge),
        "huge quality": sheet_form(quality="1" + "0" * 30),
        "quality range": sheet_form(quality="101"),
        "bad flag": sheet_form(only_fronts="maybe"),
        "unknown card": sheet_form(card_size="huge"),
        "unknown paper": sheet_form(paper_size="a0"),
        "unsupported pair": sheet_form(paper_size="tabloid", card_size="japanese"),
        "bad crop": sheet_form(crop="3 parsecs"),
        "negative corners": sheet_form(extend_corners="-1"),
        "float corners": sheet_form(extend_corners="1.5"),
        "long name": sheet_form(name="x" * 500),
        "10,000 skips": sheet_form(skip=",".join(str(i % 8) for i in range(10_000))),
        "negative skip": sheet_form(skip="-1"),
        "skip everything": sheet_form(skip="0,1,2,3,4,5,6,7"),
        "huge skip": sheet_form(skip=huge),
        "no fronts": {"card_size": "standard"},
        "empty front part": {"fronts": (io.BytesIO(b""), "")},
        "non-image": sheet_form(1, fronts=[(io.BytesIO(b"hello, I am text"), "notes.png")]),
        "truncated png": sheet_form(1, fronts=[(io.BytesIO(png_bytes()[:40]), "cut.png")]),
        "two backs": sheet_form(back=[image("b1.png"), image("b2.png")]),
        "unmatched double": sheet_form(double_sided=[image("other.png")]),
        "duplicate names": sheet_form(1, fronts=[image("a.png"), image("a.png")]),
        "file then folder": sheet_form(0, fronts=[image("a"), image("a/b.png")]),
        "folder then file": sheet_form(0, fronts=[image("a/b.png"), image("a")]),
        "deep file then folder": sheet_form(0, fronts=[image("x/a"), image("x/a/b/c.png")]),
        "folder then file, other case": sheet_form(0, fronts=[image("A/b.png"), image("a")]),
        "no usable name": sheet_form(1, fronts=[image("../..")]),
        "only fronts with back": sheet_form(only_fronts="true", back=image("b.png")),
        "field twice": sheet_form(ppi=["300", "600"]),
    }


@pytest.mark.parametrize("case", list(_bad_sheets()))
def test_bad_sheet_submissions_are_400_and_leave_nothing(api, case):
    response = api.post("/api/jobs/sheets", data=_bad_sheets()[case],
                        content_type="multipart/form-data")
    assert response.status_code == 400, (case, response.status_code, response.get_data()[:300])
    error = response.get_json()["error"]
    assert error["code"] and error["message"]
    settings = api.app.config["SETTINGS"]
    assert list(settings.uploads_dir.iterdir()) == []
    assert services(api.app).store.list() == []


@pytest.mark.parametrize("fields, named", [
    ({"ppi": "abc"}, "ppi"), ({"quality": "101"}, "quality"), ({"only_fronts": "maybe"}, "only_fronts"),
    ({"card_size": "huge"}, "card size"), ({"paper_size": "a0"}, "paper size"),
    ({"crop": "3 parsecs"}, "crop"), ({"extend_corners": "1.5"}, "extend_corners"),
    ({"name": "x" * 500}, "name"), ({"skip": "-1"}, "skip"), ({"ppi": "9" * 50}, "ppi"),
])
def test_option_errors_name_the_field(api, fields, named):
    response = api.post("/api/jobs/sheets", data=sheet_form(**fields),
                        content_type="multipart/form-data")
    error = response.get_json()["error"]
    assert response.status_code == 400 and error["code"] == "invalid_input"
    assert named in error["message"] and len(error["message"]) < 300, error["message"]


def test_stored_params_are_the_models_json(api):
    """Form text is normalised once, by the model; the worker validates this JSON again."""
    job_id = submit(api, "/api/jobs/sheets", sheet_form(
        2, paper_size=" A4 ", card_size="Standard", ppi="600", skip=["3, 1", "3"],
        only_fronts="yes", name="  My\tDeck "))
    expected = SheetJobParams.parse(paper_size="a4", ppi=600, skip=[1, 3], only_fronts=True,
                                    name="My Deck", files={"fronts": 2, "back": 0,
                                                           "double_sided": 0})
    assert services(api.app).store.get(job_id).params == expected.model_dump(mode="json")
    assert api.wait(job_id)["status"] == "succeeded"
    offset = submit(api, "/api/jobs/offset", {"source_job_id": job_id, "x": "+7"})
    assert services(api.app).store.get(offset).params == {"x": 7, "y": 0,
                                                          "source_job_id": job_id}


def test_non_image_error_names_the_file(api):
    response = api.post("/api/jobs/sheets", data=sheet_form(
        1, fronts=[image("good.png"), (io.BytesIO(b"%PDF-1.4 nope"), "evil.png")]),
        content_type="multipart/form-data")
    assert response.status_code == 400 and "evil.png" in response.get_json()["error"]["message"]


def _bad_offsets() -> dict:
    """Built per call: a posted BytesIO is closed after the request."""
    return {
        "corrupt": {"pdf": (io.BytesIO(b"%PDF-1.7\n garbage garbage"), "corrupt.pdf")},
        "not-pdf": {"pdf": (io.BytesIO(b"not a pdf at all"), "text.pdf")},
        "png": {"pdf": (io.BytesIO(png_bytes()), "image.pdf")},
        "nothing": {},
        "unknown-source": {"source_job_id": "0" * 32},
        "long-source": {"source_job_id": "x" * 5000},
        "both": {"source_job_id": "abc", "pdf": (io.BytesIO(b"%PDF"), "a.pdf")},
        "huge-x": {"source_job_id": "abc", "x": "99999999999999999999999"},
        "y-range": {"source_job_id": "abc", "y": "601"},
        "float-x": {"source_job_id": "abc", "x": "1e3"},
    }


@pytest.mark.parametrize("case", list(_bad_offsets()))
def test_bad_offset_submissions_are_400(api, case):
    response = api.post("/api/jobs/offset", data=_bad_offsets()[case],
                        content_type="multipart/form-data")
    assert response.status_code == 400, response.get_data()[:300]
    assert list(api.app.config["SETTINGS"].uploads_dir.iterdir()) == []


@pytest.mark.parametrize("body", [
    {"json": ["letter"]}, {"json": {"paper_size": 5}}, {"json": {"paper_size": "a9"}},
    {"json": {"paper_size": "letter", "extra": 1}},
    {"data": "{not json", "content_type": "application/json"},
])
def test_bad_calibration_submissions_are_400(api, body):
    assert api.post("/api/jobs/calibration", **body).status_code == 400


@pytest.mark.parametrize("query", ["limit=0", "limit=100000", "limit=abc", "status=bogus",
                                   "offset=-1", "limit=" + "9" * 5000])
def test_bad_list_queries_are_400(api, query):
    assert api.get(f"/api/jobs?{query}").status_code == 400


def test_upload_limits(make_api):
    api = make_api(MAX_UPLOAD_FILES=3, MAX_UPLOAD_MB=1)
    too_many = api.post("/api/jobs/sheets", data=sheet_form(4), content_type="multipart/form-data")
    assert too_many.status_code == 400 and too_many.get_json()["error"]["code"] == "too_many_files"
    too_big = api.post("/api/jobs/sheets", data=sheet_form(
        1, fronts=[(io.BytesIO(b"\0" * (2 * 1024 * 1024)), "big.png")]),
        content_type="multipart/form-data")
    assert too_big.status_code == 413 and too_big.get_json()["error"]["message"]


def test_unknown_job_is_404(api):
    assert api.get("/api/jobs/nope").status_code == 404
    assert api.get("/api/jobs/" + "a" * 300).status_code == 404


def test_folder_names_are_kept_safe_for_double_sided_matching(api):
    data = sheet_form(0, fronts=[image("set 1/a1.png"), image("set 1/b.png")],
                      double_sided=[image("set 1/a1.png", (0, 0, 255))])
    job_id = submit(api, "/api/jobs/sheets", data)
    assert api.wait(job_id)["status"] == "succeeded"
    staged = api.app.config["SETTINGS"].uploads_dir / job_id
    assert (staged / "fronts" / "set_1" / "a1.png").is_file()
    assert (staged / "double_sided" / "set_1" / "a1.png").is_file()


def test_non_ascii_names_stay_distinct_and_matched(api):
    data = sheet_form(0, fronts=[image("карта.png"), image("дама.png")],
                      double_sided=[image("дама.png", (0, 0, 255))])
    job_id = submit(api, "/api/jobs/sheets", data)
    done = api.wait(job_id)
    assert done["status"] == "succeeded", done["error"]
    staged = api.app.config["SETTINGS"].uploads_dir / job_id
    assert len(list((staged / "fronts").iterdir())) == 2
    assert [p.name for p in (staged / "double_sided").iterdir()][0] in \
        {p.name for p in (staged / "fronts").iterdir()}


def test_download_is_named_after_the_deck(api):
    job_id = submit(api, "/api/jobs/sheets", sheet_form(1, name="Dragon deck"))
    done = api.wait(job_id)
    response = api.get(done["result_url"])
    assert "filename=Dragon_deck.pdf" in response.headers["Content-Disposition"]


def test_file_and_folder_clash_names_the_clash(api):
    response = api.post("/api/jobs/sheets", data=sheet_form(
        0, fronts=[image("deck/a.png"), image("deck")]), content_type="multipart/form-data")
    assert response.status_code == 400
    assert "'deck'" in response.get_json()["error"]["message"]
    assert list(api.app.config["SETTINGS"].uploads_dir.iterdir()) == []


@pytest.mark.parametrize("relative", ["fronts/" + "n" * 300 + ".png",
                                      "fronts/a.png/inner.png"])
def test_names_the_file_system_refuses_are_400(tmp_path, relative):
    """Defence in depth behind the name checks: any file-system refusal caused by the
    client's names (ENAMETOOLONG, ENOTDIR/EEXIST, EISDIR) is a 400, not a 500."""
    from werkzeug.datastructures import FileStorage

    from app.errors import APIError
    from app.jobs.uploads import Staging

    with Staging(tmp_path, "job") as staging:
        (staging.path / "fronts").mkdir()
        (staging.path / "fronts" / "a.png").write_bytes(b"x")
        with pytest.raises(APIError) as caught:
            staging.save(FileStorage(io.BytesIO(png_bytes()), "x.png"), relative)
        assert caught.value.status == 400
    assert list(tmp_path.iterdir()) == []


def test_purge_fails_the_purged_jobs_so_the_reconciler_does_not_resend_them(
        make_api, redis_server):
    """Purge empties the broker lists; the jobs must not stay queued on Celery in the
    store, or the reconciler publishes them again (the purge silently undone)."""
    import redis

    from app.jobs.reconciler import Reconciler
    api = make_api(CELERY_BROKER_URL=redis_server.url, START_CELERY_WORKER="false")
    assert runtime_of(api.app).host_manager(takeover=False)
    jobs = services(api.app)
    jobs.dispatcher.worker_available = lambda queue: True  # workers stopped: nobody consumes
    purged_ids = [submit(api, "/api/jobs/sheets", sheet_form(1)) for _ in range(2)]
    kept = api.post("/api/jobs/calibration", json={"paper_size": "a4"}).get_json()["id"]
    queue, other = jobs.store.get(purged_ids[0]).queue, jobs.store.get(kept).queue
    assert queue != other
    assert all(jobs.store.get(i).mode == "celery" for i in [*purged_ids, kept])
    raw = redis.Redis.from_url(redis_server.url)
    try:
        assert raw.llen(queue) == 2 and raw.llen(other) == 1
        response = api.post("/api/celery/purge", "root", json={"queues": [queue]})
        assert response.status_code == 200, response.get_json()
        assert response.get_json() == {"purged": {queue: 2}, "jobs_failed": {queue: 2}}
        for job_id in purged_ids:
            job = jobs.store.get(job_id)
            assert job.status == "failed" and job.error == "purged by an administrator"
            body = api.get(f"/api/jobs/{job_id}").get_json()
            assert body["status"] == "failed" and body["error"] == "purged by an administrator"
        assert jobs.store.get(kept).status == "queued"

        time.sleep(0.05)
        reconciler = Reconciler(api.app.config["SETTINGS"], jobs.store, jobs.dispatcher,
                                lost_after=0, inspect_timeout=0.3, cleanup_interval=3600)
        assert reconciler.tick()["lost"] == []
        assert raw.llen(queue) == 0 and raw.llen(other) == 1
        assert all(jobs.store.get(i).status == "failed" for i in purged_ids)
    finally:
        raw.close()
