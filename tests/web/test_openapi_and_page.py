"""The OpenAPI document is valid, names every route, and states the code's limits; the page
is served."""
from __future__ import annotations

import re

import pytest
from openapi_spec_validator import validate

from app.cards.layouts import CARD_SIZES, LAYOUTS, PAPERS
from app.cards.models import CalibrationOptions, OffsetOptions, OptionError, SheetOptions
from app.cards.options import MAX_OFFSET_PX, PPI_RANGE, QUALITY_RANGE, extend_corners_limit
from app.jobs.engine import KINDS
from app.jobs.names import JOB_STATUSES
from app.openapi import build_spec
from tests.web.conftest import ADMIN, bearer, login


def test_openapi_is_valid_and_complete(app, client):
    response = client.get("/api/openapi.json")
    assert response.status_code == 200
    spec = response.get_json()
    validate(spec)
    documented = {(path, method) for path, ops in spec["paths"].items() for method in ops}
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static" or rule.endpoint.endswith(".static"):
            continue
        path = re.sub(r"<(?:[^:>]+:)?([^>]+)>", r"{\1}", rule.rule)
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            assert (path, method.lower()) in documented, f"{method} {path} is not documented"


def test_page_and_assets(client):
    page = client.get("/")
    assert page.status_code == 200 and page.mimetype == "text/html"
    html = page.get_data(as_text=True)
    for needle in ('data-role="fronts"', 'data-role="back"', 'data-role="double_sided"',
                   'name="card_size"', 'name="paper_size"', 'name="skip"', "login-form",
                   "setup-form", "workshop.js"):
        assert needle in html
    assert "poker" in html and "archb" in html
    script = client.get("/assets/workshop.js")
    assert script.status_code == 200 and b"/api/jobs/sheets" in script.data
    admin = client.get("/admin")
    assert admin.status_code == 200 and "admin.js" in admin.get_data(as_text=True)
    assert client.get("/assets/app.css").status_code == 200


# --- the document's limits are the code's ---------------------------------------------------
# Each limit is read from the document and then tried on the code that enforces it: the
# value at the limit passes, one past it is refused, naming the field.
WIDEST_EXTEND = max(CARD_SIZES, key=lambda card: extend_corners_limit(*CARD_SIZES[card]))
# Fields whose limit depends on another field: the context in which the limit is reached.
CONTEXT = {"extend_corners": {"card_size": WIDEST_EXTEND}}


@pytest.fixture
def spec(client):
    document = client.get("/api/openapi.json").get_json()
    validate(document)
    return document


def form_fields(spec, path: str) -> dict:
    body = spec["paths"][path]["post"]["requestBody"]["content"]
    return body["multipart/form-data"]["schema"]["properties"]


def refused(model, field: str, value, context: dict) -> OptionError:
    with pytest.raises(OptionError) as info:
        model.parse(context, **{field: value})
    assert info.value.field == field, str(info.value)
    return info.value


@pytest.mark.parametrize("path, model", [("/api/jobs/sheets", SheetOptions),
                                         ("/api/jobs/offset", OffsetOptions)])
def test_number_limits_are_the_codes(spec, client, path, model):
    ranged = {name: schema for name, schema in form_fields(spec, path).items()
              if schema.get("type") == "integer"}
    assert set(ranged) == {name for name, field in model.model_fields.items()
                           if field.annotation is int}
    headers = bearer(login(client, *ADMIN)["access_token"])
    for name, schema in ranged.items():
        context = CONTEXT.get(name, {})
        low, high = schema["minimum"], schema["maximum"]
        assert model.parse(context, **{name: low}).model_dump()[name] == low
        assert model.parse(context, **{name: high}).model_dump()[name] == high
        refused(model, name, low - 1, context)
        message = str(refused(model, name, high + 1, context))
        # The API says the same, as a 400 naming the field, before looking at any file.
        response = client.post(path, headers=headers, data={**context, name: str(high + 1)})
        assert response.status_code == 400
        assert response.get_json()["error"] == {"code": "invalid_input", "message": message}


