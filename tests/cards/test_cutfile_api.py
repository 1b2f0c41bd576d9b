"""GET /api/jobs/<id>/cutfile: the cut file for the layout a sheets job used, owner only."""
from __future__ import annotations

import io

import ezdxf
import pytest

from app.cards.cutfile import cutfile_bytes
from tests.conftest import make_settings
from tests.jobs.test_api import Api, _fast_password_hashing, sheet_form, submit  # noqa: F401


@pytest.fixture
def api(tmp_path):
    made = Api(make_settings(tmp_path))
    yield made
    made.close()


def test_cutfile_of_a_sheets_job(api):
    job = submit(api, "/api/jobs/sheets", sheet_form(2, paper_size="a4", card_size="poker"))
    for fmt, mime in (("svg", "image/svg+xml"), ("dxf", "application/dxf")):
        response = api.get(f"/api/jobs/{job}/cutfile?format={fmt}")
        assert response.status_code == 200 and response.mimetype == mime
        if fmt == "svg":
            assert response.data == cutfile_bytes("a4", "poker", fmt)
        else:   # a DXF carries its creation time: compare what it draws
            doc = ezdxf.read(io.StringIO(response.data.decode()))
            assert len(doc.modelspace().query('LWPOLYLINE[layer=="cut"]')) == 8
        assert f"a4_poker_v1-cut.{fmt}" in response.headers["Content-Disposition"]
    assert api.get(f"/api/jobs/{job}/cutfile").data == cutfile_bytes("a4", "poker", "svg")

    bad = api.get(f"/api/jobs/{job}/cutfile?format=pdf")
    assert bad.status_code == 400
    assert bad.get_json()["error"]["code"] == "invalid_input" and "svg, dxf" in bad.get_json()["error"]["message"]
    # someone else's job does not exist for bob; an admin may fetch it
    assert api.get(f"/api/jobs/{job}/cutfile", who="bob").status_code == 404
    assert api.get(f"/api/jobs/{job}/cutfile", who="root").status_code == 200
    assert api.client.get(f"/api/jobs/{job}/cutfile").status_code == 401
    api.wait(job)


def test_cutfile_of_a_job_without_a_layout_is_400(api):
    response = api.post("/api/jobs/calibration", json={"paper_size": "a4"})
    job = response.get_json()["id"]
    answer = api.get(f"/api/jobs/{job}/cutfile?format=dxf")
    assert answer.status_code == 400 and "sheets" in answer.get_json()["error"]["message"]
    api.wait(job)


def test_job_message_counts_warnings_and_names_the_users_files(api):
    from tests.jobs.conftest import png_bytes
    fronts = [(io.BytesIO(png_bytes((10 * i, 60, 90), size=(90, 84))), f"wide{i}.png") for i in range(3)]
    job = submit(api, "/api/jobs/sheets", {"fronts": fronts, "only_fronts": "true"})
    body = api.wait(job)
    assert body["status"] == "succeeded", body["error"]
    assert ("3 images differ from the standard card's aspect ratio by 49.6 % and are stretched to fit "
            "(wide0.png, wide1.png, wide2.png)") in body["message"]
    assert "fronts/" not in body["message"] and "front_dir" not in body["message"]
