"""Thumbnails of a finished job's first front and back page, rendered on first request
with pdfium and kept beside the PDF (`outputs/<id>.<side>.png`; cleanup's orphan sweep
removes them with the rest once they are old).

Bounded: a fixed width, at most MAX_CONCURRENT renders per process, a wait limit.
"""
from __future__ import annotations

import os
import threading
from pathlib import Path

from app.settings import Settings

SIDES = {"front": 0, "back": 1}
WIDTH_PX = 360
MAX_CONCURRENT = 2
WAIT_SECONDS = 15
_slots = threading.BoundedSemaphore(MAX_CONCURRENT)


class ThumbnailBusy(Exception):
    """Too many renders at once; try again shortly."""


class NoSuchPage(Exception):
    """The PDF has no page for that side."""


def thumbnail_paths(settings: Settings, job_id: str) -> list[Path]:
    return [settings.outputs_dir / f"{job_id}.{side}.png" for side in SIDES]


def thumbnail(settings: Settings, job_id: str, pdf: Path, side: str) -> Path:
    """The PNG for `side` of `pdf`, rendered now unless already there."""
    target = settings.outputs_dir / f"{job_id}.{side}.png"
    if target.is_file() and target.stat().st_mtime >= pdf.stat().st_mtime:
        return target
    if not _slots.acquire(timeout=WAIT_SECONDS):
        raise ThumbnailBusy()
    try:
        _render(pdf, SIDES[side], target)
    finally:
        _slots.release()
    return target


def _render(pdf: Path, index: int, target: Path) -> None:
    # pypdfium2 ships neither type hints (py.typed) nor stubs
    import pypdfium2 as pdfium  # type: ignore[import-untyped]

    document = pdfium.PdfDocument(str(pdf))
    try:
        if index >= len(document):
            raise NoSuchPage()
        page = document[index]
        width, _height = page.get_size()
        image = page.render(scale=WIDTH_PX / width).to_pil()
        page.close()
    finally:
        document.close()
    temporary = target.with_name(f".{target.name}.{os.getpid()}.{threading.get_ident()}")
    image.save(temporary, "PNG", optimize=True)
    os.replace(temporary, target)