def test_the_limits_named_in_issue_11(spec):
    """The hand-written document allowed offsets of ±1500 px while the code refused 601."""
    sheets, offset = form_fields(spec, "/api/jobs/sheets"), form_fields(spec, "/api/jobs/offset")
    for axis in ("x", "y"):
        assert (offset[axis]["minimum"], offset[axis]["maximum"]) == (-MAX_OFFSET_PX,
                                                                       MAX_OFFSET_PX) == (-600, 600)
    assert (sheets["ppi"]["minimum"], sheets["ppi"]["maximum"]) == PPI_RANGE
    assert (sheets["quality"]["minimum"], sheets["quality"]["maximum"]) == QUALITY_RANGE
    assert sheets["extend_corners"]["maximum"] == extend_corners_limit(*CARD_SIZES[WIDEST_EXTEND])
    # Every other card refuses its own limit + 1, below the document's maximum.
    for paper, card in LAYOUTS:
        refused(SheetOptions, "extend_corners", extend_corners_limit(*CARD_SIZES[card]) + 1,
                {"paper_size": paper, "card_size": card})


def test_text_and_list_limits_are_the_codes(spec):
    sheets = form_fields(spec, "/api/jobs/sheets")
    for name in ("crop", "name"):
        longest = sheets[name]["maxLength"]
        refused(SheetOptions, name, "5" * (longest + 1), {})
    assert SheetOptions.parse(name="n" * sheets["name"]["maxLength"]).name
    skip = sheets["skip"]
    assert skip["items"]["minimum"] == 0
    refused(SheetOptions, "skip", [-1], {})
    refused(SheetOptions, "skip", list(range(100, 100 + skip["maxItems"] + 1)), {})
    assert len(SheetOptions.parse(skip=range(100, 100 + skip["maxItems"])).skip) == \
        skip["maxItems"]


def test_size_names_are_the_codes(spec):
    sheets = form_fields(spec, "/api/jobs/sheets")
    assert sheets["paper_size"]["enum"] == list(PAPERS)
    assert sheets["card_size"]["enum"] == list(CARD_SIZES)
    calibration = spec["paths"]["/api/jobs/calibration"]["post"]["requestBody"]["content"]
    for media in ("application/json", "application/x-www-form-urlencoded"):
        assert calibration[media]["schema"]["properties"]["paper_size"]["enum"] == list(PAPERS)
    assert calibration["application/json"]["schema"]["additionalProperties"] is False
    for paper in PAPERS:
        assert CalibrationOptions.parse(paper_size=paper).paper_size == paper
    refused(CalibrationOptions, "paper_size", "a0", {})
    refused(SheetOptions, "card_size", "huge", {})
    with pytest.raises(OptionError, match="unknown option 'extra'"):
        CalibrationOptions.parse(paper_size="letter", extra=1)


def test_job_statuses_and_kinds_are_the_codes(spec, client):
    job = spec["components"]["schemas"]["Job"]["properties"]
    assert job["kind"]["enum"] == list(KINDS)
    status = next(p for p in spec["paths"]["/api/jobs"]["get"]["parameters"]
                  if p["name"] == "status")
    assert status["schema"]["enum"] == job["status"]["enum"] == list(JOB_STATUSES)
    headers = bearer(login(client, *ADMIN)["access_token"])
    for name in JOB_STATUSES:
        assert client.get(f"/api/jobs?status={name}", headers=headers).status_code == 200
    assert client.get("/api/jobs?status=exploded", headers=headers).status_code == 400
    limit = next(p for p in spec["paths"]["/api/jobs"]["get"]["parameters"]
                 if p["name"] == "limit")["schema"]
    for value, code in ((limit["maximum"], 200), (limit["maximum"] + 1, 400),
                        (limit["minimum"], 200), (limit["minimum"] - 1, 400)):
        assert client.get(f"/api/jobs?limit={value}", headers=headers).status_code == code


def test_upload_limits_come_from_settings(make_app):
    app = make_app(MAX_UPLOAD_FILES=7, MAX_UPLOAD_MB=3)
    document = app.test_client().get("/api/openapi.json").get_json()
    validate(document)
    sheets = document["paths"]["/api/jobs/sheets"]["post"]
    files = sheets["requestBody"]["content"]["multipart/form-data"]["schema"]["properties"]
    assert files["fronts"]["maxItems"] == files["double_sided"]["maxItems"] == 7
    assert "3 MB" in sheets["responses"]["413"]["description"]
    assert app.config["MAX_CONTENT_LENGTH"] == 3 * 1024 * 1024
    assert build_spec(app.config["SETTINGS"]) == document
