"""Reading the marks the test tasks leave (see worker_app): one word per line, "start"/"done"."""
from __future__ import annotations

from pathlib import Path


def marks_of(path: str | Path) -> list[str]:
    try:
        return [line.split()[0] for line in Path(path).read_text().splitlines() if line]
    except FileNotFoundError:
        return []
