"""Cluster benchmark (issue 8): jobs per second with 1, 2 and 3 hosts on one machine,
the reconciler takeover time and the time for a killed host to show as lost.

    python bench/cluster.py [--jobs 90] [--sleep 1.0] [--concurrency 2]

Starts its own redis-server and its own PostgreSQL database (127.0.0.1:5432, user
postgres; dropped at the end). Host A is `start_with_celery.py` with HTTP; hosts B and C
are `--no-web` worker-only hosts added one at a time, all on one STORAGE_DIR. Jobs are
synthetic (JOB_TEST_SLEEP_SECONDS: each sleeps instead of making its PDF), so the figure
is the coordination cost (HTTP, job store, broker, reconciler), not the 2 cores. A round
submits --jobs calibration jobs to A over HTTP (8 client threads) and times from the first
submission to the last job's `succeeded` in the store. Then the host that holds the
reconciler lease is SIGKILLed (whole process group): takeover = until another host holds
the lease; lost = until the registry shows the host `lost` (bench settings:
CLUSTER_LEASE_SECONDS=3, CELERY_HEALTH_CHECK_INTERVAL=1; the defaults are 15 and 10).
"""
from __future__ import annotations

import argparse
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psutil
import requests
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.cluster import HostRegistry  # noqa: E402
from app.cluster.lease import RECONCILER, Lease  # noqa: E402
from app.db.schema import jobs  # noqa: E402
from app.supervisor.redis_binary import find_redis_server  # noqa: E402

POSTGRES_ADMIN = os.environ.get("SCM_BENCH_POSTGRES_URL",
                                "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
ADMIN = ("admin", "bench-admin-password-1")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(predicate, timeout: float, what: str, interval: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise SystemExit(f"timed out waiting for {what}")


class Host:
    def __init__(self, name: str, folder: Path, env: dict[str, str], web: bool):
        self.name, self.port = name, free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**env, "NODE_NAME": name, "PORT": str(self.port),
               "INSTANCE_PATH": str(folder / name)}
        argv = [sys.executable, str(ROOT / "start_with_celery.py")] + ([] if web else ["--no-web"])
        self.log = open(folder / f"{name}.log", "ab")
        self.proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=self.log,
                                     stderr=subprocess.STDOUT, start_new_session=True)

    def kill(self) -> None:
        """The host dies: its whole tree, at once."""
        try:
            tree = psutil.Process(self.proc.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            tree = []
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        for proc in tree:
            try:
                proc.kill()
            except psutil.NoSuchProcess:
                pass
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.kill()
        self.log.close()


def base_env(database_url: str, redis_url: str, storage: Path, args) -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/tmp"),
        "LANG": "C.UTF-8", "PYTHONUNBUFFERED": "1", "SCM_ENV_FILE": "",
        "APP_ENV": "testing", "HOST": "127.0.0.1", "LOG_LEVEL": "WARNING",
        "JWT_SECRET_KEY": "bench-secret-" + secrets.token_hex(24),
        "ADMIN_USERNAME": ADMIN[0], "ADMIN_PASSWORD": ADMIN[1],
        "DATABASE_URL": database_url, "REDIS_URL": redis_url, "EMBEDDED_REDIS": "false",
        "STORAGE_DIR": str(storage), "START_CELERY_WORKER": "true",
        "CELERY_QUEUES": "default", "CELERY_CONCURRENCY": str(args.concurrency),
        "CELERY_LOG_LEVEL": "WARNING", "CELERY_HEALTH_CHECK_INTERVAL": "1",
        "CLUSTER_LEASE_SECONDS": "3", "JOB_TEST_SLEEP_SECONDS": str(args.sleep),
        "JOB_SUBMIT_RATE_LIMIT": "100000 per minute", "JOB_MAX_ACTIVE_PER_USER": "100000",
        "JOB_IN_FLIGHT_PER_USER": "1000", "GUNICORN_WORKERS": "2",
    }


def hosts_running(engine, names: set[str]) -> bool:
    hosts = {h["node"]: h for h in HostRegistry(engine).hosts()}
    return names <= set(hosts) and all(
        hosts[n]["alive"] and any(w["state"] == "RUNNING" for w in hosts[n]["workers"])
        for n in names)


def run_round(web: Host, engine, token: str, count: int) -> float:
    """Jobs per second: `count` jobs submitted to the web host until all succeeded."""
    session = requests.Session()
    headers = {"Authorization": f"Bearer {token}"}

    def submit(_):
        response = session.post(web.url + "/api/jobs/calibration", headers=headers,
                                json={"paper_size": "a4"}, timeout=60)
        response.raise_for_status()
        return response.json()["id"]

    started = time.monotonic()
    with ThreadPoolExecutor(8) as pool:
        ids = list(pool.map(submit, range(count)))

    def done():
        with engine.connect() as conn:
            return conn.execute(sa.select(sa.func.count()).select_from(jobs).where(
                jobs.c.id.in_(ids), jobs.c.status == "succeeded")).scalar_one() == count
    wait_for(done, 600, "the round's jobs", interval=0.05)
    return count / (time.monotonic() - started)


