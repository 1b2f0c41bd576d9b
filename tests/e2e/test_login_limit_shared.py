"""The login rate limit holds across processes.

With `memory://` storage every gunicorn worker counts on its own, so a client gets
LIMIT x workers attempts. When RATELIMIT_STORAGE_URI is left at its default and the app
has a Redis broker (external or the embedded one), the limiter counts in that Redis; a
Redis outage falls back to per-process counters and never turns login into a 500.
"""
from __future__ import annotations

import psutil
import pytest
import requests

from app import create_app
from app.extensions import limiter_storage_config, redis_storage_uri
from tests.conftest import make_settings, wait_for

WRONG = {"username": "admin", "password": "not-the-password"}


# --- configuration ----------------------------------------------------------------------
def test_default_memory_storage_moves_to_the_redis_broker(tmp_path):
    config = limiter_storage_config(make_settings(tmp_path, REDIS_URL="redis://:pw@cache.example.invalid:6380/2"))
    assert config["RATELIMIT_STORAGE_URI"] == "redis://:pw@cache.example.invalid:6380/2"
    assert config["RATELIMIT_IN_MEMORY_FALLBACK_ENABLED"] is True
    assert config["RATELIMIT_SWALLOW_ERRORS"] is True


def test_embedded_redis_socket_is_spelled_for_limits(tmp_path):
    settings = make_settings(tmp_path, EMBEDDED_REDIS=True)
    assert settings.broker_url.startswith("redis+socket://")
    uri = limiter_storage_config(settings)["RATELIMIT_STORAGE_URI"]
    assert uri == f"redis+unix://{settings.embedded_redis_socket}"


@pytest.mark.parametrize("broker, expected", [
    ("redis+socket:///run/r.sock", "redis+unix:///run/r.sock"),
    ("redis+socket://:s%40cret@/run/r.sock?virtual_host=3", "redis+unix://:s%40cret@/run/r.sock?db=3"),
    ("redis+socket:///run/r.sock?db=1", "redis+unix:///run/r.sock?db=1"),
    ("rediss://:pw@example.org:6380/0", "rediss://:pw@example.org:6380/0"),
    ("amqp://guest@localhost//", None),
    (None, None),
])
def test_redis_storage_uri(broker, expected):
    assert redis_storage_uri(broker) == expected


def test_socket_password_and_db_reach_redis_py():
    import redis

    uri = redis_storage_uri("redis+socket://:s%40cret@/run/r.sock?virtual_host=3")
    kwargs = redis.from_url(uri.replace("redis+unix", "unix")).connection_pool.connection_kwargs
    assert (kwargs["path"], kwargs["password"], kwargs["db"]) == ("/run/r.sock", "s@cret", 3)


def test_explicit_storage_uri_wins(tmp_path):
    settings = make_settings(tmp_path, REDIS_URL="redis://127.0.0.1:1/0",
                             RATELIMIT_STORAGE_URI="memory://")
    assert limiter_storage_config(settings) == {"RATELIMIT_STORAGE_URI": "memory://"}
    settings = make_settings(tmp_path, REDIS_URL="redis://127.0.0.1:1/0",
                             RATELIMIT_STORAGE_URI="redis://limits.example.invalid:6379/5")
    assert limiter_storage_config(settings) == {"RATELIMIT_STORAGE_URI": "redis://limits.example.invalid:6379/5"}


def test_no_broker_keeps_memory(tmp_path):
    assert limiter_storage_config(make_settings(tmp_path)) == {"RATELIMIT_STORAGE_URI": "memory://"}


# --- in process, against a real redis-server ----------------------------------------------
def _app(tmp_path, name: str, redis_url: str, limit: str = "5 per minute"):
    settings = make_settings(tmp_path / name, REDIS_URL=redis_url, LOGIN_RATE_LIMIT=limit)
    app = create_app(settings)
    app.testing = True
    return app


def test_two_apps_share_one_count_in_redis(tmp_path, redis_server):
    # Two apps stand for two gunicorn workers: what one counts, the other sees.
    first = _app(tmp_path, "a", redis_server.url).test_client()
    second = _app(tmp_path, "b", redis_server.url).test_client()
    codes = [(first if i % 2 else second).post("/api/auth/login", json=WRONG).status_code
             for i in range(6)]
    assert codes == [401] * 5 + [429]
    assert first.post("/api/auth/login", json=WRONG).status_code == 429


def test_redis_outage_never_turns_login_into_a_500(tmp_path, redis_server):
    client = _app(tmp_path, "a", redis_server.url, limit="3 per minute").test_client()
    assert client.post("/api/auth/login", json=WRONG).status_code == 401
    redis_server.stop()
    codes = [client.post("/api/auth/login", json=WRONG).status_code for _ in range(5)]
    assert 500 not in codes and codes[0] == 401, codes
    # The in-memory fallback still limits this process.
    assert codes[-1] == 429, codes


def test_login_works_when_redis_was_never_up(tmp_path):
    from tests.conftest import free_port

    client = _app(tmp_path, "a", f"redis://127.0.0.1:{free_port()}/0").test_client()
    assert client.post("/api/auth/login", json=WRONG).status_code == 401


# --- the real server: start_with_celery.py with three gunicorn workers --------------------
@pytest.mark.slow
@pytest.mark.parametrize("broker", ["external", "embedded"])
def test_login_limit_holds_across_gunicorn_workers(start_server, redis_server, broker):
    env = {"REDIS_URL": redis_server.url} if broker == "external" else {"EMBEDDED_REDIS": "true"}
    server = start_server("start_with_celery", GUNICORN_WORKERS=3,
                          LOGIN_RATE_LIMIT="5 per minute", START_CELERY_WORKER="false", **env)
    server.wait_healthy(90)
    # The arbiter and three workers: the health check answers once the first worker is
    # up, and the others may still be forking.
    wait_for(lambda: len(_gunicorn_processes(server)) >= 4, 30, 0.2, "three gunicorn workers")

    codes = []
    for _ in range(8):
        # A fresh connection each time: gunicorn hands it to whichever worker accepts.
        response = requests.post(server.url + "/api/auth/login", json=WRONG, timeout=30,
                                 headers={"Connection": "close"})
        codes.append(response.status_code)
    assert codes[:5] == [401] * 5, codes
    assert codes[5:] == [429] * 3, codes
    assert server.stop() == 0


def _gunicorn_processes(server) -> list:
    server.observe()
    found = []
    for process in server.ps.children(recursive=True):
        try:
            if "gunicorn" in " ".join(process.cmdline()):
                found.append(process)
        except psutil.Error:   # a process that ended while the list was read
            continue
    return found
