"""Issue 12, point 4: slow clients against a real start_with_celery.py (its HTTP front)."""
from __future__ import annotations

import socket
import threading
import time

import pytest
import requests

pytestmark = pytest.mark.slow

DRIP_INTERVAL = 2.0


class Dripper:
    """A slowloris connection: a request head or body sent one byte every few seconds."""

    def __init__(self, port: int, kind: str):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        if kind == "headers":
            self.sock.sendall(b"GET /api/celery/health HTTP/1.1\r\nHost: x\r\n")
            self.payload = b"X-Slow: " + b"a" * 10_000
        else:
            self.sock.sendall(b"POST /api/auth/login HTTP/1.1\r\nHost: x\r\n"
                              b"Content-Type: application/json\r\nContent-Length: 10000\r\n\r\n")
            self.payload = b" " * 10_000
        self.answer = b""
        self.closed_at: float | None = None
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._drip, daemon=True)
        self.thread.start()

    def _drip(self) -> None:
        for byte in self.payload:
            if self.stop.wait(DRIP_INTERVAL):
                return
            try:
                self.sock.sendall(bytes([byte]))
            except OSError:
                break
        self.closed_at = time.monotonic()
        try:
            self.answer = self.sock.recv(4096)
        except OSError:
            pass

    def close(self) -> None:
        self.stop.set()
        self.sock.close()
        self.thread.join(5)


def _timed_get(url: str) -> float:
    started = time.monotonic()
    response = requests.get(url, timeout=10, headers={"Connection": "close"})
    assert response.status_code in (200, 503), response.text
    return time.monotonic() - started


def test_20_slow_connections_stop_all_http_service(start_server):
    server = start_server("start_with_celery", FRONT_MAX_CONNECTIONS_PER_ADDRESS="24",
                          FRONT_HEADER_TIMEOUT="12", FRONT_BODY_TIMEOUT="12",
                          GUNICORN_WORKERS="1", GUNICORN_THREADS="4")
    server.wait_healthy(90)
    drippers = [Dripper(server.port, "headers" if i % 2 else "body") for i in range(20)]
    try:
        time.sleep(2 * DRIP_INTERVAL + 0.5)  # every one has sent bytes and holds on
        assert all(d.closed_at is None for d in drippers)
        for path in ("/api/celery/health", "/", "/api/openapi.json"):
            elapsed = _timed_get(server.url + path)
            assert elapsed < 1.0, f"{path} took {elapsed:.2f} s behind 20 slow clients"
        login = requests.post(server.url + "/api/auth/login", timeout=10,
                              json={"username": "admin", "password": "admin-password-1"})
        assert login.status_code == 200 and login.elapsed.total_seconds() < 1.0

        # The per-address cap: 20 drippers + this test's free slots, then 429 at once.
        extra = [socket.create_connection(("127.0.0.1", server.port), timeout=10)
                 for _ in range(4)]
        try:
            refused = socket.create_connection(("127.0.0.1", server.port), timeout=10)
            refused.settimeout(5)
            answer = refused.recv(4096)
            refused.close()
            assert answer.startswith(b"HTTP/1.1 429"), answer
            assert b'"too_many_connections"' in answer
        finally:
            for sock in extra:
                sock.close()

        # Deadlines: heads and bodies still unfinished after 12 s are answered 408 and closed.
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and any(d.closed_at is None for d in drippers):
            time.sleep(0.5)
        assert all(d.closed_at is not None for d in drippers)
        answers = {d.answer.split(b"\r\n", 1)[0] for d in drippers}
        assert answers <= {b"HTTP/1.1 408 Request Timeout", b""}, answers
        assert b"HTTP/1.1 408 Request Timeout" in answers
    finally:
        for dripper in drippers:
            dripper.close()
    assert server.stop() == 0


def test_front_relays_keepalive_uploads_and_client_addresses(start_server):
    server = start_server("start_with_celery", LOGIN_RATE_LIMIT="2 per minute",
                          LOGIN_THROTTLE_DELAY="0.2", GUNICORN_WORKERS="1",
                          GUNICORN_CMD_ARGS="--access-logfile -", MAX_UPLOAD_MB="4",
                          FRONT_MAX_SPOOL_PER_ADDRESS_MB="6")
    server.wait_healthy(90)
    session = requests.Session()
    # Several requests on one kept-alive connection, a body with Expect: 100-continue.
    for _ in range(3):
        assert session.get(server.url + "/api/celery/health", timeout=10).status_code == 200
    big = session.post(server.url + "/api/jobs/sheets", data=b"x" * 3_000_000,
                       headers={"Expect": "100-continue", "Content-Type": "text/plain"},
                       timeout=30)
    assert big.status_code == 401 and big.json()["error"]["code"] == "authorization_required"
    too_big = requests.post(server.url + "/api/jobs/sheets", timeout=30,
                            headers={"Content-Length": str(300 * 1024 * 1024)}, data=b"")
    assert too_big.status_code == 413
    _uploads_in_flight_are_capped_per_address(server)
    # The application sees the client's address (PROXY protocol), so the login limit works.
    codes = [session.post(server.url + "/api/auth/login", timeout=10,
                          json={"username": "admin", "password": "wrong-one"}).status_code
             for _ in range(3)]
    assert codes == [401, 401, 429]
    logged = [line for line in server.tail(400).splitlines() if "/api/auth/login" in line]
    assert logged and all(line.startswith("127.0.0.1 ") for line in logged), logged
    assert server.stop() == 0


def _uploads_in_flight_are_capped_per_address(server) -> None:
    """4 MB held by one slow upload: a second of 3 MB from that address (7 > 6) is
    refused at its head; once the first ends, it goes through."""
    holder = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    holder.sendall(b"POST /api/jobs/sheets HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
                   b"Content-Length: 4194304\r\n\r\n")
    try:
        # The front says "100 Continue" once it holds the body's 4 MB.
        assert holder.recv(4096).startswith(b"HTTP/1.1 100 Continue")
        holder.sendall(b"x" * 1000)
        # Only the head: the front answers and closes at once, and a body still being
        # sent would turn that close into a reset before the answer is read.
        second = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        second.sendall(b"POST /api/jobs/sheets HTTP/1.1\r\nHost: x\r\n"
                       b"Content-Length: 3000000\r\n\r\n")
        answer = second.recv(4096)
        second.close()
        assert answer.startswith(b"HTTP/1.1 429"), answer
        assert b'"uploads_in_flight"' in answer and b"Retry-After: 2" in answer
    finally:
        holder.close()
    deadline = time.monotonic() + 10  # the front gives the 4 MB back when it sees the close
    while True:
        passed = requests.post(server.url + "/api/jobs/sheets", data=b"y" * 3_000_000,
                               headers={"Expect": "100-continue"}, timeout=30)
        if passed.status_code != 429 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert passed.status_code == 401  # it reached the application
