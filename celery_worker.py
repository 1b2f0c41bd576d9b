"""A standalone Celery worker, for a separate host or an operator-managed process.

    python celery_worker.py [--queues pdf_generation,pdf_offset] [--concurrency 4]
                            [--loglevel INFO] [--hostname NAME@%h]

It uses the same settings as the web app (broker, result backend, instance folder
for job records and outputs, time limits) and replaces itself with
`python -m celery -A celery_app worker ...`, so signals reach Celery directly.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))

from app.queue_names import KNOWN_QUEUES, queue_names  # noqa: E402
from app.settings import load_settings_or_exit  # noqa: E402


def parse_args(argv: list[str], settings) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queues", default=",".join(settings.queue_weights),
                        help=f"comma list from {', '.join(KNOWN_QUEUES)} (default: all "
                             "configured queues)")
    parser.add_argument("--concurrency", type=int, default=settings.CELERY_CONCURRENCY,
                        help="pool processes (default: CELERY_CONCURRENCY)")
    parser.add_argument("--loglevel", default=settings.CELERY_LOG_LEVEL,
                        help="DEBUG, INFO, WARNING, ERROR (default: CELERY_LOG_LEVEL)")
    parser.add_argument("--hostname", default=None,
                        help="Celery node name (default: standalone-<queues>@NODE_NAME)")
    args = parser.parse_args(argv)
    try:
        queues = queue_names(args.queues)
    except ValueError:
        parser.error(f"--queues must name queues from {', '.join(KNOWN_QUEUES)}")
    if not 1 <= args.concurrency <= 256:
        parser.error("--concurrency must be between 1 and 256")
    if args.loglevel.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
        parser.error("--loglevel must be DEBUG, INFO, WARNING, ERROR or CRITICAL")
    args.queues = list(dict.fromkeys(queues))
    return args


def main(argv: list[str] | None = None) -> int:
    settings = load_settings_or_exit()
    # [deploy] None: the console script's own command line.
    args = parse_args(sys.argv[1:] if argv is None else argv, settings)
    broker = settings.broker_url
    if not broker:
        print("error: no broker configured: set REDIS_URL, REDIS_HOST or CELERY_BROKER_URL",
              file=sys.stderr)
        return 2
    if not settings.broker_configured:
        print("note: no broker configured; using this host's embedded Redis, which runs only "
              "while start_with_celery.py runs here", file=sys.stderr)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env["INSTANCE_PATH"] = str(settings.INSTANCE_PATH)
    env["CELERY_BROKER_URL"] = broker
    if settings.result_backend:
        env["CELERY_RESULT_BACKEND"] = settings.result_backend
    hostname = args.hostname or f"standalone-{'-'.join(args.queues)}@{settings.node_name}"
    command = [sys.executable, "-m", "celery", "-A", "celery_app", "worker",
               "-Q", ",".join(settings.broker_queue(q) for q in args.queues), "-c", str(args.concurrency),
               "-l", args.loglevel.upper(), "-n", hostname, "-E"]
    settings.ensure_dirs()
    os.execve(sys.executable, command, env)
    return 0  # not reached


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
