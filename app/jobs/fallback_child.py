"""One fallback job in a process of its own: `python -m app.jobs.fallback_child`.

    python -m app.jobs.fallback_child --parent PID --node NODE JOB_ID   (settings JSON on stdin)

Started by `app.jobs.fallback_process.ChildJobs` so that the card work of a job the
broker could not take never runs inside the web server or the manager: this process has
an address-space limit (RLIMIT_AS, set before the card engine is imported, so its own
libraries count), a lower CPU priority, and dies with the thread that started it
(PR_SET_PDEATHSIG); the parent kills it at the time limit or when the job is cancelled.
It runs the job exactly as a Celery task would (`runner.run_job`, transient failures
retried), writing progress and the outcome to the job store itself.
"""
from __future__ import annotations

import argparse
import importlib.util
import logging
import os
import resource
import signal
import sys
import time
from pathlib import Path

from app.settings import Settings

MB = 1024 * 1024
# Exit codes the parent reads (app.jobs.fallback_process).
EXIT_ORPHANED = 3      # the parent was gone before the death signal was armed
EXIT_OUT_OF_MEMORY = 90


def _arm_parent_death_signal() -> None:
    """PR_SET_PDEATHSIG through the supervisor's exec shim, loaded as the standalone
    script it is: importing the `app.supervisor` package would pull in its admin API
    (Flask) and count against this process's address-space limit."""
    path = Path(__file__).resolve().parents[1] / "supervisor" / "shim.py"
    spec = importlib.util.spec_from_file_location("scm_exec_shim", path)
    assert spec is not None and spec.loader is not None
    shim = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(shim)
    shim.set_parent_death_signal(signal.SIGKILL)


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m app.jobs.fallback_child")
    parser.add_argument("--parent", type=int, required=True)
    parser.add_argument("--node", required=True, help="the parent pool's journal name")
    parser.add_argument("job_id")
    return parser.parse_args(argv)


def confine(settings: Settings) -> None:
    """The limits this process runs under (it has not imported the card engine yet)."""
    limit = settings.fallback_memory_mb * MB
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    os.nice(settings.FALLBACK_NICE)


def run(settings: Settings, job_id: str, node: str) -> dict:
    """`runner.run_job` with the transient retries the Celery tasks get."""
    from app.jobs import runner
    from app.jobs.holders import runner_name
    from app.jobs.limits import fallback_budget

    name = runner_name(f"threads@{settings.node_name}")
    budget = fallback_budget(settings)
    for attempt in range(runner.TRANSIENT_RETRIES + 1):
        try:
            return runner.run_job(settings, job_id, runner=name, worker_node=node,
                                  retry_transient=attempt < runner.TRANSIENT_RETRIES,
                                  memory_budget=budget)
        except runner.TransientJobError as exc:
            delay = runner.retry_delay(attempt)
            logging.getLogger(__name__).warning("job %s: %s; retry %d in %.1f s",
                                                job_id, exc, attempt + 1, delay)
            time.sleep(delay)
    return {"job_id": job_id, "status": "unknown"}


def main(argv: list[str] | None = None) -> int:
    args = _arguments(argv)
    if sys.platform.startswith("linux"):
        _arm_parent_death_signal()
    if os.getppid() != args.parent:
        return EXIT_ORPHANED
    settings = Settings.model_validate_json(sys.stdin.buffer.read())
    logging.basicConfig(level=settings.LOG_LEVEL.upper(), stream=sys.stderr,
                        format=f"%(asctime)s fallback-child[{os.getpid()}] %(levelname)s "
                               "%(name)s: %(message)s")
    confine(settings)
    try:
        result = run(settings, args.job_id, args.node)
    except MemoryError:
        return EXIT_OUT_OF_MEMORY
    logging.getLogger(__name__).info("job %s: %s", args.job_id, result.get("status"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
