"""Helpers to submit jobs over HTTP and wait for them."""
from __future__ import annotations

import io
import time

from PIL import Image
from pypdf import PdfReader


def png(color: tuple[int, int, int], size=(120, 168)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, "PNG")
    return buffer.getvalue()


def card_files(count: int, *, back: bool = True) -> list[tuple[str, tuple[str, bytes, str]]]:
    files = [("fronts", (f"card{i:03d}.png", png((i * 37 % 255, 90, 160)), "image/png"))
             for i in range(count)]
    if back:
        files.append(("back", ("back.png", png((20, 20, 20)), "image/png")))
    return files


def wait_job(server, headers: dict, job_id: str, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    body = None
    while time.monotonic() < deadline:
        response = server.get(f"/api/jobs/{job_id}", headers=headers)
        assert response.status_code == 200, response.text
        body = response.json()
        if body["status"] in ("succeeded", "failed"):
            return body
        time.sleep(0.25)
    raise AssertionError(f"job {job_id} did not finish: {body}\n{server.tail()}")


def download_pdf(server, headers: dict, job: dict) -> PdfReader:
    response = server.get(job["result_url"], headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"].startswith("application/pdf")
    assert response.content.startswith(b"%PDF-")
    return PdfReader(io.BytesIO(response.content))
