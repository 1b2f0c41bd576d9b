"""Production entry point: the Celery worker manager here, gunicorn as a child.

    python start_with_celery.py

- Binds HOST:PORT (default 127.0.0.1:5000) with gunicorn.conf.py.
- This process takes the instance folder's manager lock and runs the
  CeleryWorkerManager (embedded Redis when no broker is configured) and the jobs
  reconciler; gunicorn's workers reach the manager through its Unix socket.
- START_CELERY_WORKER defaults to true here; with false the manager still runs (and
  the embedded Redis, if any) but starts no workers until POST /api/celery/start, for
  setups whose workers run elsewhere (celery_worker.py).
- SIGTERM or SIGINT: stop gunicorn (graceful), stop the Celery workers warm, exit 0,
  nothing left running. SIGHUP: gunicorn reloads its HTTP workers.
- If gunicorn dies on its own, everything stops and the exit code is 1, so systemd
  restarts the whole unit.
"""
from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))

from app import create_app  # noqa: E402
from app.auth.setup import announce_first_run  # noqa: E402
from app.settings import load_settings_or_exit, with_workers_by_default  # noqa: E402
from app.supervisor import host_manager, manager_handle  # noqa: E402

log = logging.getLogger("start_with_celery")


def gunicorn_command() -> list[str]:
    return [sys.executable, "-m", "gunicorn", "-c", str(ROOT / "gunicorn.conf.py")]


def gunicorn_env(settings) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    # The child resolves the same instance folder whatever its working directory.
    env["INSTANCE_PATH"] = str(settings.INSTANCE_PATH)
    env["SCM_MANAGER_IN_PARENT"] = "1"
    env["SCM_PARENT_PID"] = str(os.getpid())
    return env


def main() -> int:
    settings = with_workers_by_default(load_settings_or_exit())
    logging.basicConfig(level=settings.LOG_LEVEL.upper(),
                        format="%(asctime)s %(levelname)s [%(process)d] %(name)s: %(message)s")

    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    # Until gunicorn runs, a SIGHUP must not kill us (a Python handler, unlike SIG_IGN,
    # is not inherited by the children we exec).
    signal.signal(signal.SIGHUP, lambda *_: None)

    app = create_app(settings)
    handle = manager_handle(app)
    gunicorn: subprocess.Popen | None = None
    code = 0
    try:
        # The manager runs here either way (embedded Redis, status, restarts by API);
        # START_CELERY_WORKER decides whether it starts workers at boot.
        if not host_manager(app, takeover=False):
            log.warning("another process already runs the manager for %s; serving HTTP only",
                        settings.INSTANCE_PATH)
        if stop.is_set():
            return 0
        gunicorn = subprocess.Popen(gunicorn_command(), env=gunicorn_env(settings))
        # SIGHUP: gunicorn reloads its workers gracefully (new code, same Celery workers).
        signal.signal(signal.SIGHUP, lambda *_: gunicorn.send_signal(signal.SIGHUP))
        log.info("gunicorn (pid %d) serving http://%s:%d", gunicorn.pid, settings.HOST,
                 settings.PORT)
        announce_first_run(app)
        while not stop.wait(0.5):
            if gunicorn.poll() is not None:
                log.error("gunicorn exited with code %s; stopping", gunicorn.returncode)
                code = 1
                break
    finally:
        _stop_gunicorn(gunicorn, timeout=max(30, settings.CELERY_STOP_TIMEOUT + 20))
        handle.close()
        log.info("stopped")
    return code


def _stop_gunicorn(proc: subprocess.Popen | None, timeout: float) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)  # graceful: finish in-flight requests
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        log.warning("gunicorn did not stop in %.0f s; killing it", timeout)
        proc.kill()
        proc.wait(10)


if __name__ == "__main__":
    sys.exit(main())
