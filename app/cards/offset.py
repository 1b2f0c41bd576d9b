"""offset_pdf: shift the back pages of a sheet PDF to undo a printer's misalignment (spec §8).

The shift is a translation wrapped around a page's existing content streams
(`q 1 0 0 1 tx ty cm ... Q`): nothing is decoded, re-encoded or rasterized, and what
moves past the page edge is clipped by the page, never wrapped around.

The output is the input file unchanged, byte for byte, followed by a PDF incremental
update that replaces only the back pages' dictionaries and adds the two tiny shared
streams. Front pages and images are therefore untouched by construction, and the cost
is one file copy. Encrypted or damaged files, which cannot take an update safely, are
rewritten in full by pypdf instead.
"""
from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Literal, cast, overload

from pypdf import PdfReader, PdfWriter
from pypdf.errors import PyPdfError
from pypdf.generic import (
    ArrayObject,
    DecodedStreamObject,
    DictionaryObject,
    IndirectObject,
    NameObject,
    NumberObject,
    PdfObject,
    StreamObject,
)

from app.cards.active_content import active_content, describe
from app.cards.errors import CardError
from app.cards.layouts import PT_PER_PX
from app.cards.pdf import BACK_PREFIX, FRONT_PREFIX, num, write_atomically
from app.cards.pdf_limits import checked_page_count, limit_pypdf_logging
from app.cards.progress import CountingWriter, Progress, ProgressCallback

MARK_INSET_PX = 112          # registration marks start this far from the page edges
_READ_ERRORS = (PyPdfError, ValueError, KeyError, TypeError, AttributeError, IndexError,
                RecursionError, OSError, NotImplementedError, AssertionError)


@dataclass
class OffsetResult:
    output: Path
    pages: int
    shifted: list[int]                 # 1-based numbers of the pages that moved
    warnings: list[str] = field(default_factory=list)


