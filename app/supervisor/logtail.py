"""The end of one worker's log file, like supervisord's `tail`: bounded bytes, and only
the files the manager writes for its own workers. The caller names a worker; the path
comes from the manager's status and must be a worker log in the instance's logs folder,
so no request can read any other file. Served as the `log_tail` admin operation."""
from __future__ import annotations

import os
from pathlib import Path

from app.settings import Settings
from app.supervisor.errors import NotFound

DEFAULT_BYTES = 16 * 1024
MAX_BYTES = 256 * 1024


def worker_log_tail(settings: Settings, status: dict, worker: str,
                    max_bytes: int = DEFAULT_BYTES) -> dict:
    """`{worker, size, offset, truncated, text}` for the worker named `worker`."""
    return {"worker": worker, **read_tail(worker_log_path(settings, status, worker), max_bytes)}


def worker_log_path(settings: Settings, status: dict, worker: str) -> Path:
    """The log of the worker named `worker` in `status` (the manager's status())."""
    for entry in status.get("workers") or ():
        if entry.get("name") == worker:
            return _checked(settings, entry.get("log_file"), worker)
    raise NotFound(f"no worker named {worker[:80]!r}")


def _checked(settings: Settings, log_file: str | None, worker: str) -> Path:
    if not log_file:
        raise NotFound(f"worker {worker!r} has no log file yet")
    logs = settings.logs_dir.resolve()
    path = Path(log_file).resolve()
    if path.parent != logs or not (path.name.startswith("worker-") and path.suffix == ".log"):
        raise NotFound(f"worker {worker!r} has no log file here")
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
