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
from app.runtime import Entry, GunicornChild, hosting_for, serve  # noqa: E402
from app.settings import load_settings_or_exit, with_workers_by_default  # noqa: E402


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-web", action="store_true",
                        help="run the manager, its workers and the reconciler without HTTP")
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    settings = with_workers_by_default(load_settings_or_exit())
    logging.basicConfig(level=settings.LOG_LEVEL.upper(),
                        format="%(asctime)s %(levelname)s [%(process)d] %(name)s: %(message)s")
    # Until gunicorn runs, a SIGHUP must not kill us (a Python handler, unlike SIG_IGN,
    # is not inherited by the children we exec).
    signal.signal(signal.SIGHUP, lambda *_: None)
    app = create_app(settings)
    http = None if args.no_web else GunicornChild(
        settings, ROOT / "gunicorn.conf.py", pythonpath=ROOT)
    return serve(app, hosting_for(Entry.PRODUCTION, settings), http)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