def offset_pdf(*, input, output, x, y, progress: ProgressCallback | None = None) -> OffsetResult:
    """Write `input` to `output` with its back pages moved x px right and y px down (300 ppi)."""
    report = Progress(progress)
    from app.cards.models import OffsetOptions  # pydantic: loaded on first use, not on import
    limit_pypdf_logging()
    shift = OffsetOptions.parse(x=x, y=y)
    x, y = shift.x, shift.y
    source = Path(input)
    if not source.is_file():
        raise CardError(f"input: {os.fspath(input)!r} is not a file")
    label = source.name
    warnings = []
    if abs(x) >= MARK_INSET_PX or abs(y) >= MARK_INSET_PX:
        warnings.append(f"an offset of {x}, {y} px moves the registration marks on back pages "
                        "partly off the page")
    shift = (x * PT_PER_PX, -y * PT_PER_PX)          # PDF y grows upwards

    with open(source, "rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        to_file = report.span(0.1, 1.0, size)
        prev = _classic_xref(fh, size)
        reader = _open(fh, label, strict=True) if prev is not None else None
        # An incremental update keeps the original bytes: a file with active content
        # is rewritten in full instead, with it removed.
        if reader is not None and prev is not None and not reader.is_encrypted \
                and not _has_active_content(reader):
            roles, note = _page_roles(reader, label)
            shifted = _back_pages(roles, x, y)
            try:
                pages = {number: _shifted_page(reader.pages[number - 1]) for number in shifted}
            except _READ_ERRORS as exc:
                raise CardError(f"{label}: not a readable PDF ({_reason(exc)})") from None
            report(0.1, f"Shifting {len(shifted)} back pages")
            write_atomically(output, lambda out: _append_update(
                fh, CountingWriter(out, size, to_file), reader, prev, pages, shift))
        else:
            # Encrypted, damaged or with xref streams: let pypdf write a new file.
            lenient = _open(fh, label, strict=False)
            roles, note = _page_roles(lenient, label)
            shifted = _back_pages(roles, x, y)
            try:
                writer = PdfWriter(clone_from=lenient)
                removed = active_content(writer.root_object, writer.pages, remove=True)
                if removed:
                    _drop_unreferenced(writer)
                    warnings.append(describe(removed))
                for number in shifted:
                    _wrap_contents(writer.pages[number - 1], writer._add_object, shift)
            except _READ_ERRORS as exc:
                raise CardError(f"{label}: not a readable PDF ({_reason(exc)})") from None
            report(0.1, f"Shifting {len(shifted)} back pages")
            # pypdf needs only write() and tell() of its stream; it annotates it as an IO.
            write_atomically(output, lambda out: writer.write(
                cast(IO[bytes], CountingWriter(out, size, to_file))))
    if note:
        warnings.append(note)
    report(1.0, "Done")
    return OffsetResult(Path(output), len(roles), shifted, warnings)


@overload
def _open(fh, label: str, *, strict: Literal[True]) -> PdfReader | None: ...
@overload
def _open(fh, label: str, *, strict: Literal[False]) -> PdfReader: ...


def _open(fh, label: str, *, strict: bool) -> PdfReader | None:
    """A reader with its pages counted; None when strict parsing fails (try lenient next)."""
    fh.seek(0)
    try:
        reader = PdfReader(fh, strict=strict)
        if reader.is_encrypted and not strict:
            if not reader.decrypt(""):
                raise CardError(f"{label}: the PDF is password-protected")
        checked_page_count(reader, label)  # the full walk, bounded, in the worker
        return reader
    except CardError:
        raise
    except _READ_ERRORS as exc:
        if strict:
            return None
        raise CardError(f"{label}: not a readable PDF ({_reason(exc)})") from None


def _has_active_content(reader: PdfReader) -> bool:
    try:
        return bool(active_content(reader.trailer["/Root"], reader.pages, remove=False))
    except _READ_ERRORS:
        return True  # unsure: take the full rewrite, which removes what it finds


def _drop_unreferenced(writer: PdfWriter, passes: int = 50) -> None:
    """Drop what only the removed entries referred to (a script's objects, an embedded
    file). pypdf drops objects nothing refers to; a chain of them goes one link a pass."""
    for _ in range(passes):
        alive = sum(obj is not None for obj in writer._objects)
        writer.compress_identical_objects(remove_duplicates=False, remove_unreferenced=True)
        if sum(obj is not None for obj in writer._objects) == alive:
            return


def _page_roles(reader: PdfReader, label: str) -> tuple[list[str], str | None]:
    """Roles from our page labels; a PDF without them is taken as front, back, front, ..."""
    try:
        labels = reader.page_labels
    except _READ_ERRORS:
        labels = []
    if labels and all(text.startswith((FRONT_PREFIX, BACK_PREFIX)) for text in labels):
        return ["back" if text.startswith(BACK_PREFIX) else "front" for text in labels], None
    note = (f"{label} does not say which pages are backs (it was not made by this tool); "
            "shifting every second page (2, 4, ...) as a back page")
    return ["back" if index % 2 else "front" for index in range(len(reader.pages))], note


def _back_pages(roles: list[str], x: int, y: int) -> list[int]:
    if not (x or y):
        return []
    return [index + 1 for index, role in enumerate(roles) if role == "back"]


# --------------------------------------------------------------------------- the wrap

def _translation(tx: float, ty: float) -> tuple[DecodedStreamObject, DecodedStreamObject]:
    before, after = DecodedStreamObject(), DecodedStreamObject()
    before.set_data(f"q 1 0 0 1 {num(tx)} {num(ty)} cm\n".encode())
    after.set_data(b"\nQ\n")
    return before, after


def _wrap_contents(page, register, shift) -> None:
    """Put the page's content streams between `q cm` and `Q` (full-rewrite path)."""
    contents = page.get("/Contents")
    if contents is None:
        return  # a blank page has nothing to move
    resolved = contents.get_object()
    parts = list(resolved) if isinstance(resolved, ArrayObject) else [contents]
    parts = [register(p) if isinstance(p, StreamObject) else p for p in parts]
    before, after = _translation(*shift)
    page[NameObject("/Contents")] = ArrayObject([register(before), *parts, register(after)])


def _shifted_page(page) -> tuple[IndirectObject, list] | None:
    """(page reference, its content parts) for the incremental path; None for a blank page."""
    contents = page.get("/Contents")
    if contents is None:
        return None
    resolved = contents.get_object()
    parts = list(resolved) if isinstance(resolved, ArrayObject) else [contents]
    if not all(isinstance(p, IndirectObject) for p in parts):
        raise ValueError("page content is not an indirect stream")
    return page.indirect_reference, parts


# --------------------------------------------------------------------------- incremental update

_STARTXREF = re.compile(rb"startxref\s+(\d+)")


def _classic_xref(fh, size: int) -> int | None:
    """Offset of the file's last xref section if it is a classic table, else None.

    An update section is only appended to such files: mixing a table into a file
    built on xref streams is something not every reader follows.
    """
    fh.seek(max(0, size - 2048))
    found = _STARTXREF.findall(fh.read())
    if not found or int(found[-1]) >= size:
        return None
    fh.seek(int(found[-1]))
    return int(found[-1]) if fh.read(4) == b"xref" else None


def _append_update(src, out, reader: PdfReader, prev: int, pages: dict, shift) -> None:
    """Copy `src` verbatim, then append the changed page objects, an xref section and a trailer."""
    src.seek(0)
    shutil.copyfileobj(src, out, 1 << 20)
    src.seek(-1, os.SEEK_END)
    if src.read(1) not in (b"\n", b"\r"):
        out.write(b"\n")

    declared_size = reader.trailer["/Size"]
    if not isinstance(declared_size, int):  # a NumberObject in a file strict parsing read
        raise ValueError(f"the trailer's /Size is not a number: {declared_size!r}")
    size = int(declared_size)
    before, after = _translation(*shift)
    objects: dict[tuple[int, int], PdfObject] = {(size, 0): before, (size + 1, 0): after}
    wrap = [IndirectObject(size, 0, reader), IndirectObject(size + 1, 0, reader)]
    for entry in pages.values():
        if entry is None:
            continue
        ref, parts = entry
        page = DictionaryObject(ref.get_object())
        page[NameObject("/Contents")] = ArrayObject([wrap[0], *parts, wrap[1]])
        objects[(ref.idnum, ref.generation)] = page

    offsets = {}
    for (idnum, generation), obj in sorted(objects.items()):
        offsets[idnum] = (out.tell(), generation)
        out.write(f"{idnum} {generation} obj\n".encode())
        obj.write_to_stream(out)
        out.write(b"\nendobj\n")

    xref_at = out.tell()
    # Starting with the free head entry (object 0), as a full table does, keeps readers
    # that guess at "not zero-indexed" tables from second-guessing this section.
    out.write(b"xref\n0 1\n0000000000 65535 f\r\n")
    numbers = sorted(offsets)
    start = 0
    while start < len(numbers):
        end = start
        while end + 1 < len(numbers) and numbers[end + 1] == numbers[end] + 1:
            end += 1
        out.write(f"{numbers[start]} {end - start + 1}\n".encode())
        for idnum in numbers[start:end + 1]:
            offset, generation = offsets[idnum]
            out.write(f"{offset:010d} {generation:05d} n\r\n".encode())
        start = end + 1

    trailer = DictionaryObject({
        NameObject("/Size"): NumberObject(size + 2),
        NameObject("/Root"): reader.trailer.raw_get("/Root"),
        NameObject("/Prev"): NumberObject(prev),
    })
    for key in ("/Info", "/ID"):
        if key in reader.trailer:
            trailer[NameObject(key)] = reader.trailer.raw_get(key)
    out.write(b"trailer\n")
    trailer.write_to_stream(out)
    out.write(f"\nstartxref\n{xref_at}\n%%EOF\n".encode())


def _reason(exc: Exception) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text[:120]
