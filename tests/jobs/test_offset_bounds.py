"""Issue 12, point 5: offset PDFs - cheap checks in the request, the full one in the
worker, pypdf's warnings rate-limited, active content removed and said so."""
from __future__ import annotations

import io
import logging
import time

import psutil
import pytest
from pypdf import PdfReader

from app.cards.errors import CardError
from app.cards.offset import offset_pdf
from app.cards.pdf_limits import MAX_OFFSET_PAGES, RateLimitedForwarder, limit_pypdf_logging, quick_check
from tests.jobs.test_api import _fast_password_hashing, api, make_api, submit  # noqa: F401
from tests.pdf_makers import _write, deep_page_tree, many_pages, with_active_content

ACTIVE_MARKERS = (b"/JavaScript", b"/OpenAction", b"/Launch", b"/EmbeddedFiles", b"/AA",
                  b"app.alert", b"calc.exe", b"MZ!!", b"/FileAttachment")


def _upload(api, path):
    return api.post("/api/jobs/offset", data={"pdf": (io.BytesIO(path.read_bytes()), "in.pdf"),
                                              "x": "3"}, content_type="multipart/form-data")


def test_100000_page_offset_pdf_is_checked_inside_the_http_request(api, tmp_path):
    huge = many_pages(tmp_path / "huge.pdf", 100_000)
    me = psutil.Process()
    before = me.memory_info().rss
    started = time.monotonic()
    quick_check_error = None
    try:
        quick_check(huge, "huge.pdf")
    except CardError as exc:
        quick_check_error = str(exc)
    assert time.monotonic() - started < 0.5  # the object count alone refuses it
    assert quick_check_error and "100,004 objects" in quick_check_error
    response = _upload(api, huge)
    assert response.status_code == 400
    assert response.get_json()["error"]["code"] == "invalid_file"
    assert me.memory_info().rss - before < 100 * 1024 * 1024


def test_declared_page_count_over_the_limit_is_refused_in_the_request(api, tmp_path):
    response = _upload(api, many_pages(tmp_path / "many.pdf", MAX_OFFSET_PAGES + 1))
    assert response.status_code == 400
    assert f"{MAX_OFFSET_PAGES + 1:,} pages" in response.get_json()["error"]["message"]


def test_a_lying_page_count_is_caught_by_the_worker(tmp_path):
    liar = many_pages(tmp_path / "liar.pdf", MAX_OFFSET_PAGES + 5)
    data = liar.read_bytes().replace(b"/Count %d" % (MAX_OFFSET_PAGES + 5), b"/Count 1", 1)
    liar.write_bytes(data)
    assert quick_check(liar, "liar.pdf") == 1  # the request believes the declaration...
    with pytest.raises(CardError, match=f"{MAX_OFFSET_PAGES + 5:,} pages"):
        offset_pdf(input=liar, output=tmp_path / "out.pdf", x=3, y=0)  # ...the worker counts


def test_deep_page_tree_fails_in_the_worker_with_a_reason(tmp_path):
    deep = deep_page_tree(tmp_path / "deep.pdf", 50_000)
    with pytest.raises(CardError, match="not a readable PDF"):
        offset_pdf(input=deep, output=tmp_path / "out.pdf", x=3, y=0)


def test_50000_deep_pdf_writes_thousands_of_warning_lines(tmp_path, caplog):
    # One pypdf warning per damaged spot: here 20,000 duplicate keys in one page.
    duplicates = b" ".join(b"/K %d" % i for i in range(20_000))
    noisy = _write(tmp_path / "noisy.pdf", [
        b"<< /Type /Catalog /Pages 2 0 R >>", b"<< /Type /Pages /Count 1 /Kids [3 0 R] >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] " + duplicates + b" >>"])
    limit_pypdf_logging().reset()  # an earlier test in this process may have used the burst
    with caplog.at_level(logging.WARNING):
        offset_pdf(input=noisy, output=tmp_path / "out.pdf", x=3, y=0)
    lines = [r for r in caplog.records if r.name.startswith("pypdf")]
    assert 1 <= len(lines) <= 25, len(lines)


def test_rate_limited_forwarder_counts_what_it_drops():
    now = [0.0]
    handler = RateLimitedForwarder(burst=3, window=10, clock=lambda: now[0])
    forwarded = []
    handler._forward = forwarded.append
    record = logging.makeLogRecord({"name": "pypdf.x", "msg": "bad object", "levelno": 30})
    for _ in range(50):
        handler.emit(record)
    assert len(forwarded) == 3 and "counted, not logged" in forwarded[-1].getMessage()
    now[0] = 11
    handler.emit(record)
    assert "47 further pypdf warnings" in forwarded[3].getMessage()
    assert len(forwarded) == 5


def test_offset_keeps_javascript_openaction_and_launch(tmp_path):
    source = with_active_content(tmp_path / "active.pdf")
    assert all(marker in source.read_bytes() for marker in ACTIVE_MARKERS)
    result = offset_pdf(input=source, output=tmp_path / "out.pdf", x=10, y=0)
    data = result.output.read_bytes()
    for marker in ACTIVE_MARKERS:
        assert marker not in data, marker
    note = next(w for w in result.warnings if w.startswith("removed active content"))
    for word in ("OpenAction", "JavaScript", "Launch", "EmbeddedFiles", "FileAttachment", "AA"):
        assert word in note, note
    reader = PdfReader(result.output)
    assert len(reader.pages) == 2 and result.shifted == [2]
    kept = [a.get_object()["/A"]["/URI"] for a in reader.pages[0]["/Annots"]]
    assert kept == ["https://example.org/"]  # a plain link stays


def test_offset_job_message_says_active_content_was_removed(api, tmp_path):
    job_id = submit(api, "/api/jobs/offset", {
        "pdf": (io.BytesIO(with_active_content(tmp_path / "a.pdf").read_bytes()), "a.pdf"),
        "x": "4"})
    done = api.wait(job_id)
    assert done["status"] == "succeeded", done
    assert "removed active content" in done["message"]
    assert b"/JavaScript" not in api.get(done["result_url"]).data
