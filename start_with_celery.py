"""Production entry point: the Celery worker manager here, gunicorn as a child.

    python start_with_celery.py [--no-web]

- Binds HOST:PORT (default 127.0.0.1:5000) with gunicorn.conf.py.
- This process takes the instance folder's manager lock and runs the
  CeleryWorkerManager (embedded Redis when no broker is configured) and the jobs
  reconciler; gunicorn's workers reach the manager through its Unix socket.
- --no-web: the same without gunicorn - a worker-only host (the compose `worker`
  service): the manager, its Celery workers and the reconciler, no HTTP server.
- START_CELERY_WORKER defaults to true here; with false the manager still runs (and
  the embedded Redis, if any) but starts no workers until POST /api/celery/start, for
  setups whose workers run elsewhere (celery_worker.py).
- SIGTERM or SIGINT: stop gunicorn (graceful), stop the Celery workers warm, exit 0,
  nothing left running. SIGHUP: gunicorn reloads its HTTP workers (ignored with
  --no-web).
- If gunicorn dies on its own, everything stops and the exit code is 1, so systemd
  restarts the whole unit.
"""
from __future__ import annotations

import argparse
import logging
import signal
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))

from app import create_app  # noqa: E402
from app.db import engine_or_exit  # noqa: E402
from app.front import http_child  # noqa: E402  (issue 12: the slow-client front)
from app.runtime import Entry, hosting_for, runtime_of, serve  # noqa: E402
from app.sdnotify import Notifier, ServiceNotifier  # noqa: E402  [deploy]
from app.settings import load_settings_or_exit, with_workers_by_default  # noqa: E402


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-web", action="store_true",
                        help="run the manager, its workers and the reconciler without HTTP")
    return parser.parse_args(argv)


def gunicorn_config() -> Path:
    # [deploy] Installed by `pip install .`, the file sits under <prefix>/share (pyproject).
    beside = ROOT / "gunicorn.conf.py"
    if beside.exists():
        return beside
    return Path(sys.prefix) / "share" / "silhouette-card-maker" / "gunicorn.conf.py"


def main(argv: list[str] | None = None) -> int:
    # [deploy] First: takes NOTIFY_SOCKET out of the environment our children inherit.
    notifier = Notifier.from_environment()
    args = parse_args(sys.argv[1:] if argv is None else argv)  # None: a console script
    settings = with_workers_by_default(load_settings_or_exit())
    logging.basicConfig(level=settings.LOG_LEVEL.upper(),
                        format="%(asctime)s %(levelname)s [%(process)d] %(name)s: %(message)s")
    # Until gunicorn runs, a SIGHUP must not kill us (a Python handler, unlike SIG_IGN,
    # is not inherited by the children we exec).
    signal.signal(signal.SIGHUP, lambda *_: None)
    engine_or_exit(settings.database_url)  # one clear line when it cannot be reached
    app = create_app(settings)
    # issue 12: gunicorn behind the slow-client front unless a proxy does that job.
    http = None if args.no_web else http_child(
        settings, gunicorn_config(), pythonpath=ROOT)
    # [deploy] systemd: READY once HTTP serves and the workers run, STATUS=, STOPPING=,
    # and WATCHDOG=1 from the manager's own loop.
    service = ServiceNotifier(notifier, runtime_of(app).handle.health)
    runtime_of(app).on_tick = service.watchdog_tick
    if args.no_web:
        runtime_of(app).cluster_role = "worker"
    return serve(app, hosting_for(Entry.PRODUCTION, settings), http, notifier=service)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
