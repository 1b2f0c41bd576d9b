"""Receiving a job's files: saved into a private staging folder, checked, then moved into
uploads/<job_id>/ in one rename. A rejected request leaves nothing behind; an accepted
one never exposes a half-written folder to a worker.
"""
from __future__ import annotations

import errno
import shutil
from pathlib import Path

from PIL import Image, UnidentifiedImageError
from werkzeug.datastructures import FileStorage

from app.cards.budget import MemoryBudget, check_fits, cost_of_open
from app.cards.errors import CardError
from app.cards.images import FORMATS
from app.jobs.cleanup import STAGING_PREFIX
from app.jobs.validation import bad, safe_relative_name

PDF_MAGIC = b"%PDF-"

# File-system refusals caused by the client's choice of names.
_NAME_ERRNOS = {
    errno.ENAMETOOLONG: "name too long",
    errno.EEXIST: "a file and a folder share that name",
    errno.EISDIR: "a folder already has that name",
    errno.ENOTDIR: "a file already has the name of one of its folders",
}


class Staging:
    """uploads/.staging-<job_id>/, removed unless `commit()` moved it into place."""

    def __init__(self, uploads_dir: Path, job_id: str):
        self.final = uploads_dir / job_id
        self.path = uploads_dir / f"{STAGING_PREFIX}{job_id}"
        self._committed = False

    def __enter__(self) -> Staging:
        self.path.mkdir(parents=True, exist_ok=False)
        return self

    def __exit__(self, *exc) -> None:
        if not self._committed:
            shutil.rmtree(self.path, ignore_errors=True)

    def save(self, storage: FileStorage, relative: str, label: str | None = None) -> Path:
        """Save one uploaded file at `relative` (a safe name). A name the file system
        refuses (too long, or clashing with a folder of another upload) is the client's
        fault: a 400 naming it, never a 500."""
        target = self.path / relative
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            storage.save(target)
        except OSError as exc:
            if exc.errno in _NAME_ERRNOS:
                raise bad(f"{label or relative}: the name {relative!r} cannot be stored "
                          f"({_NAME_ERRNOS[exc.errno]})", "invalid_file") from None
            raise
        return target

    def commit(self) -> Path:
        self.path.rename(self.final)
        self._committed = True
        return self.final


def present(files: list[FileStorage]) -> list[FileStorage]:
    """Drop the empty parts browsers send for an untouched file input."""
    return [f for f in files if f is not None and (f.filename or "") != ""]


def save_images(staging: Staging, files: list[FileStorage], folder: str, field: str, *,
                max_pixels: int, budget: MemoryBudget | None = None) -> list[str]:
    """Save and check card images (pixel cap, and the job's memory budget: the worker
    decodes images one at a time at worst, so a job fits when each image does); returns
    their safe relative names."""
    names: list[str] = []
    seen: set[str] = set()      # file names, lower case
    folders: set[str] = set()   # every folder those names create, lower case
    for storage in files:
        name = safe_relative_name(storage.filename, field)
        key = name.lower()
        if key in seen:
            raise bad(f"{field}: two files are named {name!r}", "invalid_file")
        parents = ["/".join(key.split("/")[:depth]) for depth in range(1, key.count("/") + 1)]
        clash = key if key in folders else next((p for p in parents if p in seen), None)
        if clash is not None:
            raise bad(f"{field}: {clash!r} is both a file and a folder of other files; "
                      "rename one of them", "invalid_file")
        seen.add(key)
        folders.update(parents)
        path = staging.save(storage, f"{folder}/{name}", f"{field} file {storage.filename!r}")
        check_image(path, f"{field} file {storage.filename!r}", max_pixels, budget)
        names.append(name)
    return names


def check_image(path: Path, label: str, max_pixels: int,
                budget: MemoryBudget | None = None) -> None:
    """Cheap submit-time check: a supported image format whose header reads, whose
    size is within the pixel cap and whose decoding fits `budget`. Full decoding happens
    in the card engine."""
    if path.stat().st_size == 0:
        raise bad(f"{label} is empty", "invalid_file")
    try:
        with Image.open(path) as image:
            fmt = image.format
            width, height = image.size
            if fmt not in FORMATS and fmt != "MPO":
                raise bad(f"{label} is a {fmt} image; supported: {', '.join(FORMATS)}",
                          "invalid_file")
            if width * height > max_pixels:
                raise bad(f"{label} has {width}x{height} pixels, over the limit of "
                          f"{max_pixels:,}", "invalid_file")
            if budget is not None:
                _check_budget(image, label, path, budget)
            image.verify()
    except (UnidentifiedImageError, Image.DecompressionBombError):
        raise bad(f"{label} is not an image (or is too large to open)", "invalid_file") \
            from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise bad(f"{label} is not a readable image ({exc})", "invalid_file") from None


def _check_budget(image: Image.Image, label: str, path: Path, budget: MemoryBudget) -> None:
    try:
        check_fits(cost_of_open(image, label, path.stat().st_size), budget)
    except CardError as exc:
        raise bad(str(exc), "over_memory_budget") from None


def save_pdf(staging: Staging, storage: FileStorage) -> Path:
    path = staging.save(storage, "input.pdf")
    check_pdf(path, f"pdf file {storage.filename!r}")
    return path


def check_pdf(path: Path, label: str) -> None:
    """A PDF that looks sound and within bounds, checked in milliseconds (issue 12: the
    object and declared page counts here; the page tree's full walk is the worker's)."""
    from app.cards.errors import CardError
    from app.cards.pdf_limits import limit_pypdf_logging, quick_check

    with open(path, "rb") as handle:
        head = handle.read(1024)
    if PDF_MAGIC not in head:
        raise bad(f"{label} is not a PDF", "invalid_file")
    limit_pypdf_logging()
    try:
        quick_check(path, label)
    except CardError as exc:
        raise bad(str(exc), "invalid_file") from None
    except RecursionError:
        raise bad(f"{label} is not a readable PDF (nesting too deep)", "invalid_file") \
            from None
    except Exception as exc:  # pypdf raises many types for corrupt files
        raise bad(f"{label} is not a readable PDF ({type(exc).__name__})", "invalid_file") \
            from None


def link_or_copy(source: Path, target: Path) -> None:
    """Reuse another job's output as an input without copying bytes when possible; a
    hard link also survives the source job's cleanup."""
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        target.hardlink_to(source)
    except OSError:
        shutil.copyfile(source, target)