def kill_the_holder(hosts: dict[str, Host], engine) -> tuple[float, float]:
    reader = Lease(engine, RECONCILER, "bench/0", 3)
    holder = reader.state().holder.partition("/")[0]
    hosts[holder].kill()
    killed = time.monotonic()
    taken = lost = None
    while taken is None or lost is None:
        now = time.monotonic() - killed
        if now > 120:
            raise SystemExit("no takeover or no lost host within 120 s")
        state = reader.state()
        if taken is None and state.holder.partition("/")[0] != holder and state.expires_in > 0:
            taken = now
        if lost is None and any(h["node"] == holder and not h["alive"]
                                for h in HostRegistry(engine).hosts()):
            lost = now
        time.sleep(0.05)
    print(f"(killed {holder}, which held the reconciler lease)")
    return taken, lost


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=90)
    parser.add_argument("--sleep", type=float, default=1.0)
    parser.add_argument("--concurrency", type=int, default=2)
    args = parser.parse_args()

    folder = Path(tempfile.mkdtemp(prefix="scm-bench-cluster-"))
    redis_port = free_port()
    redis = subprocess.Popen([find_redis_server(), "--port", str(redis_port), "--save", "",
                              "--appendonly", "no", "--dir", str(folder)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    admin = sa.create_engine(POSTGRES_ADMIN, isolation_level="AUTOCOMMIT", poolclass=sa.NullPool)
    name = f"scm_bench_{secrets.token_hex(4)}"
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    database_url = admin.url.set(database=name).render_as_string(hide_password=False)
    env = base_env(database_url, f"redis://127.0.0.1:{redis_port}/0", folder / "storage", args)
    hosts: dict[str, Host] = {}
    engine = None
    rows = []
    try:
        hosts["bench-a"] = web = Host("bench-a", folder, env, web=True)
        wait_for(lambda: _answers(web.url), 180, "host A's HTTP")
        engine = sa.create_engine(database_url, poolclass=sa.NullPool)
        token = wait_for(lambda: _login(web.url), 120, "admin login")
        for count, name_ in enumerate(("bench-a", "bench-b", "bench-c"), 1):
            if name_ not in hosts:
                hosts[name_] = Host(name_, folder, env, web=False)
            wait_for(lambda: hosts_running(engine, set(hosts)), 180, f"{count} host(s)")
            run_round(web, engine, token, max(8, args.jobs // 4))   # warm-up
            rows.append((count, run_round(web, engine, token, args.jobs)))
        takeover, lost = kill_the_holder(hosts, engine)
    finally:
        for host in hosts.values():
            host.stop()
        redis.terminate()
        redis.wait(10)
        if engine is not None:
            engine.dispose()
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
    ideal = args.concurrency / args.sleep
    print(f"\n{args.jobs} jobs per round, each sleeping {args.sleep:g}s; "
          f"{args.concurrency} worker processes per host (ideal {ideal:.1f} jobs/s per host)")
    print(f"{'hosts':>5} | {'jobs/s':>7} | {'vs 1 host':>9} | {'of ideal':>8}")
    print("------+---------+-----------+---------")
    for count, rate in rows:
        print(f"{count:>5} | {rate:7.2f} | {rate / rows[0][1]:8.2f}x | "
              f"{rate / (ideal * count):7.0%}")
    print(f"\nreconciler takeover after SIGKILL of its host: {takeover:.1f} s "
          "(CLUSTER_LEASE_SECONDS=3)")
    print(f"killed host shown lost: {lost:.1f} s (CELERY_HEALTH_CHECK_INTERVAL=1, "
          "lost after 3 intervals)")
    print(f"(logs in {folder})")


def _login(url: str) -> str | None:
    try:
        response = requests.post(url + "/api/auth/login", timeout=30,
                                 json={"username": ADMIN[0], "password": ADMIN[1]})
    except requests.RequestException:
        return None
    if response.status_code != 200:
        print(f"login: {response.status_code} {response.text[:200]}", file=sys.stderr)
        return None
    return response.json()["access_token"]


def _answers(url: str) -> bool:
    try:
        return requests.get(url + "/api/celery/health", timeout=2).status_code in (200, 503)
    except requests.RequestException:
        return False


if __name__ == "__main__":
    main()
