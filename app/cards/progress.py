"""Progress reporting through the caller's `progress(fraction, message)` callback."""
from __future__ import annotations

from collections.abc import Callable

ProgressCallback = Callable[[float, str], None]


class Progress:
    """Keeps fractions within 0..1 and never lets them go backwards.

    The callback may raise to cancel the work; the exception propagates unchanged.
    """

    def __init__(self, callback: ProgressCallback | None):
        self._callback = callback
        self._last = 0.0

    def __call__(self, fraction: float, message: str) -> None:
        self._last = max(self._last, min(1.0, max(0.0, fraction)))
        if self._callback is not None:
            self._callback(self._last, message)

    def span(self, start: float, end: float, total: int) -> Callable[[int, str], None]:
        """Reporter for step i of `total` mapped onto start..end."""
        def report(done: int, message: str) -> None:
            self(start + (end - start) * (done / total if total else 1.0), message)
        return report


class CountingWriter:
    """File wrapper that reports progress as bytes are written (pypdf needs tell())."""

    def __init__(self, fh, expected: int, report: Callable[[int, str], None], steps: int = 20):
        self._fh = fh
        self._expected = max(1, expected)
        self._report = report
        self._step = max(1, self._expected // steps)
        self._next = self._step

    def write(self, data) -> int:
        written = self._fh.write(data)
        position = self._fh.tell()
        if position >= self._next:
            self._next = position + self._step
            self._report(min(position, self._expected), "Writing PDF")
        return written

    def tell(self) -> int:
        return self._fh.tell()

    def __getattr__(self, name):
        return getattr(self._fh, name)
