"""Bounds for uploaded PDFs: a cheap check for the request, the full one for the worker,
and pypdf's own warnings kept to a few lines.

The request may only afford what costs milliseconds: pypdf's cost grows with the number
of objects (a 100,000-page file took 12 s and 330 MB inside gunicorn), so the trailer's
declared object count is read from the file's last bytes before pypdf opens anything,
and then only the page tree's root is read (its declared /Count). The worker walks the
whole page tree (`checked_page_count`), where a lie in /Count is caught.
"""
from __future__ import annotations

import logging
import re
import threading
import time
from pathlib import Path

from app.cards.errors import CardError

# A sheet PDF of this tool has a handful of objects per page; 600 cards make < 200 pages.
MAX_OFFSET_PAGES = 2000
MAX_PDF_OBJECTS = 50_000
TAIL_BYTES = 4096
_STARTXREF = re.compile(rb"startxref\s+(\d+)")
_SIZE = re.compile(rb"/Size\s+(\d+)")


def declared_object_count(path: Path) -> int | None:
    """The /Size of the last trailer (classic table or xref stream), from two small reads."""
    with open(path, "rb") as handle:
        end = handle.seek(0, 2)
        handle.seek(max(0, end - TAIL_BYTES))
        tail = handle.read()
        sizes = _SIZE.findall(tail)
        if sizes:  # a classic trailer sits right before startxref
            return int(sizes[-1])
        found = _STARTXREF.findall(tail)
        if not found or int(found[-1]) >= end:
            return None
        handle.seek(int(found[-1]))  # an xref stream: /Size is in its dictionary
        sizes = _SIZE.findall(handle.read(TAIL_BYTES))
    return int(sizes[0]) if sizes else None


def quick_check(path: Path, label: str) -> int:
    """Cheap enough for an HTTP request: the declared page count, or CardError."""
    objects = declared_object_count(path)
    if objects is None:
        raise CardError(f"{label} is not a readable PDF (no trailer)")
    if objects > MAX_PDF_OBJECTS:
        raise CardError(f"{label} has {objects:,} objects; at most {MAX_PDF_OBJECTS:,} are "
                        "accepted")
    from pypdf import PdfReader

    reader = PdfReader(path, strict=False)
    if reader.is_encrypted:
        raise CardError(f"{label} is encrypted; upload an unprotected PDF")
    pages = reader.root_object["/Pages"]
    if not isinstance(pages, dict):  # a DictionaryObject in any PDF with pages
        raise CardError(f"{label} is not a readable PDF (no page tree)")
    count = pages.get("/Count")
    count = int(count) if count is not None else 0
    check_page_count(count, label)
    return count


def check_page_count(count: int, label: str) -> None:
    if count < 1:
        raise CardError(f"{label} has no pages")
    if count > MAX_OFFSET_PAGES:
        raise CardError(f"{label} has {count:,} pages; at most {MAX_OFFSET_PAGES:,} are "
                        "accepted")


def checked_page_count(reader, label: str) -> int:
    """The worker's full check: walks the page tree (pypdf bounds its depth)."""
    count = len(reader.pages)
    check_page_count(count, label)
    return count


# --------------------------------------------------------------------------- pypdf's logs

class RateLimitedForwarder(logging.Handler):
    """pypdf's records, at most `burst` per `window` seconds, then one line saying how
    many were dropped. A damaged file makes pypdf warn once per bad object: thousands of
    lines per request, which is a log flood anyone with an account can cause."""

    def __init__(self, burst: int = 20, window: float = 60.0, clock=time.monotonic):
        super().__init__()
        self.burst, self.window, self.clock = burst, window, clock
        self.started, self.passed, self.dropped = clock(), 0, 0
        self.guard = threading.Lock()

    def reset(self) -> None:
        """Start a fresh window (a new burst may pass)."""
        with self.guard:
            self.started, self.passed, self.dropped = self.clock(), 0, 0

    def emit(self, record: logging.LogRecord) -> None:
        with self.guard:
            now = self.clock()
            if now - self.started >= self.window:
                if self.dropped:
                    self._forward(self._note(record, f"{self.dropped} further pypdf warnings "
                                                     f"were not logged"))
                self.started, self.passed, self.dropped = now, 0, 0
            if self.passed >= self.burst:
                self.dropped += 1
                return
            self.passed += 1
            if self.passed == self.burst:
                record = self._note(record, f"{record.getMessage()} (further pypdf warnings "
                                            f"in the next {self.window:.0f} s are counted, "
                                            "not logged)")
        self._forward(record)

    @staticmethod
    def _note(record: logging.LogRecord, message: str) -> logging.LogRecord:
        return logging.makeLogRecord({**record.__dict__, "msg": message, "args": ()})

    @staticmethod
    def _forward(record: logging.LogRecord) -> None:
        logging.getLogger().handle(record)  # the application's handlers, as before


_installed = threading.Lock()


def limit_pypdf_logging(burst: int = 20, window: float = 60.0) -> RateLimitedForwarder:
    """Route the `pypdf` loggers through one rate-limited handler (idempotent)."""
    logger = logging.getLogger("pypdf")
    with _installed:
        for handler in logger.handlers:
            if isinstance(handler, RateLimitedForwarder):
                return handler
        handler = RateLimitedForwarder(burst, window)
        logger.addHandler(handler)
        logger.propagate = False
        return handler
