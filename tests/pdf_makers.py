"""Hostile PDFs written byte by byte (fast, whatever their size) for the offset limits."""
from __future__ import annotations

from pathlib import Path


def _write(path: Path, objects: list[bytes], root: int = 1, extra_trailer: bytes = b"") -> Path:
    out = bytearray(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f\r\n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n\r\n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root %d 0 R %s>>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1, root, extra_trailer, xref)
    path.write_bytes(bytes(out))
    return path


def many_pages(path: Path, pages: int) -> Path:
    """A flat page tree of `pages` pages sharing one content stream."""
    first_page = 4
    kids = b" ".join(b"%d 0 R" % (first_page + i) for i in range(pages))
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>",
               b"<< /Type /Pages /Count %d /Kids [%s] >>" % (pages, kids),
               b"<< /Length 8 >>\nstream\n0 0 m S\n\nendstream"]
    objects += [b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 3 0 R >>"
                for _ in range(pages)]
    return _write(path, objects)


def deep_page_tree(path: Path, depth: int) -> Path:
    """One page at the bottom of `depth` nested /Pages nodes."""
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>"]
    for level in range(depth):
        number = 2 + level
        objects.append(b"<< /Type /Pages /Count 1 /Kids [%d 0 R] >>" % (number + 1))
    leaf = 2 + depth
    objects.append(b"<< /Type /Page /Parent %d 0 R /MediaBox [0 0 612 792] >>" % (leaf - 1))
    return _write(path, objects)


def with_active_content(path: Path) -> Path:
    """Two pages carrying every kind of active content offset must strip."""
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R /OpenAction 5 0 R /AA << /WC 5 0 R >>"
        b" /Names << /JavaScript 6 0 R /EmbeddedFiles 8 0 R >> >>",
        b"<< /Type /Pages /Count 2 /Kids [3 0 R 4 0 R] >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 10 0 R"
        b" /AA << /O 5 0 R >> /Annots [7 0 R 11 0 R 12 0 R] >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 10 0 R >>",
        b"<< /Type /Action /S /JavaScript /JS (app.alert\\(1\\)) >>",
        b"<< /Names [(x) 5 0 R] >>",
        b"<< /Type /Annot /Subtype /Link /Rect [0 0 10 10]"
        b" /A << /S /Launch /F (calc.exe) >> >>",
        b"<< /Names [(a.exe) 9 0 R] >>",
        b"<< /Type /Filespec /F (a.exe) /EF << /F 13 0 R >> >>",
        b"<< /Length 8 >>\nstream\n0 0 m S\n\nendstream",
        b"<< /Type /Annot /Subtype /FileAttachment /Rect [0 0 10 10] /FS 9 0 R >>",
        b"<< /Type /Annot /Subtype /Link /Rect [20 20 30 30]"
        b" /A << /S /URI /URI (https://example.org/) >> >>",
        b"<< /Length 4 >>\nstream\nMZ!!\nendstream",
    ]
    return _write(path, objects)
