"""PostgreSQL as the Celery result backend (`db+postgresql+psycopg://`, on the session's own
database), and a missing client library stopping the start with one clear line."""
from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
import sqlalchemy as sa

from app.jobs.cleanup import expire_results
from tests.conftest import make_settings, wait_for
from tests.supervisor.conftest import all_running
from tests.supervisor.test_jobs_integration import JobSystem, valid_pdf

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_progress_results_and_expiry_on_postgresql(tmp_path, postgres_server, redis_server,
                                                   managers):
    backend = f"db+{postgres_server.url_for()}"
    settings = make_settings(tmp_path, CELERY_BROKER_URL=redis_server.url,
                             CELERY_RESULT_BACKEND=backend, START_CELERY_WORKER=True,
                             CELERY_HEALTH_CHECK_INTERVAL=1.0, CELERY_QUEUES="default",
                             CELERY_CONCURRENCY=1, OUTPUT_RETENTION_HOURS=1)
    system = JobSystem(settings, managers)
    wait_for(lambda: all_running(system.manager, 1), 40, 0.1, "worker running")
    job, mode = system.submit(slow=2)
    assert mode == "celery"
    wait_for(lambda: system.store.get(job.id).status == "running", 20, 0.05, "job running")
    task = system.dispatcher.celery.AsyncResult(system.store.get(job.id).task_id)
    wait_for(lambda: task.state == "PROGRESS" and task.info["progress"] > 0, 10, 0.1,
             "PROGRESS in PostgreSQL")
    done = system.finished(job.id, 30)
    assert done.status == "succeeded" and valid_pdf(settings.in_storage(done.output_path))
    wait_for(lambda: task.state == "SUCCESS", 10, 0.1, "SUCCESS in PostgreSQL")
    assert task.result["job_id"] == job.id

    engine = sa.create_engine(postgres_server.url_for(), poolclass=sa.NullPool)
    try:
        with engine.begin() as conn:
            rows = conn.execute(sa.text("SELECT count(*) FROM celery_taskmeta WHERE task_id = :t"),
                                {"t": task.id}).scalar()
            assert rows == 1
            # Older than result_expires (1 h here): the reconciler's housekeeping removes it.
            conn.execute(sa.text("UPDATE celery_taskmeta SET date_done = now() - interval "
                                 "'2 hours' WHERE task_id = :t"), {"t": task.id})
        expire_results(system.dispatcher.celery)
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT count(*) FROM celery_taskmeta WHERE "
                                        "task_id = :t"), {"t": task.id}).scalar() == 0
    finally:
        engine.dispose()


BLOCKER = """
import sys
class _Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {blocked!r}:
            raise ImportError(f"No module named {{name!r}} (blocked by the test)")
sys.meta_path.insert(0, _Block())
"""


@pytest.mark.parametrize("env, blocked, expected", [
    ({"CELERY_BROKER_URL": "redis://127.0.0.1:1/0",
      "CELERY_RESULT_BACKEND": "db+postgresql+psycopg://postgres@127.0.0.1:5432/x"},
     {"psycopg"}, "CELERY_RESULT_BACKEND db+postgresql+psycopg:// needs its database driver"),
    ({"CELERY_BROKER_URL": "sqs://a:b@127.0.0.1:1",
      "CELERY_RESULT_BACKEND": "redis://127.0.0.1:1/0"},
     {"boto3"}, "CELERY_BROKER_URL uses sqs:// but its client library 'boto3' is missing"),
])
def test_a_missing_client_library_stops_the_start_with_one_line(tmp_path, env, blocked,
                                                                 expected):
    """A real `start_with_celery.py` process whose interpreter cannot import the library
    (a sitecustomize blocks it): exit 2, one line, no worker started."""
    (tmp_path / "sitecustomize.py").write_text(BLOCKER.format(blocked=blocked))
    child_env = {k: v for k, v in os.environ.items() if not k.startswith(("CELERY_", "REDIS_"))}
    child_env.update(env, PYTHONPATH=f"{tmp_path}{os.pathsep}{ROOT}", SCM_ENV_FILE="",
                     APP_ENV="testing", INSTANCE_PATH=str(tmp_path / "instance"),
                     JWT_SECRET_KEY="test-secret-" + "x" * 40, PORT="1")
    started = time.monotonic()
    out = subprocess.run([sys.executable, os.path.join(ROOT, "start_with_celery.py")],
                         env=child_env, capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert out.returncode == 2, out.stdout + out.stderr
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], lines
    assert "pip install 'silhouette-card-maker[" in lines[0]
    assert time.monotonic() - started < 30
    assert not (tmp_path / "instance" / "logs").exists() or not any(
        (tmp_path / "instance" / "logs").glob("worker-*.log"))
