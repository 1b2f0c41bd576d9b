"""Container health check for every role of the one image (exit 0 healthy, 1 not).

    python deploy/healthcheck.py http [URL]   web role: GET /api/celery/health (200 = up);
                                              default http://127.0.0.1:$PORT/api/celery/health
    python deploy/healthcheck.py manager      worker-only role (--no-web): this instance's
                                              manager answers on its socket and runs workers
    python deploy/healthcheck.py http http://127.0.0.1:5555/healthcheck    Flower

The probe answers 200 while healthy or degraded (jobs still run, on threads) and 503
when unhealthy, the same rule a load balancer applies. Standard library only for the
HTTP form, so it costs a few milliseconds every interval.
"""
from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request

TIMEOUT = 4.0


def check_http(url: str) -> tuple[bool, str]:
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT) as response:
            return response.status == 200, f"{url}: {response.status}"
    except urllib.error.HTTPError as exc:
        return False, f"{url}: {exc.code}"
    except OSError as exc:
        return False, f"{url}: {exc}"


def check_manager() -> tuple[bool, str]:
    """The manager of this instance folder runs and at least one worker is RUNNING."""
    from app.settings import load_settings
    from app.supervisor.control import ManagerHandle

    try:
        status = ManagerHandle(load_settings()).status()
    except Exception as exc:  # a probe reports, it never crashes
        return False, f"manager: {type(exc).__name__}: {exc}"
    running = [w["name"] for w in status.get("workers", []) if w.get("state") == "RUNNING"]
    manager_up = bool(status.get("manager", {}).get("running"))
    return manager_up and bool(running), f"manager running={manager_up} workers={running}"


def default_url() -> str:
    return f"http://127.0.0.1:{os.environ.get('PORT', '5000')}/api/celery/health"


def main(argv: list[str]) -> int:
    mode = argv[0] if argv else "http"
    if mode == "http":
        ok, detail = check_http(argv[1] if len(argv) > 1 else default_url())
    elif mode == "manager":
        ok, detail = check_manager()
    else:
        print(f"usage: healthcheck.py http [URL] | manager (got {mode!r})", file=sys.stderr)
        return 2
    print(detail)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
