"""Bad input never gets a 5xx: schemathesis over /api/openapi.json against a real server
with real workers, and hand-made hostile requests."""
from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from tests.e2e.jobs_helpers import card_files, png

pytestmark = pytest.mark.slow

# Valid start/restart bodies spawn real worker processes (concurrency up to 64); they are
# covered by the admin flow test, so only their invalid bodies are fuzzed here.
NEGATIVE_ONLY = {("POST", "/api/celery/start"), ("POST", "/api/celery/restart")}
EXAMPLES = 15


def _fuzz_operation(operation, mode, base_url, headers, failures, calls):
    # Operations without inputs only vary in junk headers/query; a few examples do. (Celery
    # inspect behind /tasks and /stats waits ~1 s per call for worker replies.)
    has_input = bool(operation.body) or any(
        p.name != "Authorization" for p in operation.iter_parameters())
    examples = EXAMPLES if has_input else 3

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(max_examples=examples, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    def run(case):
        # Our admin token wins over any generated Authorization header, so the fuzzed
        # input reaches validation instead of stopping at auth.
        call_headers = {**(case.headers or {}), **headers}
        case.headers = call_headers
        response = case.call(base_url=base_url, timeout=60)
        calls.append(response.status_code)
        if response.status_code >= 500:
            failures.append(f"{case.method} {case.formatted_path} -> {response.status_code}: "
                            f"{response.text[:300]}\n  {case.as_curl_command()[:500]}")
        elif response.status_code >= 400 and case.path.startswith("/api/"):
            error = response.json().get("error", {})
            if not (isinstance(error, dict) and error.get("code") and "message" in error):
                failures.append(f"{case.method} {case.path}: bad error shape {response.text}")

    try:
        run()
    except Unsatisfiable:
        pass  # e.g. no negative case exists for a GET without parameters


def test_schemathesis_never_5xx(start_server, redis_server):
    server = start_server("start_with_celery", START_CELERY_WORKER="true",
                          REDIS_URL=redis_server.url, LOGIN_RATE_LIMIT="1000 per minute")
    server.wait_healthy(90)
    server.wait_workers(3, timeout=90)
    headers = server.headers()
    spec = server.get("/api/openapi.json")
    assert spec.status_code == 200
    schema = schemathesis.openapi.from_dict(spec.json())
    failures: list[str] = []
    calls: list[int] = []
    operations = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        operations += 1
        modes = [GenerationMode.NEGATIVE]
        if (operation.method.upper(), operation.path) not in NEGATIVE_ONLY:
            modes.append(GenerationMode.POSITIVE)
        for mode in modes:
            _fuzz_operation(operation, mode, server.url, headers, failures, calls)
    assert operations == 32   # every documented operation: jobs (cut file, cancel, thumbnails), pages, admin (log tail)
    assert len(calls) > 250, len(calls)
    assert sum(1 for code in calls if 200 <= code < 300) > 50  # not all stopped at the door
    assert not failures, "\n".join(failures[:20])
    # The server is still whole afterwards.
    assert server.get("/api/celery/health").status_code in (200, 503)
    assert server.stop() == 0


def test_hand_made_bad_inputs(start_server):
    server = start_server("run")
    server.wait_healthy(60)
    admin = server.headers()

    def expect_4xx(response, *codes):
        assert 400 <= response.status_code < 500, (response.status_code, response.text[:300])
        if codes:
            assert response.status_code in codes, response.text[:300]
        assert set(response.json()["error"]) == {"code", "message"}

    sheets = "/api/jobs/sheets"
    # missing files, wrong types, unknown enums
    expect_4xx(server.post(sheets, headers=admin, data={"card_size": "standard"}), 400)
    expect_4xx(server.post(sheets, headers=admin, json={"fronts": ["a.png"]}), 400)
    expect_4xx(server.post(sheets, headers=admin, files=card_files(1),
                           data={"card_size": "enormous"}), 400)
    expect_4xx(server.post(sheets, headers=admin, files=card_files(1),
                           data={"ppi": "three hundred"}), 400)
    expect_4xx(server.post(sheets, headers=admin, files=card_files(1),
                           data={"only_fronts": "maybe"}), 400)
    # huge numbers
    for field in ("ppi", "quality", "extend_corners"):
        for value in ("9" * 400, "-1", "1e309", str(2 ** 64)):
            expect_4xx(server.post(sheets, headers=admin, files=card_files(1),
                                   data={field: value}), 400)
    # 10,000 skip values
    expect_4xx(server.post(sheets, headers=admin, files=card_files(1),
                           data={"skip": ",".join(str(i) for i in range(10_000))}), 400)
    expect_4xx(server.post(sheets, headers=admin, files=card_files(1),
                           data=[("skip", "1")] * 10_000), 400, 413)
    # a non-image upload, an empty one, an image bomb header, path tricks in names
    expect_4xx(server.post(sheets, headers=admin, files=[
        ("fronts", ("card.png", b"this is not an image", "image/png"))]), 400)
    expect_4xx(server.post(sheets, headers=admin, files=[
        ("fronts", ("card.png", b"", "image/png"))]), 400)
    expect_4xx(server.post(sheets, headers=admin, files=[
        ("fronts", ("../../etc/passwd", b"root:x:0:0", "text/plain"))]), 400)
    expect_4xx(server.post(sheets, headers=admin, files=[
        ("fronts", ("a.png", png((1, 2, 3)), "image/png")),
        ("double_sided", ("zzz.png", png((3, 2, 1)), "image/png"))]), 400)

    # offset: corrupt PDF, nothing, both, unknown source, huge shifts
    offset = "/api/jobs/offset"
    corrupt = b"%PDF-1.7\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF"
    expect_4xx(server.post(offset, headers=admin,
                           files=[("pdf", ("sheet.pdf", corrupt, "application/pdf"))]), 400)
    expect_4xx(server.post(offset, headers=admin, files=[
        ("pdf", ("sheet.pdf", png((0, 0, 0)), "application/pdf"))]), 400)
    expect_4xx(server.post(offset, headers=admin, data={"x": "5"}), 400)
    expect_4xx(server.post(offset, headers=admin, data={"source_job_id": "f" * 5000}), 400)
    expect_4xx(server.post(offset, headers=admin, data={"source_job_id": "nope", "x": "9" * 50}),
               400)

    # calibration: wrong types and shapes
    calibration = "/api/jobs/calibration"
    for body in ({"paper_size": 5}, {"paper_size": "a0"}, ["letter"], {"paper_size": None},
                 {"paper_size": "letter", "extra": 1}):
        expect_4xx(server.post(calibration, headers=admin, json=body), 400)
    expect_4xx(server.post(calibration, headers={**admin, "Content-Type": "application/json"},
                           data="{{{"), 400)

    # job ids and listing
    expect_4xx(server.get("/api/jobs/" + "x" * 10_000, headers=admin), 404, 414)
    expect_4xx(server.get("/api/jobs?limit=999999999999999999999", headers=admin), 400)
    expect_4xx(server.get("/api/jobs?status=exploded", headers=admin), 400)

    # admin bodies with absurd values
    for path, body in (("/api/celery/start", {"concurrency": 10 ** 30}),
                       ("/api/celery/start", {"concurrency": -5, "queues": ["x"] * 10_000}),
                       ("/api/celery/stop", {"timeout": 1e300}),
                       ("/api/celery/restart", {"queue": {"$ne": 1}}),
                       ("/api/celery/purge", {"queues": ["default"] * 10_000})):
        expect_4xx(server.post(path, headers=admin, json=body), 400, 413)

    # auth bodies
    expect_4xx(server.post("/api/auth/login", data=b"\xff\xfe" * 1000,
                           headers={"Content-Type": "application/json"}), 400)
    expect_4xx(server.post("/api/auth/login", json={"username": "a" * 100_000,
                                                    "password": "b"}), 413)
    expect_4xx(server.post("/api/auth/login", json={"username": "a" * 10_000,
                                                    "password": "b"}), 401)
    assert server.get("/api/celery/health").status_code == 200
    assert server.stop() == 0
