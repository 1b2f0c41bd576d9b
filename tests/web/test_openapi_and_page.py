"""The OpenAPI document is valid and names every route; the page is served."""
from __future__ import annotations

import re

from openapi_spec_validator import validate


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
