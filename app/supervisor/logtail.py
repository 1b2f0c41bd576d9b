"""The end of one worker's log file, like supervisord's `tail`: bounded bytes, and only
the files the manager writes for its own workers. The request names a worker; the path
comes from the manager's status and must be a worker log in the instance's logs folder,
so no request can read any other file."""
from __future__ import annotations

import os
from pathlib import Path

from app.errors import APIError
from app.settings import Settings

DEFAULT_BYTES = 16 * 1024
MAX_BYTES = 256 * 1024


def requested_bytes(text: str | None) -> int:
    """The `bytes` query parameter: 1..MAX_BYTES, DEFAULT_BYTES when absent."""
    if text is None:
        return DEFAULT_BYTES
    if not (text.isascii() and text.isdigit() and len(text) <= 7) or not \
            1 <= int(text) <= MAX_BYTES:
        raise APIError(400, "invalid_input",
                       f"bytes must be a whole number between 1 and {MAX_BYTES}")
    return int(text)


def worker_log_path(settings: Settings, status: dict, worker: str) -> Path:
    """The log of the worker named `worker` in `status` (the manager's status())."""
    for entry in status.get("workers") or ():
        if entry.get("name") == worker:
            return _checked(settings, entry.get("log_file"), worker)
    raise APIError(404, "not_found", f"no worker named {worker[:80]!r}")


def _checked(settings: Settings, log_file: str | None, worker: str) -> Path:
    if not log_file:
        raise APIError(404, "no_log", f"worker {worker!r} has no log file yet")
    logs = settings.logs_dir.resolve()
    path = Path(log_file).resolve()
    if path.parent != logs or not (path.name.startswith("worker-") and path.suffix == ".log"):
        raise APIError(404, "no_log", f"worker {worker!r} has no log file here")
    return path


def read_tail(path: Path, max_bytes: int = DEFAULT_BYTES) -> dict:
    """The last `max_bytes` of `path`, cut to whole lines, as text."""
    max_bytes = max(1, min(int(max_bytes), MAX_BYTES))
    try:
        with open(path, "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            start = max(0, size - max_bytes)
            handle.seek(start)
            data = handle.read(max_bytes)
    except FileNotFoundError:
        return {"size": 0, "offset": 0, "truncated": False, "text": ""}
    if start > 0 and b"\n" in data:
        data = data[data.index(b"\n") + 1:]  # drop the partial first line
    return {"size": size, "offset": size - len(data), "truncated": start > 0,
            "text": data.decode("utf-8", errors="replace")}
